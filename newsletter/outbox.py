"""The durable outbox: which stored digests still need sending, and recording what became of each.

A digest row is written (pending) before anything is sent and is marked sent the moment the server
accepts it, so a crash can repeat at most the messages in flight. Permanent failures are recorded
per address; three in a row on different days suspend the subscriber.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, contains_eager

from .db import (
    ACTIVE,
    DEFERRED,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SUSPENDED,
    Database,
    Digest,
    Subscriber,
    utcnow,
)
from .deliver import DEFERRED_OUTCOME, FAILED_OUTCOME, SENT_OUTCOME, Outcome
from .select import WINDOW_DAYS

SUSPEND_AFTER = 3  # consecutive permanent failures, on different days
UNSENT_STATES = (PENDING, SENDING, DEFERRED)
_STATE_OF = {SENT_OUTCOME: SENT, DEFERRED_OUTCOME: DEFERRED, FAILED_OUTCOME: FAILED}


def _unsent_query(day: date) -> Select[tuple[Digest]]:
    return (
        select(Digest)
        .join(Subscriber, Subscriber.id == Digest.subscriber_id)
        .where(
            Digest.state.in_(UNSENT_STATES),
            Digest.digest_date <= day,
            Digest.digest_date >= day - timedelta(days=WINDOW_DAYS - 1),
            Subscriber.status == ACTIVE,
        )
    )


def unsent(session: Session, day: date, after: int = 0, limit: int | None = None) -> list[Digest]:
    """Unsent digests to send on `day`, by id after `after`: the day's own and those of the days
    before (at most a window back) that were deferred or cut off by a crash, whose subscriber is
    still active: no paper held by them is lost."""
    query = (
        _unsent_query(day)
        .where(Digest.id > after)
        .options(contains_eager(Digest.subscriber))
        .order_by(Digest.id)
    )
    return list(session.scalars(query if limit is None else query.limit(limit)))


def count_unsent(db: Database, day: date) -> int:
    with db.session() as session:
        return session.scalar(_unsent_query(day).with_only_columns(func.count(Digest.id))) or 0


def record_outcome(db: Database, digest_id: int, outcome: Outcome, subject: str) -> None:
    """Store one delivery outcome at once, in its own (small) transaction."""
    now = utcnow()
    values: dict[str, object] = {
        "state": _STATE_OF[outcome.kind],
        "attempts": Digest.attempts + outcome.attempts,
        "subject": subject,
        "smtp_reply": outcome.reply,
        "last_error": outcome.error,
        "updated_at": now,
    }
    if outcome.kind == SENT_OUTCOME:
        values["sent_at"] = now
    with db.session() as session:
        session.execute(update(Digest).where(Digest.id == digest_id).values(values))
        if outcome.kind == FAILED_OUTCOME:
            subscriber_id = session.scalar(
                select(Digest.subscriber_id).where(Digest.id == digest_id)
            )
            if subscriber_id is not None:
                _suspend_if_failing(session, subscriber_id)


def _suspend_if_failing(session: Session, subscriber_id: int) -> None:
    recent = list(
        session.scalars(
            select(Digest.state)
            .where(Digest.subscriber_id == subscriber_id, Digest.state.in_((SENT, FAILED)))
            .order_by(Digest.digest_date.desc())
            .limit(SUSPEND_AFTER)
        )
    )
    if len(recent) == SUSPEND_AFTER and all(state == FAILED for state in recent):
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is not None and subscriber.status == ACTIVE:
            subscriber.status = SUSPENDED
            subscriber.status_changed_at = utcnow()
