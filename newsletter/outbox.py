"""The durable outbox: which stored digests still need sending, and recording what became of each.

A digest row is written (pending) before anything is sent and is marked sent the moment the server
accepts it, so a crash can repeat at most the messages in flight. Permanent failures are recorded
per address; three in a row on different days suspend the subscriber.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

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


def backlog(session: Session, day: date) -> list[Digest]:
    """Unsent digests of the days before `day` (at most a window back) whose subscriber is still
    active: the next run sends them, so no paper held by them is lost."""
    return list(
        session.scalars(
            select(Digest)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(
                Digest.state.in_(UNSENT_STATES),
                Digest.digest_date < day,
                Digest.digest_date >= day - timedelta(days=WINDOW_DAYS - 1),
                Subscriber.status == ACTIVE,
            )
            .order_by(Digest.digest_date, Digest.id)
        )
    )


def record_outcome(db: Database, digest_id: int, outcome: Outcome, subject: str) -> None:
    """Store one delivery outcome at once, in its own transaction."""
    with db.session() as session:
        digest = session.get(Digest, digest_id)
        if digest is None:  # pragma: no cover - rows are never deleted
            return
        digest.state = _STATE_OF[outcome.kind]
        digest.attempts += outcome.attempts
        digest.subject = subject
        digest.smtp_reply = outcome.reply
        digest.last_error = outcome.error
        if outcome.kind == SENT_OUTCOME:
            digest.sent_at = utcnow()
        if outcome.kind == FAILED_OUTCOME:
            _suspend_if_failing(session, digest.subscriber_id)


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
