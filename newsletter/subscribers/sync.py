"""The subscribers in the database: the lists synced to it, and unsubscribes.

The files are the source of truth for who is listed and with which preferences; the database keeps
what the files cannot know (unsubscribes, suspensions, what was sent). A sync with any bad row in
the lists changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import NewsletterError, UnknownSubscriberError
from ..store.db import ACTIVE, UNSUBSCRIBED, Database, Subscriber, insert_in_batches, utcnow
from .lists import SubscriberRow, normalize_address


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    unchanged: int
    delisted: int

    @property
    def summary(self) -> str:
        return (
            f"subscribers: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.delisted} no longer listed"
        )


def sync_subscribers(
    db: Database,
    rows: Sequence[SubscriberRow],
    *,
    scope: Sequence[Path] | None = None,
    allow_drop: bool = False,
) -> SyncReport:
    """Make the database's listed subscribers exactly `rows`, in one transaction (tried again
    once if another process added the same address meanwhile).

    `scope` limits who can be delisted to the readers last read from those files or folders
    (`newsletter subscribers one.csv` leaves the other files' readers alone); None: everyone.
    A sync that would delist more than half of the active readers is refused unless
    `allow_drop`: a list emptied or cut by mistake must not silently stop everyone's mail."""
    try:
        return _sync(db, rows, scope, allow_drop)
    except IntegrityError:
        return _sync(db, rows, scope, allow_drop)


def _in_scope(source: str, scope: Sequence[Path] | None) -> bool:
    if scope is None:
        return True
    file = Path(source.rpartition(", line ")[0] or source).resolve()
    return any(file == place or place in file.parents for place in scope)


def _sync(
    db: Database, rows: Sequence[SubscriberRow], scope: Sequence[Path] | None, allow_drop: bool
) -> SyncReport:
    added = updated = unchanged = delisted = 0
    by_email = {row.email: row for row in rows}
    places = None if scope is None else [path.resolve() for path in scope]
    with db.session() as session:
        existing = {s.email: s for s in session.scalars(select(Subscriber))}
        new = [
            {"email": email, "listed": True, **_preferences(row)}
            for email, row in by_email.items()
            if email not in existing
        ]
        insert_in_batches(session, Subscriber.__table__, new)
        added = len(new)
        for email, row in by_email.items():
            subscriber = existing.get(email)
            if subscriber is None:
                continue
            changed = not subscriber.listed
            for name, value in _preferences(row).items():
                if getattr(subscriber, name) != value:
                    setattr(subscriber, name, value)
                    changed = changed or name != "source"
            subscriber.listed = True
            updated += changed
            unchanged += not changed
        active = sum(s.listed and s.status == ACTIVE for s in existing.values())
        dropped = 0
        for email, subscriber in existing.items():
            if email not in by_email and subscriber.listed and _in_scope(subscriber.source, places):
                subscriber.listed = False
                delisted += 1
                dropped += subscriber.status == ACTIVE
        if not allow_drop and dropped * 2 > active:
            raise NewsletterError(
                f"the lists no longer name {dropped} of the {active} active subscribers (more "
                "than half): nothing was changed. If that is meant, sync with "
                "`newsletter subscribers --allow-drop`"
            )
    return SyncReport(added, updated, unchanged, delisted)


def _preferences(row: SubscriberRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "topics": list(row.preferences.topics),
        "exclude": list(row.preferences.exclude),
        "max_papers": row.preferences.max_papers,
        "frequency": row.preferences.frequency,
        "source": row.source,
    }


NOW, ALREADY, UNKNOWN = "now", "already", "unknown"
BOUNCE_HALF_LIFE = timedelta(days=30)  # a bounce score halves in this time (see `bounces`)


def current_score(score: float, since: datetime | None, now: datetime) -> float:
    """A bounce score as of `now`: it halves every `BOUNCE_HALF_LIFE`."""
    if since is None or score == 0:
        return score
    elapsed = max((now - since).total_seconds(), 0.0)
    return score * 0.5 ** (elapsed / BOUNCE_HALF_LIFE.total_seconds())


def unsubscribe(db: Database, email: str) -> str:
    """Unsubscribe an address for good: `NOW`, `ALREADY` (it was), or `UNKNOWN` (no list or
    run has named it; it is remembered, so that a list naming it later does not subscribe it)."""
    address = normalize_address(email)
    with db.session() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        found = subscriber is not None
        if subscriber is None:
            subscriber = Subscriber(email=address, topics=[], listed=False)
            session.add(subscriber)
        if subscriber.status == UNSUBSCRIBED:
            return ALREADY
        subscriber.status = UNSUBSCRIBED
        subscriber.status_changed_at = utcnow()
        return NOW if found else UNKNOWN


def resubscribe(db: Database, email: str) -> bool:
    """Undo an unsubscribe (a complaint's too) or a suspension, and clear the bounce score, on
    the subscriber's own request; False if there was nothing to undo."""
    address = normalize_address(email)
    with db.session() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if subscriber is None:
            raise UnknownSubscriberError(f"{address}: no such subscriber")
        if subscriber.status == ACTIVE and not subscriber.bounce_score:
            return False
        subscriber.status = ACTIVE
        subscriber.status_changed_at = utcnow()
        subscriber.status_reason = None  # and its bounces start again from nothing
        subscriber.bounce_score, subscriber.bounce_score_at = 0.0, None
        return True


def is_unsubscribed(db: Database, email: str) -> bool:
    with db.session() as session:
        status = session.scalar(
            select(Subscriber.status).where(Subscriber.email == normalize_address(email))
        )
    return status == UNSUBSCRIBED


def subscriber_records(db: Database, limit: int | None = None) -> list[dict[str, Any]]:
    """Every known address (the first `limit` by address) as `newsletter subscribers --json`
    prints it (the README's Commands)."""
    now = utcnow()
    with db.session() as session:
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
                "bounce_score": round(current_score(s.bounce_score, s.bounce_score_at, now), 2),
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
