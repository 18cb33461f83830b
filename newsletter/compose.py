"""Turn a date's plan into digests: rank each due subscriber's new papers, keep the best relevant
ones, and (in a real run) store them as pending outbox rows in one transaction.

A digest created earlier for the same date is reused as it was stored, so a run that is repeated
or resumed sends exactly the same digest, with the same Message-ID, and never a second one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import Settings
from .db import FAILED, SENT, Database, Digest, DigestPaper, Subscriber
from .errors import UnknownSubscriberError
from .message import message_id_for
from .outbox import backlog
from .rank import TopicIndex
from .render import PaperCard
from .select import Due, PaperInfo, drop_excluded, load_papers, plan_day


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


@dataclass
class Composition:
    day: date
    outgoing: list[Outgoing] = field(default_factory=list)
    skipped: int = 0  # due, but nothing relevant
    not_due: int = 0
    already_sent: int = 0
    failed: int = 0  # their digest for this date failed permanently


def compose_day(db: Database, settings: Settings, day: date, *, persist: bool) -> Composition:
    composition = Composition(day)
    with db.session() as session:
        plan = plan_day(session, day)
        composition.not_due = plan.not_due
        papers = {p.id: p for p in load_papers(session, until=day)}
        index = TopicIndex([p.text() for p in papers.values()])
        stored = _stored_papers(session, [d.digest_id for d in plan.due if d.digest_id])
        for due in plan.due:
            if due.digest_state == SENT:
                composition.already_sent += 1
            elif due.digest_state == FAILED:
                composition.failed += 1
            elif due.digest_id is not None:
                cards = tuple(_card(papers[pid], matched) for pid, matched in stored[due.digest_id])
                composition.outgoing.append(_outgoing(settings, due, due.digest_id, cards))
            else:
                picked = pick_papers(index, due)
                if not picked:
                    composition.skipped += 1
                    continue
                digest_id = _store_digest(session, settings, due, picked) if persist else None
                cards = tuple(_card(papers[pid], matched) for pid, matched, _ in picked)
                composition.outgoing.append(_outgoing(settings, due, digest_id, cards))
    return composition


def compose_for(db: Database, settings: Settings, email: str, day: date) -> Outgoing | None:
    """One subscriber's digest for `day` as a run would compose it, due or not; None when nothing
    is relevant. Stores nothing."""
    with db.session() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.lower()))
        if subscriber is None:
            raise UnknownSubscriberError(
                f"{email}: no such subscriber (see `newsletter subscribers`)"
            )
        (due,) = plan_day(session, day, only=subscriber.id, preview=True).due
        papers = {p.id: p for p in load_papers(session, until=day)}
        if due.digest_id is not None:
            stored = _stored_papers(session, [due.digest_id])[due.digest_id]
            cards = tuple(_card(papers[pid], matched) for pid, matched in stored)
        else:
            index = TopicIndex([p.text() for p in papers.values()])
            picked = pick_papers(index, due)
            cards = tuple(_card(papers[pid], matched) for pid, matched, _ in picked)
        return _outgoing(settings, due, due.digest_id, cards) if cards else None


def compose_backlog(db: Database, settings: Settings, day: date) -> list[Outgoing]:
    """Digests of earlier days that are still unsent (deferred, or cut off by a crash)."""
    with db.session() as session:
        digests = backlog(session, day)
        if not digests:
            return []
        papers = {p.id: p for p in load_papers(session, until=day)}
        stored = _stored_papers(session, [d.id for d in digests])
        return [
            Outgoing(
                digest_id=d.id,
                day=d.digest_date,
                email=d.subscriber.email,
                name=d.subscriber.name,
                topics=tuple(d.subscriber.topics),
                frequency=d.subscriber.frequency,
                message_id=d.message_id,
                cards=tuple(_card(papers[pid], matched) for pid, matched in stored[d.id]),
            )
            for d in digests
        ]


def pick_papers(index: TopicIndex, due: Due) -> list[tuple[int, tuple[str, ...], float]]:
    """(paper id, matched topics, score) of the best relevant papers for this subscriber."""
    candidates = drop_excluded(index, due.candidates, due.exclude)
    ranked = index.rank(due.topics, candidates, limit=due.max_papers)
    return [(r.paper_id, r.matched, r.score) for r in ranked]


def _stored_papers(
    session: Session, digest_ids: list[int]
) -> dict[int, list[tuple[int, tuple[str, ...]]]]:
    stored: dict[int, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
    if digest_ids:
        rows = session.execute(
            select(DigestPaper.digest_id, DigestPaper.paper_id, DigestPaper.matched)
            .where(DigestPaper.digest_id.in_(digest_ids))
            .order_by(DigestPaper.digest_id, DigestPaper.rank)
        )
        for digest_id, paper_id, matched in rows:
            stored[digest_id].append((paper_id, tuple(matched)))
    return stored


def _store_digest(
    session: Session, settings: Settings, due: Due, picked: list[tuple[int, tuple[str, ...], float]]
) -> int:
    digest = Digest(
        subscriber_id=due.subscriber_id,
        digest_date=due.day,
        window_start=due.window_start,
        message_id=message_id_for(settings, due.email, due.day),
        papers=[
            DigestPaper(paper_id=pid, rank=rank, score=score, matched=list(matched))
            for rank, (pid, matched, score) in enumerate(picked, start=1)
        ],
    )
    session.add(digest)
    session.flush()
    return digest.id


def _card(paper: PaperInfo, matched: tuple[str, ...]) -> PaperCard:
    return PaperCard(
        title=paper.title,
        abstract=paper.abstract,
        matched=matched,
        code_url=paper.code_url,
        appearances=paper.appearances,
        best_position=paper.best_position,
        best_date=paper.best_date,
    )


def _outgoing(
    settings: Settings, due: Due, digest_id: int | None, cards: tuple[PaperCard, ...]
) -> Outgoing:
    return Outgoing(
        digest_id=digest_id,
        day=due.day,
        email=due.email,
        name=due.name,
        topics=due.topics,
        frequency=due.frequency,
        message_id=message_id_for(settings, due.email, due.day),
        cards=cards,
    )
