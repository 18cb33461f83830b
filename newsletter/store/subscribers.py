"""Subscribers in the store: the lists' rows written over the stored ones, the one way a
subscriber's status changes (always with its reason), unsubscribes and resubscribes, the bounce
score's decay, and the subscribers read back for `newsletter subscribers`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import UnknownSubscriberError
from ..records import WINDOW_DAYS
from .db import (
    ACTIVE,
    LESS,
    MORE,
    UNSUBSCRIBED,
    Database,
    Subscriber,
    SubscriberStatus,
    TokenCutover,
    insert_in_batches,
    utcnow,
)
from .feedback import feedback_counts

NOW, ALREADY, UNKNOWN = "now", "already", "unknown"
BOUNCE_HALF_LIFE = timedelta(days=30)  # a bounce score halves in this time (see `bounces.rules`)


def change_status(
    subscriber: Subscriber, status: SubscriberStatus, reason: str | None, now: datetime
) -> bool:
    """Move a subscriber to `status` for `reason` (None only for active: an unsubscribe or a
    suspension always says why); False when it is there already. Every change of status in the
    product goes through here."""
    if status != ACTIVE and not reason:
        raise ValueError(f"a subscriber is made {status} only with a reason")
    if subscriber.status == status:
        return False
    subscriber.status = status
    subscriber.status_reason = None if status == ACTIVE else reason
    subscriber.status_changed_at = now
    return True


def current_score(score: float, since: datetime | None, now: datetime) -> float:
    """A bounce score as of `now`: it halves every `BOUNCE_HALF_LIFE`."""
    if since is None or score == 0:
        return score
    elapsed = max((now - since).total_seconds(), 0.0)
    return score * 0.5 ** (elapsed / BOUNCE_HALF_LIFE.total_seconds())


@dataclass(frozen=True)
class Replaced:
    """What writing the lists over the stored subscribers did."""

    added: int
    updated: int
    unchanged: int
    delisted: int
    dropped_active: int  # of the delisted, those who were active
    active: int  # listed and active before


def replace_listed(
    session: Session,
    wanted: Mapping[str, dict[str, Any]],
    delistable: Callable[[str], bool],
) -> Replaced:
    """Make the listed subscribers exactly `wanted` (address: its columns, `source` among them),
    delisting only those whose `source` is `delistable`; part of the caller's transaction."""
    existing = {s.email: s for s in session.scalars(select(Subscriber))}
    new = [
        {"email": email, "listed": True, **columns}
        for email, columns in wanted.items()
        if email not in existing
    ]
    insert_in_batches(session, Subscriber.__table__, new)
    updated = unchanged = 0
    for email, columns in wanted.items():
        subscriber = existing.get(email)
        if subscriber is None:
            continue
        changed = not subscriber.listed
        for name, value in columns.items():
            if getattr(subscriber, name) != value:
                setattr(subscriber, name, value)
                changed = changed or name != "source"
        subscriber.listed = True
        updated += changed
        unchanged += not changed
    active = sum(s.listed and s.status == ACTIVE for s in existing.values())
    delisted = dropped = 0
    for email, subscriber in existing.items():
        if email not in wanted and subscriber.listed and delistable(subscriber.source):
            subscriber.listed = False
            delisted += 1
            dropped += subscriber.status == ACTIVE
    return Replaced(len(new), updated, unchanged, delisted, dropped, active)


def subscriber_by_address(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this (normalised) address."""
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


def subscriber_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def legacy_links_until(session: Session) -> date | None:
    """The last day an old unsubscribe link (the address in base64 in it) is honoured: its
    digests were all made before the store began making opaque tokens, and are older than the
    window from `WINDOW_DAYS` after that day. None for a store that never made such links."""
    since = session.scalar(select(TokenCutover.opaque_since))
    return since + timedelta(days=WINDOW_DAYS) if since is not None else None


def unsubscribe(db: Database, address: str, reason: str = "unsubscribe") -> str:
    """Unsubscribe a (normalised) address for good: `NOW`, `ALREADY` (it was), or `UNKNOWN` (no
    list or run has named it; it is remembered, so that a list naming it later does not
    subscribe it)."""
    with db.session() as session:
        subscriber = subscriber_by_address(session, address)
        found = subscriber is not None
        if subscriber is None:
            subscriber = Subscriber(email=address, topics=[], listed=False, status=ACTIVE)
            session.add(subscriber)
        if not change_status(subscriber, UNSUBSCRIBED, reason, utcnow()):
            return ALREADY
        return NOW if found else UNKNOWN


def resubscribe(db: Database, address: str) -> bool:
    """Undo an unsubscribe (a complaint's too) or a suspension, and clear the bounce score, on
    the subscriber's own request; False if there was nothing to undo."""
    with db.session() as session:
        subscriber = subscriber_by_address(session, address)
        if subscriber is None:
            raise UnknownSubscriberError(f"{address}: no such subscriber")
        if subscriber.status == ACTIVE and not subscriber.bounce_score:
            return False
        change_status(subscriber, ACTIVE, None, utcnow())
        subscriber.bounce_score, subscriber.bounce_score_at = 0.0, None  # bounces start afresh
        return True


def subscriber_records(db: Database, limit: int | None = None) -> list[dict[str, Any]]:
    """Every known address (the first `limit` by address) as `newsletter subscribers --json`
    prints it (the README's Commands)."""
    now = utcnow()
    with db.session() as session:
        feedback = feedback_counts(session)
        return [
            {
                "email": s.email,
                "name": s.name,
                "status": s.status,
                "listed": s.listed,
                "topics": list(s.topics),
                "exclude": list(s.exclude or ()),
                "frequency": s.frequency,
                "max_papers": s.max_papers,
                "on_empty": s.on_empty,
                "bounce_score": round(current_score(s.bounce_score, s.bounce_score_at, now), 2),
                "feedback": feedback.get(s.id, {MORE: 0, LESS: 0}),
            }
            for s in session.scalars(select(Subscriber).order_by(Subscriber.email).limit(limit))
        ]


@dataclass(frozen=True)
class Overview:
    shown: list[dict[str, Any]]  # the first addresses, as `subscriber_records` has them
    total: int
    by_status: dict[str, int]


def subscriber_overview(db: Database, rows: int) -> Overview:
    """The first `rows` subscribers by address, how many there are, and how many per status."""
    with db.session() as session:
        total = session.scalar(select(func.count(Subscriber.id))) or 0
        by_status = dict(
            session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            ).all()
        )
    return Overview(subscriber_records(db, rows), total, by_status)
