"""The subscribers in the database: the lists synced to it, and unsubscribes.

The files are the source of truth for who is listed and with which preferences; the database keeps
what the files cannot know (unsubscribes, suspensions, what was sent). A sync with any bad row in
the lists changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..errors import NewsletterError
from ..store import subscribers as store
from ..store.db import Database
from ..store.subscribers import replace_listed
from .addresses import normalize_address
from .lists import SubscriberRow


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
    places = None if scope is None else [path.resolve() for path in scope]
    wanted = {row.email: _preferences(row) for row in rows}
    with db.session() as session:
        done = replace_listed(session, wanted, lambda source: _in_scope(source, places))
        if not allow_drop and done.dropped_active * 2 > done.active:
            raise NewsletterError(  # (inside the transaction: nothing is changed)
                f"the lists no longer name {done.dropped_active} of the {done.active} active "
                "subscribers (more than half): nothing was changed. If that is meant, sync with "
                "`newsletter subscribers --allow-drop`"
            )
    return SyncReport(done.added, done.updated, done.unchanged, done.delisted)


def _preferences(row: SubscriberRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "topics": list(row.preferences.topics),
        "exclude": list(row.preferences.exclude),
        "max_papers": row.preferences.max_papers,
        "frequency": row.preferences.frequency,
        "on_empty": row.preferences.on_empty,
        "source": row.source,
    }


def unsubscribe(db: Database, email: str) -> str:
    """Unsubscribe an address for good: `NOW`, `ALREADY` (it was), or `UNKNOWN` (no list or
    run has named it; it is remembered, so that a list naming it later does not subscribe it)."""
    return store.unsubscribe(db, normalize_address(email))


def resubscribe(db: Database, email: str) -> bool:
    """Undo an unsubscribe (a complaint's too) or a suspension, and clear the bounce score, on
    the subscriber's own request; False if there was nothing to undo."""
    return store.resubscribe(db, normalize_address(email))
