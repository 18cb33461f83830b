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
from dataclasses import dataclass, fields
from datetime import date
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from urllib.parse import quote_plus

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import escape

from ..records import TRENDING_INSTEAD, Listing, PaperInfo
from ..text import WELL_FORMED_URL, clean_name

EXCERPT_CHARS = 300
SUBJECT_TITLE_CHARS = 90


def default_templates() -> Path:
    """The shipped templates: `templates/` of the checkout, packaged as `newsletter.templates`
    (a directory both in an editable install and in an installed wheel)."""
    return Path(str(resources.files("newsletter.templates")))


AUTHORS_SHOWN = 3  # then "et al."


@dataclass(frozen=True, kw_only=True)
class PaperCard(Listing):
    """A paper in a digest: its listing and why it was picked."""

    why: tuple[str, ...]  # per matched topic: "topic (what matched)"
    paper_id: int  # what its feedback links name

    @classmethod
    def of(cls, listing: PaperInfo, why: tuple[str, ...]) -> PaperCard:
        values = {f.name: getattr(listing, f.name) for f in fields(Listing)}
        return cls(**values, why=why, paper_id=listing.id)

    @cached_property
    def arxiv_url(self) -> str:
        if self.arxiv_id:
            return f"https://arxiv.org/abs/{self.arxiv_id}"
        return f"https://arxiv.org/search/?query={quote_plus(self.title)}&searchtype=title"

    @cached_property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None

    @cached_property
    def hf_url(self) -> str:
        if self.arxiv_id:
            return f"https://huggingface.co/papers/{self.arxiv_id}"
        return f"https://huggingface.co/papers?q={quote_plus(self.title)}"

    @cached_property
    def byline(self) -> str:
        """The first authors, then "et al." when there are more."""
        shown = ", ".join(self.authors[:AUTHORS_SHOWN])
        return f"{shown} et al." if len(self.authors) > AUTHORS_SHOWN else shown

    @cached_property
    def excerpt(self) -> str:
        """What is new: the page's summary when the API gave one, else the abstract from the
        sentence that states the contribution."""
        if self.ai_summary:
            return excerpt(self.ai_summary)
        return excerpt(contribution(self.abstract))

    @cached_property
    def code_link(self) -> str | None:
        """The code link, when it is a well-formed URL (an abstract's LaTeX leftovers, as in
        `…/TangleNAS-527C{here}`, make links that lead nowhere)."""
        return self.code_url if self.code_url and WELL_FORMED_URL.fullmatch(self.code_url) else None

    @cached_property
    def signal(self) -> str:
        seen = "once" if self.appearances == 1 else f"{self.appearances} times"
        page = day_label(self.best_date)
        votes = ""
        if self.upvotes is not None:
            votes = f", {self.upvotes} upvote{'' if self.upvotes == 1 else 's'}"
        return f"Trending: #{self.best_position} on the {page} page, listed {seen}{votes}"

    # The plain-text part's wrapped lines; a card serves many digests, so they are made once.
    @cached_property
    def text_title(self) -> str:
        return _wrap(self.title, indent="   ", first="")

    @cached_property
    def text_byline(self) -> str:
        return _wrap(self.byline, indent="   ")

    @cached_property
    def text_excerpt(self) -> str:
        return _wrap(self.excerpt, indent="   ")


@dataclass(frozen=True)
class ReaderLinks:
    """A reader's own links in their digest (`mail.tokens.reader_links`): unsubscribe, the
    digest as a web page, their feed, and per paper (in the digest's order) "More like this"
    and "Fewer like this"."""

    unsubscribe: str | Slot
    view: str | Slot
    feed: str | Slot
    more: tuple[str | Slot, ...]
    less: tuple[str | Slot, ...]
    unsubscribe_token: str = ""  # the unsubscribe link's token (the mailto's subject carries it)

    @classmethod
    def slots(cls, papers: int) -> ReaderLinks:
        """Where each link goes in a rendering shared by many readers."""
        return cls(
            Slot("unsubscribe"),
            Slot("view"),
            Slot("feed"),
            tuple(Slot(f"more:{n}") for n in range(papers)),
            tuple(Slot(f"less:{n}") for n in range(papers)),
        )

    def values(self) -> dict[str, str]:
        """The links by the names of their slots."""
        values = {"unsubscribe": self.unsubscribe, "view": self.view, "feed": self.feed}
        values.update((f"more:{n}", url) for n, url in enumerate(self.more))
        values.update((f"less:{n}", url) for n, url in enumerate(self.less))
        return {name: str(url) for name, url in values.items()}


@dataclass(frozen=True)
class DigestContent:
    day: date
    email: str
    name: str
    topics: tuple[str, ...]
    frequency: str
    papers: tuple[PaperCard, ...]
    links: ReaderLinks
    list_name: str = "Trending Papers"
    # Shown as a web page (`/digest/<token>`): no "view in browser" link; with `own` false (a
    # page passed on) none of the reader's own links either: unsubscribe, feedback, feed.
    web: bool = False
    own: bool = True
    share: str = ""  # on the reader's own web page: the page's link to pass on


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    preheader: str
    html: str
    text: str


def day_label(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
# A sentence that says what the paper does: "we propose", "this paper introduces", "here we show",
# "our method achieves" ... (the first one; abstracts open with the field's background).
_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|article|study|report)|in this (?:paper|work)|our (?:method|"
    r"approach|work|model|framework|results?|experiments?))\b[^.!?]*?\b(?:propos|introduc|present|"
    r"show|develop|demonstrat|design|describ|build|construct|prov|find|found|offer|achiev|"
    r"reveal|outperform|bridg|address|tackl|enabl)\w*",
    re.IGNORECASE,
)


def contribution(abstract: str) -> str:
    """The abstract from its first sentence that states the contribution ("we propose ...");
    the whole abstract when no sentence does."""
    text = " ".join(abstract.split())
    sentences = _SENTENCE.split(text)
    for n, sentence in enumerate(sentences):
        if _CONTRIBUTION.search(sentence):
            return " ".join(sentences[n:])
    return text


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
    def __init__(self, templates_dir: Path | None = None, inline_once: bool = True):
        self.templates_dir = templates_dir or default_templates()
        self.inline_once = inline_once

    @property
    def _html_template(self) -> Template:
        return _templates(self.templates_dir, self.inline_once)[0]

    @property
    def _text_template(self) -> Template:
        return _templates(self.templates_dir, self.inline_once)[1]

    def render(self, content: DigestContent) -> RenderedDigest:
        """One reader's digest, every value in place (a preview, and the reference a filled
        `shape` is checked against)."""
        values = self._values(content, content.name, content.email, content.links)
        html = self._html_template.render(values)
        if not self.inline_once:
            html = inline_css(html)
        text = _tidy_text(self._text_template.render(values))
        return RenderedDigest(values["subject"], values["preheader"], html, text)

    def shape(self, content: DigestContent) -> DigestShape:
        """The digest as every reader with the same papers, topics and cadence gets it, cut where
        the reader's own values go (`content`'s name only counts for being empty or not). The
        cuts are where the templates output a `Slot`, recorded while rendering: no text of the
        digest can be taken for one."""
        greeting = Slot("greeting_name") if greeting_name(content.name) else ""
        links = ReaderLinks.slots(len(content.papers))
        values = self._values(content, greeting, Slot("email"), links)
        html = _render_pieces(self._html_template, values)
        text = _tidy_pieces(_render_pieces(self._text_template, values))
        return DigestShape(values["subject"], values["preheader"], html, text)

    @staticmethod
    def _values(
        content: DigestContent, name: str | Slot, email: str | Slot, links: ReaderLinks
    ) -> dict[str, object]:
        count = len(content.papers)
        nothing_matched = all(card.why == (TRENDING_INSTEAD,) for card in content.papers)
        return {
            "subject": subject_for(content),
            "preheader": (
                f"Nothing new matched {', '.join(content.topics)} today; the day's most trending"
                f" papers. Top: {content.papers[0].title}"
                if nothing_matched
                else f"{count} new paper{'' if count == 1 else 's'} on "
                f"{', '.join(content.topics)}. Top: {content.papers[0].title}"
            ),
            "nothing_matched": nothing_matched,
            "headline": f"Trending papers for {day_label(content.day)}",
            "list_name": content.list_name,
            "greeting_name": name if isinstance(name, Slot) else greeting_name(name),
            "topics": content.topics,
            "papers": content.papers,
            "email": email,
            "cadence": "weekly" if content.frequency == "weekly" else "daily",
            "links": links,
            "web": content.web,
            "own": content.own,
            "share": content.share,
        }


def greeting_name(name: str) -> str:
    return clean_name(name).split(" ")[0] if name else ""


class Slot:
    """Where a reader's own value goes in a rendering shared by many readers. Templates show it
    as a bare `{{ name }}`; any other use of it (a filter, a concatenation) is an error rather
    than a value silently left out."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        raise TemplateError(f"the reader's {self.name} can only be shown as {{{{ {self.name} }}}}")

    __html__ = __str__


_SLOTS_SEEN = "_slots_seen"  # the render's list of slots output so far


@pass_context
def _finalize(context: Context, value: object) -> object:
    """Every `{{ ... }}` passes through here just before it is output: a slot is noted, in
    order, and outputs nothing."""
    if isinstance(value, Slot):
        context[_SLOTS_SEEN].append(value.name)
        return ""
    return value


Pieces = tuple[str, ...]  # text, slot name, text, slot name, ..., text


def _render_pieces(template: Template, values: dict[str, object]) -> Pieces:
    """The template's output cut at its slots. Jinja yields each `{{ ... }}` as a chunk of its
    own, right after `_finalize` has seen it: the chunk that follows a noted slot is the slot."""
    seen: list[str] = []
    pieces: list[str] = []
    current: list[str] = []
    for chunk in template.generate({**values, _SLOTS_SEEN: seen}):
        if not seen:
            current.append(chunk)
            continue
        if chunk:  # the slot went through a block that buffers its output
            raise TemplateError(f"the reader's {seen[0]} must be output directly")
        pieces += ["".join(current), seen.pop()]
        current = []
    return (*pieces, "".join(current))


def _tidy_pieces(pieces: Pieces) -> Pieces:
    """`_tidy_text` piece by piece: a slot's value is never empty and holds no line break, so no
    run of blank lines spans one."""
    texts = [_BLANK_LINES.sub("\n\n", piece) for piece in pieces[::2]]
    texts[0] = texts[0].lstrip()
    texts[-1] = texts[-1].rstrip() + "\n"
    result = list(pieces)
    result[::2] = texts
    return tuple(result)


@dataclass(frozen=True)
class DigestShape:
    """A digest rendered once for many readers: HTML and text as pieces with the slot names of
    the per-reader values (greeting name, address, links) between them."""

    subject: str
    preheader: str
    html: Pieces
    text: Pieces

    def fill(self, name: str, email: str, links: ReaderLinks) -> RenderedDigest:
        values, escaped = reader_values(name, email, links)
        return RenderedDigest(
            self.subject, self.preheader, _join(self.html, escaped), _join(self.text, values)
        )


def reader_values(
    name: str, email: str, links: ReaderLinks
) -> tuple[dict[str, str], dict[str, str]]:
    """A reader's values for the slots: as they go in plain text, and escaped for HTML."""
    values = {"greeting_name": greeting_name(name), "email": email, **links.values()}
    return values, {key: str(escape(value)) for key, value in values.items()}


def _join(pieces: Pieces, values: dict[str, str]) -> str:
    return "".join(values[piece] if i % 2 else piece for i, piece in enumerate(pieces))


@cache
def _templates(templates_dir: Path, inline_once: bool) -> tuple[Template, Template]:
    """The HTML and text templates, compiled once per process however many renderers there
    are; the HTML one with its CSS inlined when `inline_once`."""
    loader = FileSystemLoader(templates_dir)
    html_env = Environment(
        loader=loader,
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        finalize=_finalize,
    )
    text_env = Environment(
        loader=loader,
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    text_env.filters["wrap"] = _wrap
    if inline_once:
        source = (templates_dir / "digest.html").read_text(encoding="utf-8")
        html = html_env.from_string(inline_css(source))
    else:
        html = html_env.get_template("digest.html")
    return html, text_env.get_template("digest.txt")


def inline_css(html: str) -> str:
    """Copy the `<style>` rules onto the elements; media queries stay in the `<style>` block."""
    from premailer import Premailer  # (with lxml and cssutils: only where a template is inlined)

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


_BLANK_LINES = re.compile(r"\n{3,}")  # more than one blank line in a row: one is kept


def _tidy_text(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"
