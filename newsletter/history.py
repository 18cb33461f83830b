"""The history of runs (`newsletter status`): each run's record, what is left unsent, and who is
suspended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import (
    DEFERRED,
    FAILED,
    PENDING,
    SUSPENDED,
    Database,
    Digest,
    FetchRecord,
    RunRecord,
    Subscriber,
    utcnow,
)


def start_record(db: Database, day: date, dry_run: bool, holder: str) -> int:
    with db.session() as session:
        record = RunRecord(run_date=day, dry_run=dry_run, holder=holder)
        session.add(record)
        session.flush()
        return record.id


def finish_record(db: Database, record_id: int, outcome: str, counts: dict[str, int]) -> None:
    with db.session() as session:
        record = session.get(RunRecord, record_id)
        if record is not None:
            record.finished_at = utcnow()
            record.outcome = outcome
            record.counts = counts


def record_fetch(db: Database, day: date, error: str | None, papers: int) -> None:
    """One download of `day`'s list: its outcome, for `newsletter status`."""
    with db.session() as session:
        session.add(
            FetchRecord(
                fetch_date=day,
                outcome="failed" if error else "ok",
                papers=None if error else papers,
                error=error,
            )
        )


@dataclass(frozen=True)
class Status:
    runs: list[RunRecord]
    digests: dict[str, int]  # pending / deferred / failed
    suspended: list[str]
    fetches: list[FetchRecord]  # the last download of each of the latest days fetched


def status(db: Database, last: int = 10) -> Status:
    with db.session() as session:
        runs = list(session.scalars(select(RunRecord).order_by(RunRecord.id.desc()).limit(last)))
        digests = dict(
            session.execute(
                select(Digest.state, func.count())
                .where(Digest.state.in_((PENDING, DEFERRED, FAILED)))
                .group_by(Digest.state)
            ).all()
        )
        suspended = list(
            session.scalars(
                select(Subscriber.email)
                .where(Subscriber.status == SUSPENDED)
                .order_by(Subscriber.email)
            )
        )
        fetches = _last_fetches(session, last)
    return Status(
        runs, {s: digests.get(s, 0) for s in (PENDING, DEFERRED, FAILED)}, suspended, fetches
    )


def _last_fetches(session: Session, days: int) -> list[FetchRecord]:
    """The latest fetch of each of the `days` most recent days fetched, newest day first."""
    latest = (
        select(func.max(FetchRecord.id))
        .group_by(FetchRecord.fetch_date)
        .order_by(FetchRecord.fetch_date.desc())
        .limit(days)
    )
    return list(
        session.scalars(
            select(FetchRecord)
            .where(FetchRecord.id.in_(latest.scalar_subquery()))
            .order_by(FetchRecord.fetch_date.desc())
        )
    )
