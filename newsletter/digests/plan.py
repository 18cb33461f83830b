"""Which papers each subscriber is due on a date: the window of new papers, minus what they have.

A daily subscriber gets the papers first seen since the day of their last digest (on the date
itself for a first digest), never more than 7 days back, so a missed day is caught up by the next
run. A weekly subscriber is due on Mondays and gets the 7 days ending that date. Papers already in
one of their digests are dropped, and so are papers matching their exclusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ..ranking.rank import TopicIndex
from ..records import WINDOW_DAYS, Preferences
from ..store.db import Database
from ..store.digests import (
    digests_of_day,
    last_digest_dates,
    papers_first_seen,
    papers_in_other_digests,
    subscribers_to_plan,
)
from ..store.papers import load_papers

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
    last_digest = last_digest_dates(session, day)
    todays = digests_of_day(session, day)
    candidates = _Candidates(session, day)
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}

    def share(items: list[str] | None) -> tuple[str, ...]:
        # One tuple per distinct topic list: readers share a few thousand of them.
        key = tuple(items or ())
        return shared.setdefault(key, key)

    for subscriber in subscribers_to_plan(session, only, everyone=preview):
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
                    subscriber.on_empty,
                ),
                window_start=start,
                candidates=candidates.of(subscriber.id, start),
                digest_id=existing.id if existing is not None else None,
                digest_state=existing.state if existing is not None else None,
            )
        )
    return plan


class _Candidates:
    """The papers a subscriber's digest may hold: first seen within their window, and not in a
    digest of theirs already."""

    def __init__(self, session: Session, day: date):
        self.day = day
        self.window = papers_first_seen(session, earliest_candidate(day), day)
        self.already = papers_in_other_digests(session, day, self.window)
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
    """The candidates about none of the exclusion phrases (see `TopicIndex.excluded`)."""
    if not exclude:
        return list(candidates)
    dropped = frozenset().union(*(index.excluded(phrase) for phrase in exclude))
    return [paper_id for paper_id in candidates if paper_id not in dropped]
