"""Papers in the store: a parsed dump stored (one paper per arXiv id or normalized title, every
appearance kept, first-seen dates), the papers' sentence vectors, and the papers read back with
their trending signal as of a date.

A dump is stored in one transaction and identified by the hash of its normalized text: storing it
again (even with other line ends) changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ..errors import NewsletterError
from ..records import DumpPaper, PaperInfo
from .db import Appearance, Database, Dump, Paper, PaperVector, chunked


@dataclass(frozen=True)
class StoredDump:
    name: str
    dump_date: date
    papers: int
    new_papers: int


def store_dump(
    db: Database, sha256: str, items: Sequence[DumpPaper], dump_date: date, filename: str
) -> StoredDump | None:
    """Store one parsed dump (known by the hash of its text) in one transaction; None when it
    was stored before."""
    with db.session() as session:
        if session.scalar(select(Dump.id).where(Dump.sha256 == sha256)) is not None:
            return None
        known = _Known(session, items)
        # The same page saved again (an abstract corrected, a paper added, or the page's API
        # answer after its text dump): its papers' appearances replace those of the earlier
        # version rather than adding a second one to each. The earlier version's row stays, so
        # that its file is still recognised as stored.
        stored = known.stored_ids(items)
        earlier = _same_page(session, stored, items, dump_date)
        if earlier:  # (a paper the new version no longer lists keeps its appearance)
            for chunk in chunked(stored):
                session.execute(
                    delete(Appearance).where(
                        Appearance.dump_id.in_(earlier), Appearance.paper_id.in_(chunk)
                    )
                )
        dump = Dump(
            sha256=sha256,
            filename=filename,
            dump_date=dump_date,
            paper_count=len(items),
        )
        session.add(dump)
        new_papers = 0
        retext: list[int] = []  # stored papers whose abstract this dump completes
        for item in items:
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
        return StoredDump(filename, dump_date, len(items), new_papers)


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
        ai_summary=item.ai_summary,
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


def _same_page(
    session: Session, mine: set[int], items: Sequence[DumpPaper], dump_date: date
) -> list[int]:
    """The stored dumps of `dump_date` that are this page saved at another moment (or fetched from
    the API after its text dump was stored): most of their papers are this one's. (Several
    different pages can carry one date: the seeds hold three "Mar 11" lists that share a few
    papers, and each is kept.)"""
    size = len({item.arxiv_id or item.key for item in items})
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
    if item.ai_summary:
        paper.ai_summary = item.ai_summary
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


def load_papers(
    session: Session,
    until: date | None = None,
    new_on: date | None = None,
    *,
    since: date | None = None,
    ids: Collection[int] | None = None,
) -> list[PaperInfo]:
    """Stored papers (first seen from `since` to `until`, on `new_on`, or with those `ids`), with
    their appearances up to `until`. Only the papers asked for are read, whatever the history."""
    conditions = []
    if until is not None:
        conditions.append(Paper.first_seen <= until)
    if since is not None:
        conditions.append(Paper.first_seen >= since)
    if new_on is not None:
        conditions.append(Paper.first_seen == new_on)
    if ids is not None:
        return [
            paper
            for chunk in chunked(sorted(ids))
            for paper in _papers_where(session, until, [*conditions, Paper.id.in_(chunk)])
        ]
    return _papers_where(session, until, conditions)


def _papers_where(session: Session, until: date | None, conditions: list[Any]) -> list[PaperInfo]:
    papers = list(
        session.scalars(select(Paper).where(*conditions).order_by(Paper.first_seen, Paper.id))
    )
    appearances = (
        select(Appearance.paper_id, Appearance.seen_on, Appearance.position)
        .join(Paper, Paper.id == Appearance.paper_id)
        .where(*conditions)
    )
    if until is not None:
        appearances = appearances.where(Appearance.seen_on <= until)
    counts: dict[int, int] = defaultdict(int)
    best: dict[int, tuple[int, date]] = {}
    for paper_id, seen_on, position in session.execute(appearances):
        counts[paper_id] += 1
        if paper_id not in best or (position, seen_on) < best[paper_id]:
            best[paper_id] = (position, seen_on)
    return [
        PaperInfo(
            id=p.id,
            title=p.title,
            abstract=p.abstract,
            code_url=p.code_url,
            first_seen=p.first_seen,
            appearances=counts.get(p.id, 1),
            best_position=best.get(p.id, (1, p.first_seen))[0],
            best_date=best.get(p.id, (1, p.first_seen))[1],
            arxiv_id=p.arxiv_id,
            authors=tuple(p.authors or ()),
            upvotes=p.upvotes,
            ai_summary=p.ai_summary,
        )
        for p in papers
    ]


def store_vectors(db: Database, model: str, packed: list[tuple[int, str, bytes]]) -> None:
    """Replace the sentence vectors of these papers: (paper id, key of the text they were made
    of, the vectors packed), in one transaction."""
    with db.session() as session:
        ids = [paper_id for paper_id, _, _ in packed]
        session.execute(delete(PaperVector).where(PaperVector.paper_id.in_(ids)))
        for paper_id, key, blob in packed:
            session.add(PaperVector(paper_id=paper_id, model=model, text_sha256=key, vectors=blob))


def papers_without_vectors(db: Database, model: str) -> list[tuple[int, str, str]]:
    """(id, title, abstract) of the papers with no sentence vectors, or with another model's."""
    with db.session() as session:
        return [
            (paper_id, title, abstract)
            for paper_id, title, abstract in session.execute(
                select(Paper.id, Paper.title, Paper.abstract)
                .outerjoin(PaperVector, PaperVector.paper_id == Paper.id)
                .where(or_(PaperVector.paper_id.is_(None), PaperVector.model != model))
            )
        ]


def load_vectors(session: Session, model: str, ids: Collection[int]) -> dict[int, bytes]:
    """The stored sentence vectors (made by `model`, packed) of the papers with those ids."""
    found: dict[int, bytes] = {}
    for chunk in chunked(sorted(ids)):
        rows = session.execute(
            select(PaperVector.paper_id, PaperVector.vectors).where(
                PaperVector.model == model, PaperVector.paper_id.in_(chunk)
            )
        )
        found.update((paper_id, blob) for paper_id, blob in rows)
    return found
