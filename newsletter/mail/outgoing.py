"""One reader's digest as composing hands it to the message makers (in this process or in worker
processes, so this module stays light: no database, no ranking)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .render import PaperCard


@dataclass(frozen=True)
class Outgoing:
    """One digest ready to render and deliver."""

    digest_id: int | None  # None in a dry-run: nothing is stored
    subscriber_id: int  # with `day`, what the VERP envelope sender names
    day: date
    email: str
    name: str
    topics: tuple[str, ...]
    frequency: str
    message_id: str
    cards: tuple[PaperCard, ...]
