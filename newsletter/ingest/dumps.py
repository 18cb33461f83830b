"""Parse one text dump of the "Daily Papers" page into plain records (pure: bytes in, records out).

A dump is a few header lines, a date line such as `Mar 11`, then title and abstract paragraphs in
page order. Real dumps are messy (BOM, CRLF, trailing spaces, stray blank lines, a missing header
line, a cut-off last abstract, a last title without abstract), so paragraphs are told apart by what
they look like as well as by where they stand. A file that is not a dump raises `DumpError` with
one line naming the file (and line).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, timedelta

from ..errors import DumpError
from ..records import MAX_ABSTRACT_CHARS, MAX_TITLE_CHARS, DumpPaper
from ..text import CONTROL, WELL_FORMED_URL, clip

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
DATE_LINE = re.compile(
    r"(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<year>\d{4}))?"
)
# The date line is part of the page header: a dump whose first lines hold no date is not a dump.
HEADER_LINES_MAX = 12
TITLE_MAX_CHARS = 300

CODE_HOSTS = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|bitbucket\.org|codeberg\.org|"
    r"huggingface\.co|sourceforge\.net|[\w.-]+\.github\.io)/[^\s<>\"']+",
    re.IGNORECASE,
)
ANY_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
CODE_WORDS = re.compile(r"\b(code|implementation|repository|source|github)\b", re.IGNORECASE)
SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z(\"']")


@dataclass(frozen=True)
class ParsedDump:
    name: str
    month: int
    day: int
    year: int | None  # only when the date line carries one
    date_line: int  # 1-based line number of the date line
    sha256: (
        str  # of its paragraphs: the same dump saved with other line ends or spacing is the same
    )
    papers: tuple[DumpPaper, ...]

    def date(self, today: date, year: int | None = None) -> date:
        """The dump's date: `year` if given, else the latest one at most `DAYS_AHEAD` days after
        `today`. A date further ahead than that is refused: it would pin `--date latest`."""
        chosen = year or self.year
        if chosen is None:
            return infer_date(self.month, self.day, today)
        try:
            dated = date(chosen, self.month, self.day)
        except ValueError:
            raise DumpError(
                f"{self.name}, line {self.date_line}: {self.month:02d}-{self.day:02d} "
                f"does not exist in {chosen}"
            ) from None
        if dated > today + timedelta(days=DAYS_AHEAD):
            raise DumpError(
                f"{self.name}, line {self.date_line}: dated {dated.isoformat()}, in the future "
                f"(today is {today.isoformat()})"
            )
        return dated


# The page's day starts earlier in time zones east of ours: a dump may be dated a day or two
# after the day it is ingested, and it is still this year's.
DAYS_AHEAD = 2


def infer_date(month: int, day: int, today: date) -> date:
    """The latest date with this month and day at most `DAYS_AHEAD` days after `today` (so "Nov 26"
    ingested on Nov 25 is this year's, "Dec 31" ingested on Jan 2 last year's; Feb 29: a leap
    year)."""
    latest = today + timedelta(days=DAYS_AHEAD)
    for year in range(latest.year, latest.year - 9, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= latest:
            return candidate
    raise ValueError(f"no year for month {month} day {day}")


def find_code_url(abstract: str) -> str | None:
    """The abstract's code link: a code-hosting URL, else a URL that the text calls code."""
    match = CODE_HOSTS.search(abstract)
    if match is None:
        for url in ANY_URL.finditer(abstract):
            if CODE_WORDS.search(abstract[max(0, url.start() - 60) : url.start()]):
                match = url
                break
    if match is None:
        return None
    url = match.group(0).rstrip(".,;:!?)]}'\"")
    return url if WELL_FORMED_URL.fullmatch(url) else None  # not `…/TangleNAS-527C{here`


def decode_dump(data: bytes, name: str) -> str:
    """Text of a dump file, or `DumpError` for an empty or binary file."""
    if not data.strip():
        raise DumpError(f"{name}: empty file, not a Daily Papers dump")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise DumpError(f"{name}, line {line}: binary data (NUL byte), not a text dump")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DumpError(f"{name}, line {line}: not UTF-8 text, not a Daily Papers dump") from None
    return text


def parse_dump(data: bytes, name: str) -> ParsedDump:
    text = decode_dump(data, name)
    lines = [
        # Control characters go (tabs become spaces): an ESC or OSC sequence in a title would
        # otherwise reach the terminals that print it and the mail clients that show it.
        CONTROL.sub("", line.replace("\t", " ")).strip()
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ]
    normalized = "\n\n".join(_paragraphs(lines))

    date_index, month, day, year = _find_date_line(lines, name)
    paragraphs = _paragraphs(lines[date_index + 1 :])
    if not paragraphs:
        raise DumpError(f"{name}, line {date_index + 1}: no papers after the date line")
    papers = tuple(
        DumpPaper(
            position,
            clip(title, MAX_TITLE_CHARS),
            clip(abstract, MAX_ABSTRACT_CHARS),
            find_code_url(abstract),
        )
        for position, (title, abstract) in enumerate(_papers(paragraphs), start=1)
    )
    return ParsedDump(
        name=name,
        month=month,
        day=day,
        year=year,
        date_line=date_index + 1,
        sha256=hashlib.sha256(normalized.encode("utf-8")).hexdigest(),
        papers=papers,
    )


def _find_date_line(lines: list[str], name: str) -> tuple[int, int, int, int | None]:
    seen = 0
    for index, line in enumerate(lines):
        if not line:
            continue
        seen += 1
        if seen > HEADER_LINES_MAX:
            break
        match = DATE_LINE.fullmatch(line)
        if match and match["month"].lower() in MONTHS:
            month, day = MONTHS[match["month"].lower()], int(match["day"])
            year = int(match["year"]) if match["year"] else None
            try:
                date(year or 2000, month, day)  # 2000 is a leap year: Feb 29 passes here
            except ValueError:
                raise DumpError(f"{name}, line {index + 1}: {line!r} is not a date") from None
            return index, month, day, year
    raise DumpError(
        f"{name}: no date line (such as 'Mar 11') in the page header, not a Daily Papers dump"
    )


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated paragraphs; lines wrapped inside one are joined with a space."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def _looks_like_title(paragraph: str) -> bool:
    return (
        len(paragraph) <= TITLE_MAX_CHARS
        and ANY_URL.search(paragraph) is None
        # "Survey. III. BTSbot: ..." is a title; a run of sentences is not.
        and len(SENTENCE_BREAK.findall(paragraph)) < 3
    )


def _papers(paragraphs: list[str]) -> list[tuple[str, str]]:
    """Pair titles with abstracts. Paragraphs alternate, except where the shape says otherwise:
    a long, many-sentence paragraph where a title should be continues the last abstract (a stray
    blank line split it); a title-like paragraph where an abstract should be, followed by an
    abstract, is the next title (the previous paper has none)."""
    papers: list[list[str]] = []
    expecting_title = True
    for index, paragraph in enumerate(paragraphs):
        following = paragraphs[index + 1] if index + 1 < len(paragraphs) else None
        if expecting_title:
            if papers and papers[-1][1] and not _looks_like_title(paragraph):
                papers[-1][1] += " " + paragraph
                continue
            papers.append([paragraph, ""])
            expecting_title = False
        elif (
            _looks_like_title(paragraph)
            and following is not None
            and not _looks_like_title(following)
        ):
            papers.append([paragraph, ""])
        else:
            papers[-1][1] = paragraph
            expecting_title = True
    return [(title, abstract) for title, abstract in papers]
