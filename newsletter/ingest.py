"""Store parsed dumps: one paper per normalized title, every appearance kept, first-seen dates.

Each file goes in its own transaction, so a file that is refused stores nothing while the other
files of the same call still go in. A dump is identified by the hash of its normalized text:
ingesting it again (even with other line ends) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import Appearance, Database, Dump, Paper
from .dumps import ParsedDump, parse_dump
from .errors import DumpError, NewsletterError


@dataclass(frozen=True)
class StoredDump:
    name: str
    dump_date: date
    papers: int
    new_papers: int


@dataclass
class IngestReport:
    stored: list[StoredDump] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        new = sum(dump.new_papers for dump in self.stored)
        return (
            f"ingested {len(self.stored)} dump(s) with {new} new paper(s); "
            f"{len(self.unchanged)} already stored; {len(self.errors)} refused"
        )


def dump_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the `*.txt` files of the folders named, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.glob("*.txt") if p.is_file() and not p.name.startswith("."))
            )
        elif path.is_file():
            files.append(path)
        else:
            raise NewsletterError(f"{path}: no such file or folder")
    return files


def ingest_paths(
    db: Database, paths: Sequence[Path], today: date, year: int | None = None
) -> IngestReport:
    report = IngestReport()
    for path in dump_files(paths):
        try:
            parsed = parse_dump(path.read_bytes(), str(path))
            dump_date = parsed.date(today, year)
        except DumpError as error:
            report.errors.append(str(error))
            continue
        try:
            stored = store_dump(db, parsed, dump_date, path.name)
        except IntegrityError:  # another process stored the same dump (or papers) just now
            stored = store_dump(db, parsed, dump_date, path.name)
        if stored is None:
            report.unchanged.append(str(path))
        else:
            report.stored.append(stored)
    return report


def store_dump(
    db: Database, parsed: ParsedDump, dump_date: date, filename: str
) -> StoredDump | None:
    """Store one dump in one transaction; None when it was stored before."""
    with db.session() as session:
        if session.scalar(select(Dump.id).where(Dump.sha256 == parsed.sha256)) is not None:
            return None
        dump = Dump(
            sha256=parsed.sha256,
            filename=filename,
            dump_date=dump_date,
            paper_count=len(parsed.papers),
        )
        session.add(dump)
        keys = {paper.key for paper in parsed.papers}
        known = {
            paper.key: paper for paper in session.scalars(select(Paper).where(Paper.key.in_(keys)))
        }
        new_papers = 0
        for item in parsed.papers:
            paper = known.get(item.key)
            if paper is None:
                paper = Paper(
                    key=item.key,
                    title=item.title,
                    abstract=item.abstract,
                    code_url=item.code_url,
                    first_seen=dump_date,
                )
                session.add(paper)
                known[item.key] = paper
                new_papers += 1
            else:
                _merge(paper, item.abstract, item.code_url, dump_date)
            session.add(
                Appearance(paper=paper, dump=dump, seen_on=dump_date, position=item.position)
            )
        return StoredDump(filename, dump_date, len(parsed.papers), new_papers)


def _merge(paper: Paper, abstract: str, code_url: str | None, seen_on: date) -> None:
    # A dump cut mid-abstract must not shorten what another dump gave in full.
    if len(abstract) > len(paper.abstract):
        paper.abstract = abstract
    if paper.code_url is None and code_url:
        paper.code_url = code_url
    if seen_on < paper.first_seen:
        paper.first_seen = seen_on
