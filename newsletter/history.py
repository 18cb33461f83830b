"""The history of runs (`newsletter status`): each run's record, what is left unsent, and who is
suspended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from .db import (
    DEFERRED,
    FAILED,
    PENDING,
    SUSPENDED,
    Database,
    Digest,
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


@dataclass(frozen=True)
class Status:
    runs: list[RunRecord]
    digests: dict[str, int]  # pending / deferred / failed
    suspended: list[str]


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
    return Status(runs, {s: digests.get(s, 0) for s in (PENDING, DEFERRED, FAILED)}, suspended)
