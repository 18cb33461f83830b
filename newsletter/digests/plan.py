"""Which papers each subscriber is due on a date: the window of new papers, minus what they have.

A daily subscriber gets the papers first seen since the day of their last digest (on the date
itself for a first digest), never more than 7 days back, so a missed day is caught up by the next
run. A weekly subscriber is due on Mondays and gets the 7 days ending that date. Papers already in
one of their digests are dropped, and so are papers matching their exclusions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from ..ranking import embed
from ..ranking.rank import TopicIndex
from ..records import PaperInfo, Preferences
from ..store.db import (
    ACTIVE,
    LIVE_STATES,
    Appearance,
    Database,
    Digest,
    DigestPaper,
    Paper,
    PaperVector,
    Subscriber,
    chunked,
)
from ..store.outbox import WINDOW_DAYS

WEEKLY_DAY = 0  # Monday


@dataclass(frozen=True)
class Due:
    """One subscriber due a digest on the plan's date."""

    day: date
    subscriber_id: int
    email: str
    name: str
    preferences: Preferences
    window_start: date
    candidates: tuple[int, ...]  # paper ids new in the window that they do not have yet
    digest_id: int | None = None  # their digest for this date, if it was created already
    digest_state: str | None = None


@dataclass
class Plan:
    day: date
    due: list[Due] = field(default_factory=list)
    not_due: int = 0


def is_due(frequency: str, day: date) -> bool:
    return frequency != "weekly" or day.weekday() == WEEKLY_DAY


def window_start(frequency: str, day: date, last_digest: date | None) -> date:
    earliest = earliest_candidate(day)
    if frequency == "weekly":
        return earliest
    if last_digest is None:
        return day
    return max(last_digest + timedelta(days=1), earliest)


def earliest_candidate(day: date) -> date:
    """The first day whose new papers a digest of `day` may hold (a weekly reader's window, and a
    daily reader's catch-up, reach this far and no further)."""
    return day - timedelta(days=WINDOW_DAYS - 1)


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
        )
        for p in papers
    ]


def paper_records(db: Database, new_on: date | None) -> list[dict[str, Any]]:
    """Stored papers as `newsletter papers --json` prints them (the README's Commands): those new
    on `new_on` in their order on that day's page, or all of them."""
    with db.session() as session:
        stored = load_papers(session, new_on=new_on)
    if new_on is not None:
        stored.sort(key=lambda p: (p.best_position, p.id))
    return [
        {
            "title": p.title,
            "first_seen": p.first_seen.isoformat(),
            "appearances": p.appearances,
            "code_url": p.code_url,
            "arxiv_id": p.arxiv_id,
            "authors": list(p.authors),
            "upvotes": p.upvotes,
        }
        for p in stored
    ]


def plan_day(session: Session, day: date, only: int | None = None, preview: bool = False) -> Plan:
    """Every listed, active subscriber's due digest for `day` (or why none is due); `only` limits
    the plan to one subscriber id. A `preview` plans `only` whatever their status, and a weekly
    subscriber on another day than Monday as if it were one."""
    plan = Plan(day)
    last_digest = _last_digests(session, day)
    todays = _todays_digests(session, day)
    candidates = _Candidates(session, day)
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}

    def share(items: list[str] | None) -> tuple[str, ...]:
        # One tuple per distinct topic list: readers share a few thousand of them.
        key = tuple(items or ())
        return shared.setdefault(key, key)

    for subscriber in _subscribers(session, only, preview):
        existing = todays.get(subscriber.id)
        if existing is None and not is_due(subscriber.frequency, day) and not preview:
            plan.not_due += 1
            continue
        start = (
            existing.window_start
            if existing is not None
            else window_start(subscriber.frequency, day, last_digest.get(subscriber.id))
        )
        plan.due.append(
            Due(
                day=day,
                subscriber_id=subscriber.id,
                email=subscriber.email,
                name=subscriber.name,
                preferences=Preferences(
                    share(subscriber.topics),
                    share(subscriber.exclude),
                    subscriber.max_papers,
                    subscriber.frequency,
                ),
                window_start=start,
                candidates=candidates.of(subscriber.id, start),
                digest_id=existing.id if existing is not None else None,
                digest_state=existing.state if existing is not None else None,
            )
        )
    return plan


def _subscribers(session: Session, only: int | None, preview: bool) -> Sequence[Row[Any]]:
    # Plain rows, not ORM objects: at 100,000 subscribers the difference is a few hundred MB.
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.topics,
        Subscriber.exclude,
        Subscriber.max_papers,
        Subscriber.frequency,
    )
    if not preview:
        query = query.where(Subscriber.listed.is_(True), Subscriber.status == ACTIVE)
    if only is not None:
        query = query.where(Subscriber.id == only)
    return session.execute(query.order_by(Subscriber.id)).all()


def _last_digests(session: Session, day: date) -> dict[int, date]:
    """Each subscriber's last digest date before `day` (sent, or still to be sent)."""
    return dict(
        session.execute(
            select(Digest.subscriber_id, func.max(Digest.digest_date))
            .where(Digest.state.in_(LIVE_STATES), Digest.digest_date < day)
            .group_by(Digest.subscriber_id)
        ).all()
    )


def _todays_digests(session: Session, day: date) -> dict[int, Row[Any]]:
    """The digests already made for `day`, by subscriber: a repeated run reuses them."""
    return {
        d.subscriber_id: d
        for d in session.execute(
            select(Digest.subscriber_id, Digest.id, Digest.state, Digest.window_start).where(
                Digest.digest_date == day
            )
        )
    }


class _Candidates:
    """The papers a subscriber's digest may hold: first seen within their window, and not in a
    digest of theirs already."""

    def __init__(self, session: Session, day: date):
        self.day = day
        earliest = earliest_candidate(day)
        in_window = select(Paper.id).where(Paper.first_seen.between(earliest, day))
        self.window = dict(
            session.execute(
                select(Paper.id, Paper.first_seen).where(Paper.first_seen.between(earliest, day))
            ).all()
        )
        self.already: dict[int, set[int]] = defaultdict(set)
        for subscriber_id, paper_id in session.execute(
            select(Digest.subscriber_id, DigestPaper.paper_id)
            .join(DigestPaper, DigestPaper.digest_id == Digest.id)
            .where(
                Digest.state.in_(LIVE_STATES),
                Digest.digest_date != day,
                DigestPaper.paper_id.in_(in_window),
            )
        ):
            self.already[subscriber_id].add(paper_id)
        self._since: dict[date, tuple[int, ...]] = {}

    def since(self, start: date) -> tuple[int, ...]:
        # One shared tuple per window start: most subscribers have the same candidates.
        if start not in self._since:
            self._since[start] = tuple(
                pid for pid, first_seen in self.window.items() if start <= first_seen <= self.day
            )
        return self._since[start]

    def of(self, subscriber_id: int, start: date) -> tuple[int, ...]:
        seen = self.already.get(subscriber_id)
        if seen:
            return tuple(paper_id for paper_id in self.since(start) if paper_id not in seen)
        return self.since(start)


def drop_excluded(
    index: TopicIndex, candidates: Sequence[int], exclude: Sequence[str]
) -> list[int]:
    """The candidates whose title and abstract match none of the exclusion phrases."""
    if not exclude:
        return list(candidates)
    dropped = frozenset().union(*(index.excluded(phrase) for phrase in exclude))
    return [paper_id for paper_id in candidates if paper_id not in dropped]


def load_vectors(
    session: Session, encoder: embed.Encoder | None, ids: Collection[int]
) -> dict[int, np.ndarray]:
    """The stored sentence vectors (made by this model) of the papers with those ids."""
    if encoder is None:
        return {}
    found = {}
    for chunk in chunked(sorted(ids)):
        rows = session.execute(
            select(PaperVector.paper_id, PaperVector.vectors).where(
                PaperVector.model == encoder.name, PaperVector.paper_id.in_(chunk)
            )
        )
        found.update((paper_id, embed.unpack(blob)) for paper_id, blob in rows)
    return found
