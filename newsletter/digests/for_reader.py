"""One reader's digest of a day as `newsletter rank --for` shows it: the papers it holds, in
order, through the code a run composes digests with (their topics, their exclusions, what they
already have, their feedback, the model's cuts, `max_papers`); and, with `--all`, the other
papers of the window with what kept each out. Stores nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np

from ..ranking.learn import LEARNER, Learner, ReaderFeedback
from ..ranking.rank import TopicIndex
from ..records import PaperInfo, Ranked
from ..store.db import Database
from ..store.digests import papers_of_digests
from .compose import (
    due_for,
    mailable_papers,
    pick_papers,
    reader_feedback,
    topic_index,
    trending_instead,
)
from .plan import Due, drop_excluded


@dataclass(frozen=True)
class ReaderDay:
    """What `rank --for` reads of the store for one reader and day."""

    due: Due
    papers: dict[int, PaperInfo]
    index: TopicIndex
    feedback: ReaderFeedback | None
    stored: list[int] | None  # the digest's papers when it is stored already

    @staticmethod
    def read(db: Database, email: str, day: date) -> ReaderDay:
        with db.session() as session:
            due = due_for(session, email, day)
            papers = mailable_papers(session, day)
            index = topic_index(session, papers.values())
            said = reader_feedback(session, index, [due.subscriber_id]).get(due.subscriber_id)
            stored = (
                [pid for pid, _ in papers_of_digests(session, [due.digest_id])[due.digest_id]]
                if due.digest_id is not None
                else None
            )
        return ReaderDay(due, papers, index, said, stored)


def rank_for(
    db: Database, email: str, day: date, limit: int | None = None, near_misses: bool = False
) -> list[dict[str, Any]]:
    """The reader's digest of `day` best first, as `rank --topics` records; with
    `near_misses`, then every other paper new in the window, each with `"kept_out"` saying why
    (an `exclude` phrase, already sent, below the cut, past `max_papers`, the same work as a
    listed paper) and the cut its relevance was held against. A digest already stored for the
    day is shown as stored."""
    return records_for(ReaderDay.read(db, email, day), limit, near_misses)


def records_for(
    view: ReaderDay, limit: int | None, near_misses: bool, learner: Learner = LEARNER
) -> list[dict[str, Any]]:
    """`rank_for` of what was read (`learner`: how feedback moves the ranking; the bench tunes
    it on this)."""
    due, papers, index, said, stored = view.due, view.papers, view.index, view.feedback, view.stored
    if limit is not None:
        due = replace(due, preferences=replace(due.preferences, max_papers=limit))
    wants = due.preferences
    chosen = pick_papers(index, due, said, learner) or trending_instead(index, due, papers)
    picked = {r.paper_id: r for r in chosen}
    order = stored if stored is not None else list(picked)
    # every paper the digest could take, as ranked among them (for a stored digest's reasons)
    kept = drop_excluded(index, [*due.candidates, *(stored or [])], wants.exclude)
    ranked = index.rank(wants.topics, kept, limit=None, feedback=said, learner=learner)
    relevant = {r.paper_id: r for r in ranked}
    rows = [
        _record(papers[pid], relevant.get(pid) or picked.get(pid), True)
        for pid in order
        if pid in papers
    ]
    if near_misses:
        listed = set(order)
        # what the topics alone would have let in: a paper their feedback pushed out says so
        plain = {r.paper_id for r in index.rank(wants.topics, kept, limit=None)} if said else set()
        best = index.probabilities(wants.topics, said, learner).max(axis=0)
        others = sorted(
            (p for p in papers.values() if p.id not in listed),
            key=lambda p: (-best[index.position[p.id]], p.id),
        )
        rows += [_near_miss(index, p, due, listed, relevant, best, plain) for p in others]
    return rows


def _record(paper: PaperInfo, pick: Ranked | None, in_digest: bool) -> dict[str, Any]:
    """As `rank --topics` prints a paper, with `in_digest`."""
    return {
        "title": paper.title,
        "score": pick.score if pick else 0.0,
        "relevance": pick.relevance if pick else 0.0,
        "matched": list(pick.matched) if pick else [],
        "why": list(pick.why) if pick else [],
        "in_digest": in_digest,
    }


def _near_miss(
    index: TopicIndex,
    paper: PaperInfo,
    due: Due,
    listed: set[int],
    relevant: dict[int, Ranked],
    best: np.ndarray,
    plain: set[int],
) -> dict[str, Any]:
    model = index.model
    row = _record(paper, relevant.get(paper.id), False)
    row["probability"] = round(float(best[index.position[paper.id]]), 4)
    row["cut"] = {"paper": model.cut, "topic": model.topic_cut, "relative": model.relative_cut}
    row["kept_out"] = _why_not(index, paper, due, listed, relevant)
    if row["kept_out"] == "below the cut" and paper.id in plain:
        row["kept_out"] = f"below the cut: {PUSHED_BACK}"
    return row


PUSHED_BACK = "close to papers you marked fewer like this"


def _why_not(
    index: TopicIndex, paper: PaperInfo, due: Due, listed: set[int], relevant: dict[int, Ranked]
) -> str:
    wants = due.preferences
    excluded = [phrase for phrase in wants.exclude if paper.id in index.excluded(phrase)]
    if excluded:
        return f"exclude: {excluded[0]}"
    if paper.id not in due.candidates:
        if paper.first_seen < due.window_start:
            return "before this digest's window (an earlier digest's days)"
        return "already sent"
    if paper.id not in relevant:
        return "below the cut"
    if len(listed) >= wants.max_papers:
        return f"past max_papers ({wants.max_papers})"
    return "the same work as a listed paper"
