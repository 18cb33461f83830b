"""Store parsed dumps: one paper per normalized title, every appearance kept, first-seen dates.

Each file goes in its own transaction, so a file that is refused stores nothing while the other
files of the same call still go in. A dump is identified by the hash of its normalized text:
ingesting it again (even with other line ends) changes nothing. With the `semantic` extra, the
papers' sentence vectors are made afterwards, a batch per transaction, outside the dumps' own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError

from ..errors import DumpError, NewsletterError
from ..ranking import embed
from ..store.db import Database
from ..store.papers import (
    StoredDump,
    papers_without_vectors,
    store_dump,
    store_vectors,
)
from .apidumps import is_api_dump, parse_api_dump
from .dumps import ParsedDump, parse_dump


@dataclass
class IngestReport:
    stored: list[StoredDump] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # API answers listing no papers
    embedded: int = 0  # papers whose sentence vectors were made

    @property
    def summary(self) -> str:
        new = sum(dump.new_papers for dump in self.stored)
        embedded = f"; {self.embedded} paper(s) embedded" if self.embedded else ""
        if self.empty:
            embedded = f"; {len(self.empty)} day(s) without papers" + embedded
        return (
            f"ingested {len(self.stored)} dump(s) with {new} new paper(s); "
            f"{len(self.unchanged)} already stored; {len(self.errors)} refused{embedded}"
        )


def dump_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the dumps of the folders named (`*.txt`, `daily_papers-D.json`),
    in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file()
                    and not p.name.startswith(".")
                    and (p.suffix == ".txt" or is_api_dump(p.name))
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise NewsletterError(f"{path}: no such file or folder")
    return files


# A Daily Papers page lists a few dozen papers; a file far beyond these limits is not one, and
# taking it would hold the database (and every later run) for minutes.
MAX_DUMP_BYTES = 64 * 1024 * 1024
MAX_DUMP_PAPERS = 50_000


def read_dump(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_DUMP_BYTES:
            raise DumpError(
                f"{path}: {size / 2**20:.0f} MiB, too large for a Daily Papers dump "
                f"(at most {MAX_DUMP_BYTES // 2**20} MiB); not ingested"
            )
        return path.read_bytes()
    except OSError as error:
        raise DumpError(f"{path}: cannot be read: {error.strerror or error}") from None


def read_any_dump(path: Path, today: date, year: int | None = None) -> tuple[ParsedDump, date]:
    """A text dump or a saved API answer, parsed, and its date (`year` concerns text dumps: an
    answer's date is in its name). `DumpError` names the file."""
    data = read_dump(path)
    if path.suffix.lower() == ".json":
        parsed, dump_date = parse_api_dump(data, str(path), path.name)
        year = dump_date.year
    else:
        parsed = parse_dump(data, str(path))
    if len(parsed.papers) > MAX_DUMP_PAPERS:
        raise DumpError(
            f"{path}: {len(parsed.papers):,} papers, more than a Daily Papers page holds "
            f"(at most {MAX_DUMP_PAPERS:,} are taken); not ingested"
        )
    return parsed, parsed.date(today, year)


def ingest_paths(
    db: Database, paths: Sequence[Path], today: date, year: int | None = None
) -> IngestReport:
    report = IngestReport()
    for path in dump_files(paths):
        try:
            parsed, dump_date = read_any_dump(path, today, year)
        except DumpError as error:
            report.errors.append(str(error))
            continue
        if not parsed.papers:  # an API answer for a day with no papers: nothing to store
            report.empty.append(str(path))
            continue
        try:
            stored = store_dump(db, parsed.sha256, parsed.papers, dump_date, path.name)
        except IntegrityError:  # another process stored the same dump (or papers) just now
            stored = store_dump(db, parsed.sha256, parsed.papers, dump_date, path.name)
        if stored is None:
            report.unchanged.append(str(path))
        else:
            report.stored.append(stored)
    report.embedded = embed_papers(db)
    return report


EMBED_BATCH = 64  # papers per transaction when storing vectors


def _packed(
    batch: list[tuple[int, list[str], str]], vectors: np.ndarray
) -> list[tuple[int, str, bytes]]:
    """(paper id, text key, its vectors packed) per paper of a batch encoded as one."""
    packed, at = [], 0
    for paper_id, texts, key in batch:
        packed.append((paper_id, key, embed.pack(vectors[at : at + len(texts)])))
        at += len(texts)
    return packed


def embed_papers(db: Database, encoder: embed.Encoder | None = None) -> int:
    """Make the sentence vectors of the papers that have none (new, or their text changed since:
    `store_dump` drops a paper's vectors when a later dump completes its abstract), or that were
    made by another model; the number of papers done. Without the `semantic` extra nothing is done
    and ranking goes by words alone."""
    encoder = encoder or embed.load()
    if encoder is None:
        return 0
    rows = papers_without_vectors(db, encoder.name)
    todo: list[tuple[int, list[str], str]] = []
    for paper_id, title, abstract in rows:
        texts = embed.paper_texts(title, abstract)
        todo.append((paper_id, texts, embed.text_key(texts)))
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start : start + EMBED_BATCH]
        vectors = encoder.encode([text for _, texts, _ in batch for text in texts])
        try:
            store_vectors(db, encoder.name, _packed(batch, vectors))
        except IntegrityError:  # another process stored this batch just now: theirs stands
            continue
    return len(todo)
