"""The history of runs (`newsletter status`): each run's record, what is left unsent, and who is
suspended."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import (
    BOUNCE,
    COMPLAINT,
    DEFERRED,
    FAILED,
    PENDING,
    SENDER_PROBLEM,
    SUSPENDED,
    TEMPORARY,
    BounceRecord,
    Database,
    Digest,
    FetchRecord,
    PaperVector,
    RunLease,
    RunRecord,
    Subscriber,
    utcnow,
)
from .leases import died_here


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
    bounces: dict[str, int]  # what came back in the last BOUNCE_DAYS days
    reasons: dict[str, str | None]  # why each suspended address is (a bounce, the score…)
    vectors: dict[str, int]  # papers with sentence vectors, by the model that made them


RUNNING, DIED = "running", "died"
QUIET_RUN = timedelta(hours=6)  # a run elsewhere with no lease or claim for this long is gone


def status(db: Database, last: int = 10) -> Status:
    with db.session() as session:
        runs = list(session.scalars(select(RunRecord).order_by(RunRecord.id.desc()).limit(last)))
        for run in runs:  # (shown, not written: the record stays as the run left it)
            if run.outcome == RUNNING and run.finished_at is None and _gone(session, run):
                session.expunge(run)
                run.outcome = DIED
        digests = dict(
            session.execute(
                select(Digest.state, func.count())
                .where(Digest.state.in_((PENDING, DEFERRED, FAILED)))
                .group_by(Digest.state)
            ).all()
        )
        suspended = dict(
            session.execute(
                select(Subscriber.email, Subscriber.status_reason)
                .where(Subscriber.status == SUSPENDED)
                .order_by(Subscriber.email)
            ).all()
        )
        fetches = _last_fetches(session, last)
        bounces = bounce_counts(session)
        vectors = dict(
            session.execute(
                select(PaperVector.model, func.count()).group_by(PaperVector.model)
            ).all()
        )
    digest_counts = {s: digests.get(s, 0) for s in (PENDING, DEFERRED, FAILED)}
    return Status(runs, digest_counts, list(suspended), fetches, bounces, suspended, vectors)


def _gone(session: Session, run: RunRecord) -> bool:
    """Whether a run that never finished is no longer running: its process is gone (on this
    machine), or (elsewhere) it holds no lease and no claim and started long ago. A run killed
    by a full disk, say, would otherwise show as running for ever."""
    if run.holder.partition(":")[0] == socket.gethostname():  # its process tells
        return died_here(run.holder)
    now = utcnow()
    leased = session.scalar(
        select(func.count())
        .select_from(RunLease)
        .where(RunLease.holder == run.holder, RunLease.expires_at > now)
    )
    claiming = session.scalar(
        select(func.count())
        .select_from(Digest)
        .where(Digest.claimed_by == run.holder, Digest.claimed_until > now)
    )
    return not leased and not claiming and now - run.started_at > QUIET_RUN


BOUNCE_DAYS = 7  # `newsletter status` counts the bounces of this many days


def bounce_counts(session: Session, days: int = BOUNCE_DAYS) -> dict[str, int]:
    """The bounces and complaints about our readers (whether or not they changed anything: a
    suspended address may bounce again), the suspensions bounces made, and the messages that
    were about nobody (auto-replies, forged tokens, strangers), read in the last `days` days."""
    since = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(BounceRecord.kind, BounceRecord.action, func.count())
        .where(BounceRecord.read_at >= since)
        .group_by(BounceRecord.kind, BounceRecord.action)
    ).all()
    counts = dict.fromkeys(("days", "bounces", "complaints", "suspended", "ignored", "sender"), 0)
    counts["days"] = days
    for kind, action, n in rows:
        if kind in (BOUNCE, TEMPORARY):
            counts["bounces"] += n
        elif kind == COMPLAINT:
            counts["complaints"] += n
        elif kind == SENDER_PROBLEM:
            counts["sender"] += n
        else:
            counts["ignored"] += n
        counts["suspended"] += n if action == SUSPENDED else 0
    return counts


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
