"""A reader's papers as an Atom feed (RFC 4287), made with feedgen: one entry per paper of their
recent digests, with its title, its link, what is new in it and why it was picked. Pure: the
caller reads the papers (`digests.compose.feed_papers`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from feedgen.feed import FeedGenerator

from ..text import clean_name
from .render import PaperCard, day_label

# XML 1.0 allows no control characters but tab, newline and carriage return, and no surrogates
# or the two non-characters U+FFFE/U+FFFF; it discourages DEL and the C1 controls, which feed
# readers take for Windows-1252. Such characters in a title are left out, not fatal.
_NOT_XML = dict.fromkeys(
    c
    for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
    if c not in (0x9, 0xA, 0xD)
)


def _xml_text(text: str) -> str:
    return text.translate(_NOT_XML)


def atom_feed(
    feed_url: str,
    list_name: str,
    topics: tuple[str, ...],
    papers: list[tuple[date, PaperCard]],
    updated: datetime,
    dated: Callable[[date], datetime],
) -> bytes:
    """The feed at `feed_url` (its id and self link) of these (digest date, paper) pairs, newest
    first; `updated`: the feed's date when it holds no paper yet; `dated`: when a digest of a
    date was made (its scheduled time)."""
    feed = FeedGenerator()
    feed.id(feed_url)
    feed.title(_xml_text(f"{list_name}: {', '.join(topics)}"))
    feed.link(href=feed_url, rel="self")
    feed.author({"name": _xml_text(clean_name(list_name)) or "Trending Papers"})
    feed.subtitle(_xml_text(f"Papers picked for you on {', '.join(topics)}"))
    feed.updated(dated(papers[0][0]) if papers else updated)
    # feedgen lists entries in the reverse order of adding them: add the oldest first.
    for day, card in reversed(papers):
        entry = feed.add_entry()
        entry.id(f"{feed_url}#{day.isoformat()}-{card.paper_id}")
        entry.title(_xml_text(" ".join(card.title.split())) or "(untitled)")
        entry.link(href=card.arxiv_url)
        entry.updated(dated(day))
        entry.published(dated(day))
        why = "; ".join(card.why)
        summary = f"{card.excerpt}\n\nWhy: {why}" if card.excerpt else f"Why: {why}"
        entry.summary(_xml_text(summary))
        entry.category(term=day.isoformat(), label=f"Digest of {day_label(day)}")
    return feed.atom_str(pretty=True)
