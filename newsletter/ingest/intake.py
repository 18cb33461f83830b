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
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import DumpError, NewsletterError
from ..ranking import embed
from ..store.db import Appearance, Database, Dump, Paper, PaperVector, chunked
from .apidumps import is_api_dump, parse_api_dump
from .dumps import DumpPaper, ParsedDump, parse_dump


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
            stored = store_dump(db, parsed, dump_date, path.name)
        except IntegrityError:  # another process stored the same dump (or papers) just now
            stored = store_dump(db, parsed, dump_date, path.name)
        if stored is None:
            report.unchanged.append(str(path))
        else:
            report.stored.append(stored)
    report.embedded = embed_papers(db)
    return report


EMBED_BATCH = 64  # papers per transaction when storing vectors


def embed_papers(db: Database, encoder: embed.Encoder | None = None) -> int:
    """Make the sentence vectors of the papers that have none (new, or their text changed since:
    `store_dump` drops a paper's vectors when a later dump completes its abstract), or that were
    made by another model; the number of papers done. Without the `semantic` extra nothing is done
    and ranking goes by words alone."""
    encoder = encoder or embed.load()
    if encoder is None:
        return 0
    with db.session() as session:
        rows = session.execute(
            select(Paper.id, Paper.title, Paper.abstract)
            .outerjoin(PaperVector, PaperVector.paper_id == Paper.id)
            .where(or_(PaperVector.paper_id.is_(None), PaperVector.model != encoder.name))
        ).all()
    todo: list[tuple[int, list[str], str]] = []
    for paper_id, title, abstract in rows:
        texts = embed.paper_texts(title, abstract)
        todo.append((paper_id, texts, embed.text_key(texts)))
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start : start + EMBED_BATCH]
        vectors = encoder.encode([text for _, texts, _ in batch for text in texts])
        try:
            _store_vectors(db, encoder.name, batch, vectors)
        except IntegrityError:  # another process stored this batch just now: theirs stands
            continue
    return len(todo)


def _store_vectors(
    db: Database, model: str, batch: list[tuple[int, list[str], str]], vectors: np.ndarray
) -> None:
    with db.session() as session:
        ids = [paper_id for paper_id, _, _ in batch]
        session.execute(delete(PaperVector).where(PaperVector.paper_id.in_(ids)))
        at = 0
        for paper_id, texts, key in batch:
            session.add(
                PaperVector(
                    paper_id=paper_id,
                    model=model,
                    text_sha256=key,
                    vectors=embed.pack(vectors[at : at + len(texts)]),
                )
            )
            at += len(texts)


def store_dump(
    db: Database, parsed: ParsedDump, dump_date: date, filename: str
) -> StoredDump | None:
    """Store one dump in one transaction; None when it was stored before."""
    with db.session() as session:
        if session.scalar(select(Dump.id).where(Dump.sha256 == parsed.sha256)) is not None:
            return None
        known = _Known(session, parsed.papers)
        # The same page saved again (an abstract corrected, a paper added, or the page's API
        # answer after its text dump): its papers' appearances replace those of the earlier
        # version rather than adding a second one to each. The earlier version's row stays, so
        # that its file is still recognised as stored.
        stored = known.stored_ids(parsed.papers)
        earlier = _same_page(session, stored, parsed, dump_date)
        if earlier:  # (a paper the new version no longer lists keeps its appearance)
            for chunk in chunked(stored):
                session.execute(
                    delete(Appearance).where(
                        Appearance.dump_id.in_(earlier), Appearance.paper_id.in_(chunk)
                    )
                )
        dump = Dump(
            sha256=parsed.sha256,
            filename=filename,
            dump_date=dump_date,
            paper_count=len(parsed.papers),
        )
        session.add(dump)
        new_papers = 0
        retext: list[int] = []  # stored papers whose abstract this dump completes
        for item in parsed.papers:
            paper = known.of(item)
            if paper is None:
                paper = known.add(_new_paper(item, dump_date))
                new_papers += 1
            elif _merge(session, known, paper, item, dump_date, bool(earlier)) and paper.id:
                retext.append(paper.id)
            session.add(
                Appearance(paper=paper, dump=dump, seen_on=dump_date, position=item.position)
            )
        if retext:
            session.execute(delete(PaperVector).where(PaperVector.paper_id.in_(retext)))
        return StoredDump(filename, dump_date, len(parsed.papers), new_papers)


def _new_paper(item: DumpPaper, dump_date: date) -> Paper:
    return Paper(
        key=item.key,
        title=item.title,
        abstract=item.abstract,
        code_url=item.code_url,
        first_seen=dump_date,
        arxiv_id=item.arxiv_id,
        authors=list(item.authors) or None,
        upvotes=item.upvotes,
    )


class _Known:
    """The stored papers a dump's items are: by arXiv id first (it survives an edited title),
    then by normalized title. Papers the dump adds join as they are made."""

    def __init__(self, session: Session, items: Sequence[DumpPaper]):
        self.session = session
        self.by_key: dict[str, Paper] = {}
        self.by_id: dict[str, Paper] = {}
        ids = {item.arxiv_id for item in items if item.arxiv_id}
        for chunk in chunked(ids):
            for paper in session.scalars(select(Paper).where(Paper.arxiv_id.in_(chunk))):
                self._index(paper)
        for chunk in chunked({item.key for item in items}):
            for paper in session.scalars(select(Paper).where(Paper.key.in_(chunk))):
                self._index(paper)

    def _index(self, paper: Paper) -> None:
        self.by_key[paper.key] = paper
        if paper.arxiv_id:
            self.by_id[paper.arxiv_id] = paper

    def of(self, item: DumpPaper) -> Paper | None:
        if item.arxiv_id and item.arxiv_id in self.by_id:
            return self.by_id[item.arxiv_id]
        return self.by_key.get(item.key)

    def add(self, paper: Paper) -> Paper:
        self.session.add(paper)
        self._index(paper)
        return paper

    def stored_ids(self, items: Sequence[DumpPaper]) -> set[int]:
        return {paper.id for item in items if (paper := self.of(item)) is not None and paper.id}


SAME_PAGE = 0.8  # share of the smaller list's papers two dumps of one date have in common


def _same_page(session: Session, mine: set[int], parsed: ParsedDump, dump_date: date) -> list[int]:
    """The stored dumps of `dump_date` that are this page saved at another moment (or fetched from
    the API after its text dump was stored): most of their papers are this one's. (Several
    different pages can carry one date: the seeds hold three "Mar 11" lists that share a few
    papers, and each is kept.)"""
    size = len({item.arxiv_id or item.key for item in parsed.papers})
    if not mine:
        return []
    stored: dict[int, set[int]] = {}
    rows = session.execute(
        select(Appearance.dump_id, Appearance.paper_id)
        .join(Dump, Dump.id == Appearance.dump_id)
        .where(Dump.dump_date == dump_date)
    )
    for dump_id, paper_id in rows:
        stored.setdefault(dump_id, set()).add(paper_id)
    return [
        dump_id
        for dump_id, theirs in stored.items()
        if len(theirs & mine) >= SAME_PAGE * min(len(theirs), size)
    ]


def _merge(
    session: Session, known: _Known, paper: Paper, item: DumpPaper, seen_on: date, resaved: bool
) -> bool:
    """Bring a stored paper up to date with one more appearance; whether its text changed (its
    sentence vectors are then made again)."""
    # A dump cut mid-abstract must not shorten what another dump gave in full; a page saved
    # again gives the corrected text, except that a text dump does not overwrite the API's.
    abstract = item.abstract
    authoritative = resaved and (item.arxiv_id is not None or paper.arxiv_id is None)
    changed = False
    if (len(abstract) > len(paper.abstract) or (authoritative and abstract)) and (
        abstract != paper.abstract
    ):
        paper.abstract = abstract
        changed = True
    if item.arxiv_id:
        changed |= _merge_api(session, known, paper, item, seen_on)
    if paper.code_url is None and item.code_url:
        paper.code_url = item.code_url
    if seen_on < paper.first_seen:
        paper.first_seen = seen_on
    return changed


def _merge_api(
    session: Session, known: _Known, paper: Paper, item: DumpPaper, seen_on: date
) -> bool:
    """What the API adds: the arXiv id, authors and upvotes; and the title as the page shows it
    now, when this is the paper's newest appearance (whether the text changed)."""
    if paper.arxiv_id is None:
        paper.arxiv_id = item.arxiv_id
        known.by_id[item.arxiv_id] = paper
    if item.authors:
        paper.authors = list(item.authors)
    if item.upvotes is not None and (paper.upvotes is None or item.upvotes > paper.upvotes):
        paper.upvotes = item.upvotes
    if item.title == paper.title or paper.arxiv_id != item.arxiv_id or paper.id is None:
        return False
    newest = session.scalar(
        select(func.max(Appearance.seen_on)).where(Appearance.paper_id == paper.id)
    )
    if newest is not None and seen_on < newest:
        return False  # an older page's title: the newer one stands
    paper.title = item.title
    if item.key != paper.key and item.key not in known.by_key:
        taken = session.scalar(select(Paper.id).where(Paper.key == item.key))
        if taken is None:
            known.by_key.pop(paper.key, None)
            paper.key = item.key
            known.by_key[paper.key] = paper
    return True


def latest_dump_date(db: Database, until: date) -> date:
    """The date of the newest stored dump up to `until` (`--date latest`)."""
    with db.session() as session:
        latest = session.scalar(select(func.max(Dump.dump_date)).where(Dump.dump_date <= until))
    if latest is None:
        raise NewsletterError("--date latest: no dump is stored yet (run `newsletter ingest`)")
    return latest
