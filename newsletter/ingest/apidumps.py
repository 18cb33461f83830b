"""Parse one answer of the Daily Papers API (`daily_papers-YYYY-MM-DD.json`) into the same records
as a text dump (pure: bytes in, records out).

The answer is a JSON list in page order; each item carries a `paper` object with its arXiv id,
title, summary, `ai_summary` (the page's one-line summary of what is new; the digest's excerpt
when given), authors and upvotes (the README's Inputs). Unknown keys are ignored and optional
ones may be missing, but an answer that is not such a list, or an item without an arXiv id or a
title, is refused whole with one line naming the file and the item: `DumpError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from typing import Any

from ..errors import DumpError
from ..records import (
    MAX_ABSTRACT_CHARS,
    MAX_AUTHOR_CHARS,
    MAX_AUTHORS,
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    MAX_UPVOTES,
    DumpPaper,
)
from ..text import CONTROL, SURROGATES, clip
from .dumps import ParsedDump, decode_dump, find_code_url

FILE_NAME = re.compile(r"daily_papers-(\d{4}-\d{2}-\d{2})\.json")
# New-style ids (2503.01234, with an optional version) and old-style ones (hep-th/9901001): the id
# goes into links, so nothing else is taken.
ARXIV_ID = re.compile(r"(?:\d{4}\.\d{4,5}|[a-z][a-z.-]{1,30}/\d{7})(?:v\d{1,3})?")
GITHUB_REPO = re.compile(r"https://[^\s<>\"']+")
# An answer is a list of objects holding objects and lists of authors: a handful of levels.
MAX_DEPTH = 64
# A JSON string (to skip: brackets inside it do not nest), or one bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|$)|[\[\]{}]')


def file_name(day: date) -> str:
    return f"daily_papers-{day.isoformat()}.json"


def is_api_dump(name: str) -> bool:
    return FILE_NAME.fullmatch(name) is not None


def parse_api_dump(data: bytes, name: str, path_name: str) -> tuple[ParsedDump, date]:
    """The papers of one saved answer and the day it was fetched for (from `path_name`, the
    file's own name: the answer does not say). `name` is how errors name the file."""
    match = FILE_NAME.fullmatch(path_name)
    day = _day(match, name)
    text = decode_dump(data, name)
    if _depth(text) > MAX_DEPTH:
        # Checked before parsing: the parser's recursion limit is reached deep in the C stack, and
        # objects freed there can print "Exception ignored" noise before the one line.
        raise DumpError(f"{name}: JSON nested too deeply, not a Daily Papers answer")
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as error:
        raise DumpError(
            f"{name}, line {error.lineno}: not JSON ({error.msg}), not a Daily Papers answer"
        ) from None
    except ValueError as error:  # e.g. a number of thousands of digits
        raise DumpError(f"{name}: {_first_line(error)}, not a Daily Papers answer") from None
    if not isinstance(answer, list):
        raise DumpError(f"{name}: a JSON {type(answer).__name__}, expected a list of papers")
    papers = tuple(_paper(item, position, name) for position, item in enumerate(answer, start=1))
    canonical = json.dumps(
        [[p.arxiv_id, p.title, p.abstract, p.authors, p.upvotes, p.code_url] for p in papers],
        ensure_ascii=False,
    )
    parsed = ParsedDump(
        name=name,
        month=day.month,
        day=day.day,
        year=day.year,
        date_line=1,
        sha256=hashlib.sha256(f"api {day.isoformat()} {canonical}".encode()).hexdigest(),
        papers=papers,
    )
    return parsed, day


def _depth(text: str) -> int:
    """How deeply the text's lists and objects nest, counted without parsing (no recursion)."""
    depth = deepest = 0
    for token in _STRING_OR_BRACKET.finditer(text):
        mark = token[0]
        if mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}":
            depth -= 1
    return deepest


def _day(match: re.Match[str] | None, name: str) -> date:
    if match is None:
        raise DumpError(
            f"{name}: a Daily Papers answer is named daily_papers-YYYY-MM-DD.json "
            "(its date is in the name)"
        )
    try:
        return date.fromisoformat(match[1])
    except ValueError:
        raise DumpError(f"{name}: {match[1]} is not a date") from None


def _paper(item: Any, position: int, name: str) -> DumpPaper:
    where = f"{name}, item {position}"
    if not isinstance(item, dict) or not isinstance(item.get("paper"), dict):
        raise DumpError(f'{where}: expected an object with a "paper" object')
    paper: dict[str, Any] = item["paper"]
    arxiv_id = paper.get("id")
    if not isinstance(arxiv_id, str) or not ARXIV_ID.fullmatch(arxiv_id):
        raise DumpError(f"{where}: paper.id {arxiv_id!r} is not an arXiv id")
    # The page shows the item's title (it may be edited there); the paper's is the fallback.
    title = clip(_clean(item.get("title")) or _clean(paper.get("title")), MAX_TITLE_CHARS)
    if not title:
        raise DumpError(f"{where}: the paper {arxiv_id} has no title")
    abstract = clip(_clean(paper.get("summary")) or _clean(item.get("summary")), MAX_ABSTRACT_CHARS)
    repo = paper.get("githubRepo")
    code_url = (
        repo.strip()
        if isinstance(repo, str) and GITHUB_REPO.fullmatch(repo.strip())
        else find_code_url(abstract)
    )
    upvotes = paper.get("upvotes")
    summary = clip(_clean(paper.get("ai_summary")), MAX_SUMMARY_CHARS)
    return DumpPaper(
        position=position,
        title=title,
        abstract=abstract,
        code_url=code_url,
        arxiv_id=arxiv_id,
        authors=_authors(paper.get("authors")),
        upvotes=upvotes if type(upvotes) is int and 0 <= upvotes <= MAX_UPVOTES else None,
        ai_summary=summary or None,
    )


def _authors(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = (
        clip(_clean(a.get("name")), MAX_AUTHOR_CHARS) if isinstance(a, dict) else ""
        for a in value[: MAX_AUTHORS * 2]
    )
    return tuple(n for n in names if n)[:MAX_AUTHORS]


def _clean(value: Any) -> str:
    """One line of text: control characters go (an ESC in a title would reach terminals and mail
    clients), runs of spaces and line breaks become one space."""
    if not isinstance(value, str):
        return ""
    return " ".join(CONTROL.sub(" ", SURROGATES.sub("", value)).split())


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split("\n")[0].split())[:120] or type(error).__name__
