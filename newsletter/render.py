"""Render one digest to (subject, HTML, plain text) with Jinja2 and premailer (pure: no database,
no SMTP).

The HTML template keeps its CSS in a `<style>` block for clients that honour media queries and
dark mode; premailer copies every rule onto the elements as well, so clients that strip `<style>`
still get the layout. Styles depend on the template's markup, not on a digest's content, so the
template is inlined once, when the renderer is made (its Jinja loops sit in HTML comments and its
attribute placeholders have no spaces, so premailer leaves them intact), instead of once per email
(3-5 ms each); `tests/test_render.py` checks both give the same HTML. Everything user- or
dump-supplied is autoescaped.
"""

from __future__ import annotations

import logging
import re
import textwrap
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from urllib.parse import quote_plus

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from markupsafe import escape
from premailer import Premailer

from .text import clean_name

EXCERPT_CHARS = 300
SUBJECT_TITLE_CHARS = 90
DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class PaperCard:
    title: str
    abstract: str
    why: tuple[str, ...]  # per matched topic: "topic (what matched)"
    code_url: str | None
    appearances: int
    best_position: int
    best_date: date

    @cached_property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/search/?query={quote_plus(self.title)}&searchtype=title"

    @cached_property
    def hf_url(self) -> str:
        return f"https://huggingface.co/papers?q={quote_plus(self.title)}"

    @cached_property
    def excerpt(self) -> str:
        return excerpt(self.abstract)

    @cached_property
    def signal(self) -> str:
        seen = "once" if self.appearances == 1 else f"{self.appearances} times"
        page = day_label(self.best_date)
        return f"Trending: #{self.best_position} on the {page} page, listed {seen}"

    # The plain-text part's wrapped lines; a card serves many digests, so they are made once.
    @cached_property
    def text_title(self) -> str:
        return _wrap(self.title, indent="   ", first="")

    @cached_property
    def text_excerpt(self) -> str:
        return _wrap(self.excerpt, indent="   ")


@dataclass(frozen=True)
class DigestContent:
    day: date
    email: str
    name: str
    topics: tuple[str, ...]
    frequency: str
    papers: tuple[PaperCard, ...]
    unsubscribe_url: str
    list_name: str = "Trending Papers"


@dataclass(frozen=True)
class Outgoing:
    """One digest ready to render and deliver."""

    digest_id: int | None  # None in a dry-run: nothing is stored
    day: date
    email: str
    name: str
    topics: tuple[str, ...]
    frequency: str
    message_id: str
    cards: tuple[PaperCard, ...]


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    preheader: str
    html: str
    text: str


def day_label(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def excerpt(abstract: str, limit: int = EXCERPT_CHARS) -> str:
    """Whole sentences up to `limit` characters, else a cut at a word boundary with an ellipsis."""
    text = " ".join(abstract.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if sentence_end >= limit // 2:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"


def subject_for(content: DigestContent) -> str:
    top = " ".join(content.papers[0].title.split())
    if len(top) > SUBJECT_TITLE_CHARS:
        top = top[:SUBJECT_TITLE_CHARS].rsplit(" ", 1)[0] + "…"
    more = len(content.papers) - 1
    tail = f" (+{more} more)" if more else ""
    return f"Papers for {day_label(content.day)}: {top}{tail}"


def _wrap(text: str, indent: str = "", first: str | None = None, width: int = 76) -> str:
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


class Renderer:
    def __init__(self, templates_dir: Path = DEFAULT_TEMPLATES, inline_once: bool = True):
        self.templates_dir = templates_dir
        self.inline_once = inline_once

    @cached_property
    def _html_template(self) -> Template:
        if not self.inline_once:
            return self._html_env.get_template("digest.html")
        source = (self.templates_dir / "digest.html").read_text(encoding="utf-8")
        return self._html_env.from_string(inline_css(source))

    @cached_property
    def _text_template(self) -> Template:
        return self._text_env.get_template("digest.txt")

    @cached_property
    def _html_env(self) -> Environment:
        return Environment(
            loader=FileSystemLoader(self.templates_dir),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
        )

    @cached_property
    def _text_env(self) -> Environment:
        env = Environment(
            loader=FileSystemLoader(self.templates_dir),
            autoescape=False,
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        env.filters["wrap"] = _wrap
        return env

    def render(self, content: DigestContent) -> RenderedDigest:
        """One reader's digest, every value in place: the reference `shape` is checked against."""
        return self._render(content, content.name, content.email, content.unsubscribe_url)

    def shape(self, content: DigestContent) -> DigestShape:
        """The digest as every reader with the same papers, topics and cadence gets it, cut where
        the reader's own values go (`content`'s name only counts for being empty or not)."""
        greeting = SLOTS["greeting_name"] if greeting_name(content.name) else ""
        rendered = self._render(content, greeting, SLOTS["email"], SLOTS["unsubscribe_url"])
        return DigestShape(
            rendered.subject, rendered.preheader, _cut(rendered.html), _cut(rendered.text)
        )

    def _render(
        self, content: DigestContent, name: str, email: str, unsubscribe_url: str
    ) -> RenderedDigest:
        subject = subject_for(content)
        count = len(content.papers)
        preheader = (
            f"{count} new paper{'' if count == 1 else 's'} on "
            f"{', '.join(content.topics)}. Top: {content.papers[0].title}"
        )
        values = {
            "subject": subject,
            "preheader": preheader,
            "headline": f"Trending papers for {day_label(content.day)}",
            "list_name": content.list_name,
            "greeting_name": greeting_name(name),
            "topics": content.topics,
            "papers": content.papers,
            "email": email,
            "cadence": "weekly" if content.frequency == "weekly" else "daily",
            "unsubscribe_url": unsubscribe_url,
        }
        html = self._html_template.render(values)
        if not self.inline_once:
            html = inline_css(html)
        text = self._text_template.render(values)
        return RenderedDigest(subject, preheader, html, _tidy_text(text))


def greeting_name(name: str) -> str:
    return clean_name(name).split(" ")[0] if name else ""


# Stand-ins for a reader's own values while a shape is rendered: private-use characters, which
# HTML escaping leaves alone. Real titles can hold them too: a digest whose own text holds one of
# these (or `QP_MARK`, message.py's) is rendered whole for each reader instead (`has_reserved`).
SLOTS = {"greeting_name": "\ue000", "email": "\ue001", "unsubscribe_url": "\ue002"}
QP_MARK = "\ue0ff"
_RESERVED = re.compile("[" + "".join(SLOTS.values()) + QP_MARK + "]")


def has_reserved(content: DigestContent) -> bool:
    """Whether any text of the digest (every value the templates show) holds a stand-in
    character, which would be taken for a slot."""
    texts = [content.list_name, *content.topics]
    for card in content.papers:
        texts += [card.title, card.abstract, card.code_url or "", *card.why]
    return any(_RESERVED.search(text) for text in texts)


_SLOT_NAMES = {mark: name for name, mark in SLOTS.items()}
_SLOT_SPLIT = re.compile("([" + "".join(SLOTS.values()) + "])")

Pieces = tuple[str, ...]  # text, slot name, text, slot name, ..., text


@dataclass(frozen=True)
class DigestShape:
    """A digest rendered once for many readers: HTML and text as pieces with the slot names of
    the per-reader values (greeting name, address, unsubscribe link) between them."""

    subject: str
    preheader: str
    html: Pieces
    text: Pieces

    def fill(self, name: str, email: str, unsubscribe_url: str) -> RenderedDigest:
        values, escaped = reader_values(name, email, unsubscribe_url)
        return RenderedDigest(
            self.subject, self.preheader, _join(self.html, escaped), _join(self.text, values)
        )


def reader_values(
    name: str, email: str, unsubscribe_url: str
) -> tuple[dict[str, str], dict[str, str]]:
    """A reader's values for the slots: as they go in plain text, and escaped for HTML."""
    values = {
        "greeting_name": greeting_name(name),
        "email": email,
        "unsubscribe_url": unsubscribe_url,
    }
    return values, {key: str(escape(value)) for key, value in values.items()}


def _cut(rendered: str) -> Pieces:
    parts = _SLOT_SPLIT.split(rendered)
    return tuple(_SLOT_NAMES[part] if i % 2 else part for i, part in enumerate(parts))


def _join(pieces: Pieces, values: dict[str, str]) -> str:
    return "".join(values[piece] if i % 2 else piece for i, piece in enumerate(pieces))


def inline_css(html: str) -> str:
    """Copy the `<style>` rules onto the elements; media queries stay in the `<style>` block."""
    return Premailer(
        html,
        keep_style_tags=True,
        strip_important=False,
        remove_classes=False,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        preserve_handlebar_syntax=True,
    ).transform(pretty_print=False)


def _tidy_text(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
