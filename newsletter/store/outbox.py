"""The durable outbox: which stored digests still need sending, and recording what became of each.

A digest row is written (pending) before anything is sent and is marked sent the moment the server
accepts it, so a crash can repeat at most the messages in flight. Permanent failures are recorded
per address; three in a row on different days suspend the subscriber.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, contains_eager

from ..records import WINDOW_DAYS
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
from .leases import died_here
from .subscribers import change_status

SUSPEND_AFTER = 3  # consecutive permanent failures, on different days
UNSENT_STATES = (PENDING, SENDING, DEFERRED)
OUTBOX_BATCH = 100  # digests claimed (or read) from the database at a time when sending


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


def unsent_ids(session: Session, day: date, after: int, limit: int) -> list[int]:
    """Ids of unsent digests to send on `day`, in order from `after`: the day's own and those of
    the days before (at most a window back) that were deferred or cut off by a crash, whose
    subscriber is still active: no paper held by them is lost."""
    return list(
        session.scalars(
            _unsent_query(day)
            .with_only_columns(Digest.id)
            .where(Digest.id > after)
            .order_by(Digest.id)
            .limit(limit)
        )
    )


def digests_by_id(session: Session, ids: list[int]) -> list[Digest]:
    """These digests with their subscribers, in id order."""
    return list(
        session.scalars(
            select(Digest)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.id.in_(ids))
            .options(contains_eager(Digest.subscriber))
            .order_by(Digest.id)
        )
    )


# --- Work sharing between senders ----------------------------------------------------------------
#
# Every sender of a date claims unsent digests a batch at a time: one UPDATE that moves them to
# `sending` under its name until a lease runs out. On PostgreSQL the batch is chosen with
# `FOR UPDATE SKIP LOCKED`, so two senders never wait for, or take, the same rows; on SQLite the
# single writer makes the same statement just as exclusive. A sender renews its claims while it
# works, and records each outcome (which ends the claim) as it happens; the claims of a sender
# that died are taken over once they expire, or at once if it was a process on this machine.


def claim_batch(
    db: Database,
    day: date,
    holder: str,
    started: datetime,
    limit: int,
    lease_seconds: float,
    after: int = 0,
) -> list[int]:
    """Claim up to `limit` digests to send on `day` for `holder`, with ids above `after` (where
    the caller's last batch ended: no rescan of what is sent); their ids (none: nothing is free).
    A digest deferred since `started` is left for the next run, not retried at once."""
    now = utcnow()
    with db.session() as session:
        dead = [h for h in _other_holders(session, day, holder) if died_here(h)]
        free = or_(
            Digest.state == PENDING,
            and_(Digest.state == DEFERRED, Digest.updated_at < started),
            and_(
                Digest.state == SENDING,
                or_(
                    Digest.claimed_until.is_(None),
                    Digest.claimed_until < now,
                    Digest.claimed_by.in_(dead),
                ),
            ),
        )
        chosen = (
            _unsent_query(day)
            .with_only_columns(Digest.id)
            .where(free, Digest.id > after)
            # No ORDER BY: with one, SQLite sorts every free row for each batch. Rows come in
            # index order anyway (state, then id), which keeps one digest shape together.
            .limit(limit)
            .with_for_update(of=Digest.__table__, skip_locked=True)
        )
        claimed = session.execute(
            update(Digest.__table__)
            .where(Digest.__table__.c.id.in_(chosen.scalar_subquery()))
            .values(
                state=SENDING,
                claimed_by=holder,
                claimed_until=now + timedelta(seconds=lease_seconds),
            )
            .returning(Digest.__table__.c.id)
        )
        return sorted(claimed.scalars())


def _other_holders(session: Session, day: date, holder: str, *conditions: Any) -> list[str]:
    """The senders other than `holder` with claims on digests of `day` that meet `conditions`."""
    holders = session.scalars(
        _unsent_query(day)
        .with_only_columns(Digest.claimed_by)
        .where(Digest.state == SENDING, Digest.claimed_by != holder, *conditions)
        .distinct()
    )
    return [h for h in holders if h]


def others_at_work(db: Database, day: date, holder: str) -> bool:
    """Whether digests of `day` are claimed by another sender that is alive, as far as we know
    (its claim has not expired): worth waiting for, as they return to us if it dies."""
    with db.session() as session:
        live = _other_holders(session, day, holder, Digest.claimed_until >= utcnow())
    return any(not died_here(h) for h in live)


def renew_claims(db: Database, holder: str, lease_seconds: float) -> None:
    with db.session() as session:
        session.execute(
            update(Digest.__table__)
            .where(Digest.__table__.c.claimed_by == holder, Digest.__table__.c.state == SENDING)
            .values(claimed_until=utcnow() + timedelta(seconds=lease_seconds))
        )


def release_claims(db: Database, holder: str) -> int:
    """Hand back what `holder` claimed and did not send (a stop, an unreachable server)."""
    with db.session() as session:
        return session.execute(
            update(Digest.__table__)
            .where(Digest.__table__.c.claimed_by == holder, Digest.__table__.c.state == SENDING)
            .values(state=PENDING, claimed_by=None, claimed_until=None)
        ).rowcount


def count_unsent(db: Database, day: date, states: tuple[str, ...] = UNSENT_STATES) -> int:
    """Unsent digests to send on `day` (`states=(PENDING,)`: those no one is sending now and
    the next run will send, not the deferred)."""
    with db.session() as session:
        query = _unsent_query(day).with_only_columns(func.count(Digest.id))
        return session.scalar(query.where(Digest.state.in_(states))) or 0


# One statement for every recorded outcome, built once: recording stays a few tens of
# microseconds, which matters when the SMTP connections take a thousand replies a second.
_RECORD = (
    update(Digest.__table__)
    .where(Digest.__table__.c.id == bindparam("digest_id"))
    .values(
        state=bindparam("state"),
        attempts=Digest.__table__.c.attempts + bindparam("tries"),
        subject=bindparam("subject"),
        smtp_reply=bindparam("reply"),
        last_error=bindparam("error"),
        updated_at=bindparam("now"),
        sent_at=func.coalesce(bindparam("sent_at"), Digest.__table__.c.sent_at),
        claimed_by=None,
        claimed_until=None,
    )
)


class OutcomeRecorder:
    """Stores each delivery outcome the moment it is known, each in its own committed
    transaction, on one connection kept for the whole run."""

    def __init__(self, db: Database):
        self.db = db
        self._connection: Connection | None = None

    def __enter__(self) -> OutcomeRecorder:
        self._connection = self.db.engine.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._connection is not None:
            self._connection.close()

    def record(
        self,
        digest_id: int,
        state: str,
        *,
        attempts: int,
        reply: str | None,
        error: str | None,
        subject: str,
    ) -> None:
        """What became of one digest: `SENT`, `DEFERRED` (try again later) or `FAILED`."""
        if self._connection is None:
            raise RuntimeError("OutcomeRecorder records only inside its `with` block")
        now = utcnow()
        with self._connection.begin():
            self._connection.execute(
                _RECORD,
                {
                    "digest_id": digest_id,
                    "state": state,
                    "tries": attempts,
                    "subject": subject,
                    "reply": reply,
                    "error": error,
                    "now": now,
                    "sent_at": now if state == SENT else None,
                },
            )
        if state == FAILED:
            with self.db.session() as session:
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
            reason = f"{SUSPEND_AFTER} failed deliveries"
            change_status(subscriber, SUSPENDED, reason, utcnow())
