"""The plain values the stages hand each other: a paper as the pages list it, as ranking reads it
and as the store keeps it, and what a reader asks for. No behaviour, and of the package only
`text` (a paper's key): every room may use them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .text import normalize_title

# What one field of a paper may hold: a page's title, abstract and author names are far shorter;
# anything longer is cut at ingest, so that no dump can make a digest too large to send.
MAX_TITLE_CHARS = 500
MAX_ABSTRACT_CHARS = 10_000
MAX_SUMMARY_CHARS = 1_000  # the API's one-sentence summary of a paper
MAX_AUTHOR_CHARS = 200
MAX_AUTHORS = 200  # kept of one paper; the email shows three
MAX_UPVOTES = 10**9  # a count beyond this is not one (and would not fit the column)

# How far back a digest reaches: a reader's window of new papers is at most this many days, and
# a digest is sent within this many days of its date, or not at all (its papers are stale then).
WINDOW_DAYS = 7


@dataclass(frozen=True)
class Listing:
    """A paper as the pages list it: what planning loads and a card shows (one record, so the
    stages do not copy fields by hand)."""

    title: str
    abstract: str
    code_url: str | None
    appearances: int
    best_position: int
    best_date: date
    # Known for papers from the Daily Papers API: they are linked directly.
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    upvotes: int | None = None
    ai_summary: str | None = None  # the page's one-line summary of what is new, when given


@dataclass(frozen=True, kw_only=True)
class PaperInfo(Listing):
    """A stored paper with its trending signal as of some date."""

    id: int
    first_seen: date

    def text(self) -> PaperText:
        return PaperText(
            self.id, self.title, self.abstract, self.appearances, self.best_position, self.upvotes
        )


@dataclass(frozen=True)
class PaperText:
    """What ranking needs to know of a paper."""

    id: int
    title: str
    abstract: str
    appearances: int = 1
    best_position: int = 1
    upvotes: int | None = None


@dataclass(frozen=True)
class Preferences:
    """What a reader asks for: topics, phrases that rule a paper out, at most how many papers,
    how often, and what on a day nothing matched."""

    topics: tuple[str, ...]
    exclude: tuple[str, ...]
    max_papers: int
    frequency: str
    on_empty: str = "skip"  # a day nothing matched: "skip" (no mail) or "trending"


@dataclass(frozen=True)
class DumpPaper:
    position: int  # 1 = the most trending paper of the page
    title: str
    abstract: str
    code_url: str | None
    # Known only for papers from the Daily Papers API (see `ingest.apidumps`).
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    upvotes: int | None = None
    ai_summary: str | None = None

    @property
    def key(self) -> str:
        return normalize_title(self.title)


# Why a paper is in the digest of a reader with `on_empty: trending` on a day nothing matched.
TRENDING_INSTEAD = "nothing matched your topics today: one of the day's most trending papers"


@dataclass(frozen=True)
class Ranked:
    paper_id: int
    score: float  # relevance blended with trending, 0..1
    relevance: float  # probability that a reader of its best topic wants it
    matched: tuple[str, ...]  # the reader's topics it is relevant to, best first
    why: tuple[str, ...] = ()  # per matched topic: "topic (what matched)"
