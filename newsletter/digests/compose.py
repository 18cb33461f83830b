"""Turn a date's plan into digests: rank each due subscriber's new papers, keep the best relevant
ones, and (in a real run) store them as pending outbox rows in one transaction.

A digest created earlier for the same date is reused as it was stored, so a run that is repeated
or resumed sends exactly the same digest, with the same Message-ID, and never a second one.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import UnknownSubscriberError
from ..mail.outgoing import Outgoing
from ..mail.render import PaperCard
from ..mail.tokens import message_id_for
from ..ranking import embed
from ..ranking.index import background
from ..ranking.learn import LEARNER, Learner, Marked, ReaderFeedback
from ..ranking.rank import TopicIndex
from ..records import TRENDING_INSTEAD, PaperInfo, Ranked
from ..store.db import FAILED, LESS, MORE, SENT, Database
from ..store.digests import (
    NewDigest,
    composed_earlier,
    composition_fingerprint,
    digest_states,
    papers_of_digests,
    recent_digests,
    record_composition,
    store_digests,
)
from ..store.feedback import feedback_of
from ..store.leases import Heartbeat, wait_for_lease
from ..store.outbox import OUTBOX_BATCH, digests_by_id, unsent_ids
from ..store.papers import load_papers, load_vectors
from ..store.subscribers import subscriber_by_address, subscriber_by_id
from ..subscribers.addresses import normalize_address
from .plan import Due, drop_excluded, earliest_candidate, plan_day


@dataclass
class Composition:
    day: date
    outgoing: list[Outgoing] = field(default_factory=list)
    skipped: int = 0  # due, but nothing relevant
    not_due: int = 0
    already_sent: int = 0
    failed: int = 0  # their digest for this date failed permanently


Picked = list[Ranked]  # a reader's papers, best first


def compose_day(
    db: Database, settings: Settings, day: date, *, persist: bool, keep: bool = True
) -> Composition:
    """Every due digest of `day`. Subscribers who share topics, exclusions, size and window share
    one ranking, and papers share one card, so 100,000 subscribers cost a few thousand rankings.
    With `keep` false only the counts come back (a real run reads its digests back in batches)."""
    composition = Composition(day)
    with db.session() as session:
        plan = plan_day(session, day)
        composition.not_due = plan.not_due
        papers = mailable_papers(session, day)
        index = topic_index(session, papers.values())
        cards = _Cards(papers)
        earlier = [d.digest_id for d in plan.due if d.digest_id] if keep else []
        stored = papers_of_digests(session, earlier)
        fresh = [d.subscriber_id for d in plan.due if d.digest_id is None]
        feedback = reader_feedback(session, index, fresh)
        rankings: dict[tuple[object, ...], Picked] = {}
        new: list[tuple[Due, Picked]] = []
        for due in plan.due:
            if due.digest_state == SENT:
                composition.already_sent += 1
            elif due.digest_state == FAILED:
                composition.failed += 1
            elif due.digest_id is not None:
                if keep:
                    chosen = cards.of(stored[due.digest_id])
                    composition.outgoing.append(_outgoing(settings, due, due.digest_id, chosen))
            else:
                wants = due.preferences
                said = feedback.get(due.subscriber_id)
                key = (
                    wants.topics,
                    wants.exclude,
                    wants.max_papers,
                    due.candidates,
                    said.key if said else None,
                )
                if key not in rankings:
                    rankings[key] = pick_papers(index, due, said)
                picked = rankings[key] or trending_instead(index, due, papers)
                if picked:
                    new.append((due, picked))
                else:
                    composition.skipped += 1
        # Readers with the same papers side by side (so stored ids too): messages are made per
        # shape of digest, and a shape's rendering is then reused while it is still cached.
        new.sort(key=lambda item: id(item[1]))
        ids = _store(session, settings, day, new) if persist else {}
        for due, picked in new if keep else ():
            chosen = cards.of([(pick.paper_id, pick.why) for pick in picked])
            composition.outgoing.append(
                _outgoing(settings, due, ids.get(due.subscriber_id), chosen)
            )
    return composition


def compose_shared(
    db: Database, settings: Settings, day: date, holder: str, stop: threading.Event | None
) -> Composition | None:
    """`compose_day` for a real run with other senders about: one at a time under the date's
    lease, and only if subscribers or dumps changed since the date was last composed (by anyone),
    so selection happens once however many senders start. None if stopped while waiting."""
    lease = wait_for_lease(db, day, holder, stop)
    if lease is None:
        return None
    try:
        with Heartbeat(lease.renew, lease.seconds / 3):
            with db.session() as session:
                fingerprint = composition_fingerprint(session)
                done = composed_earlier(session, day)
            if done is not None and done.fingerprint == fingerprint:
                return _composed_earlier(db, day, done.counts)
            composition = compose_day(db, settings, day, persist=True, keep=False)
            counts = {"skipped": composition.skipped, "not_due": composition.not_due}
            with db.session() as session:
                record_composition(session, day, fingerprint, holder, counts)
            return composition
    finally:
        lease.release()


class _Cards:
    """One `PaperCard` per paper and reason, shared by every digest that shows it."""

    def __init__(self, papers: dict[int, PaperInfo]):
        self.papers = papers
        self._made: dict[tuple[int, tuple[str, ...]], PaperCard] = {}

    def of(self, chosen: list[tuple[int, tuple[str, ...]]]) -> tuple[PaperCard, ...]:
        return tuple(self.card(pid, why) for pid, why in chosen)

    def card(self, paper_id: int, why: tuple[str, ...]) -> PaperCard:
        key = (paper_id, why)
        if key not in self._made:
            self._made[key] = PaperCard.of(self.papers[paper_id], why)
        return self._made[key]


def due_for(session: Session, email: str, day: date) -> Due:
    """One subscriber's digest of `day` as planned, due or not (a preview, `rank --for`);
    `UnknownSubscriberError` for an address no list or run has named."""
    subscriber = subscriber_by_address(session, normalize_address(email))
    if subscriber is None:
        raise UnknownSubscriberError(f"{email}: no such subscriber (see `newsletter subscribers`)")
    (due,) = plan_day(session, day, only=subscriber.id, preview=True).due
    return due


def compose_for(db: Database, settings: Settings, email: str, day: date) -> Outgoing | None:
    """One subscriber's digest for `day` as a run would compose it, due or not; None when nothing
    is relevant. Stores nothing."""
    with db.session() as session:
        due = due_for(session, email, day)
        papers = mailable_papers(session, day)
        if due.digest_id is not None:
            stored = papers_of_digests(session, [due.digest_id])[due.digest_id]
            cards = _Cards(papers).of(stored)
        else:
            index = topic_index(session, papers.values())
            said = reader_feedback(session, index, [due.subscriber_id]).get(due.subscriber_id)
            picked = pick_papers(index, due, said) or trending_instead(index, due, papers)
            cards = _Cards(papers).of([(pick.paper_id, pick.why) for pick in picked])
        return _outgoing(settings, due, due.digest_id, cards) if cards else None


def digest_for_page(
    db: Database, settings: Settings, subscriber_id: int, day: date
) -> Outgoing | None:
    """A reader's digest of `day` for its web page: as stored, else as a run would compose it
    (a dry-run's links open the digest its file shows); None for a reader no longer stored or a
    day with nothing for them."""
    with db.session() as session:
        subscriber = subscriber_by_id(session, subscriber_id)
        if subscriber is None:
            return None
        email = subscriber.email
    return compose_for(db, settings, email, day)


FEED_DAYS = 30  # a reader's feed holds the papers of their digests of these last days


def feed_papers(db: Database, subscriber_id: int, today: date) -> list[tuple[date, PaperCard]]:
    """The papers of a reader's live digests of the last `FEED_DAYS` days, newest digest first,
    each digest's papers in its order."""
    since = today - timedelta(days=FEED_DAYS - 1)
    with db.session() as session:
        digests = recent_digests(session, subscriber_id, since, today)
        stored = papers_of_digests(session, [d.id for d in digests])
        wanted = {pid for papers in stored.values() for pid, _ in papers}
        papers = {p.id: p for p in load_papers(session, until=today, ids=wanted)}
    cards = _Cards(papers)
    return [
        (d.digest_date, cards.card(pid, why)) for d in digests for pid, why in stored.get(d.id, [])
    ]


class StoredDigests:
    """Stored digests as `Outgoing`, their paper cards made once and shared. The papers are read
    as the digests name them (a digest left from an earlier day may hold older ones)."""

    def __init__(self, db: Database, day: date):
        self.db = db
        self.day = day
        self.cards = _Cards({})

    def load(self, ids: list[int]) -> list[Outgoing]:
        with self.db.session() as session:
            digests = digests_by_id(session, ids)
            stored = papers_of_digests(session, ids)
            wanted = {pid for papers in stored.values() for pid, _ in papers}
            unknown = wanted - self.cards.papers.keys()
            if unknown:
                self.cards.papers.update(
                    (p.id, p) for p in load_papers(session, until=self.day, ids=unknown)
                )
            return [
                Outgoing(
                    digest_id=d.id,
                    subscriber_id=d.subscriber_id,
                    day=d.digest_date,
                    email=d.subscriber.email,
                    name=d.subscriber.name,
                    topics=tuple(d.subscriber.topics),
                    frequency=d.subscriber.frequency,
                    message_id=d.message_id,
                    cards=self.cards.of(stored[d.id]),
                )
                for d in digests
            ]


def stored_digests(
    db: Database, settings: Settings, day: date, batch: int | None = None
) -> Iterator[list[Outgoing]]:
    """Every unsent stored digest to send on `day` (its own, then any left from the days before),
    read a batch at a time so that memory stays flat however many there are. Claims nothing:
    for one reader (the benchmark, a preview of the outbox); senders use `outbox.claim_batch`."""
    loader = StoredDigests(db, day)
    after = 0
    while True:
        with db.session() as session:
            ids = unsent_ids(session, day, after, batch or OUTBOX_BATCH)
        if not ids:
            return
        after = ids[-1]
        yield loader.load(ids)


def mailable_papers(session: Session, day: date) -> dict[int, PaperInfo]:
    """The papers a digest of `day` may hold, by id: those first seen in the longest window
    (`planning.earliest_candidate`). Ranking reads these and no others, so its cost and its
    scores do not grow or drift with the years of papers stored before."""
    return papers_between(session, earliest_candidate(day), day)


def papers_between(session: Session, since: date, until: date) -> dict[int, PaperInfo]:
    """The papers first seen from `since` to `until`, by id, as of `until`."""
    return {p.id: p for p in load_papers(session, until=until, since=since)}


def topic_index(session: Session, papers: Iterable[PaperInfo]) -> TopicIndex:
    """The ranking index of these papers (its BM25 statistics theirs), with their stored
    sentence vectors when the `semantic` extra is installed."""
    encoder = embed.load()
    texts = [p.text() for p in papers]
    stored = {} if encoder is None else load_vectors(session, encoder.name, [t.id for t in texts])
    width = encoder.dimensions if encoder is not None else embed.DIMENSIONS
    vectors = {paper_id: embed.unpack(blob, width) for paper_id, blob in stored.items()}
    return TopicIndex(texts, vectors=vectors, encoder=encoder, reference=background())


def rank_records(
    db: Database, topics: tuple[str, ...], new_on: date | None, limit: int
) -> list[dict[str, Any]]:
    """Stored papers (those new on `new_on`, ranked among the papers a digest of that day could
    hold, as a digest ranks them; or all) ranked for `topics`, best first, as
    `newsletter rank --json` prints them."""
    with db.session() as session:
        stored = (
            mailable_papers(session, new_on) if new_on else {p.id: p for p in load_papers(session)}
        )
        index = topic_index(session, stored.values())
    candidates = [p.id for p in stored.values() if new_on is None or p.first_seen == new_on]
    return [
        {
            "title": stored[r.paper_id].title,
            "score": r.score,
            "relevance": r.relevance,
            "matched": list(r.matched),
            "why": list(r.why),
        }
        for r in index.rank(topics, candidates, limit=limit)
    ]


TRENDING_SHOWN = 3  # papers of an `on_empty: trending` reader's mail on a day nothing matched


def trending_instead(index: TopicIndex, due: Due, papers: dict[int, PaperInfo]) -> Picked:
    """For a reader with `on_empty: trending` on a day nothing matched their topics: the day's
    `TRENDING_SHOWN` most trending papers they do not have and did not exclude (none for `skip`).
    Their order is the trending signal's; relevance, none."""
    if due.preferences.on_empty != "trending":
        return []
    today = [p for p in due.candidates if p in papers and papers[p].first_seen == due.day]
    kept = drop_excluded(index, today, due.preferences.exclude)
    trend = index.selection.trend
    best = sorted(kept, key=lambda p: (-trend[index.position[p]], papers[p].best_position, p))
    return [
        Ranked(p, round(float(trend[index.position[p]]), 4), 0.0, (), (TRENDING_INSTEAD,))
        for p in best[:TRENDING_SHOWN]
    ]


def pick_papers(
    index: TopicIndex, due: Due, feedback: ReaderFeedback | None = None, learner: Learner = LEARNER
) -> Picked:
    """The best relevant papers for this subscriber, best first (moved by their feedback)."""
    wants = due.preferences
    candidates = drop_excluded(index, due.candidates, wants.exclude)
    return index.rank(
        wants.topics, candidates, limit=wants.max_papers, feedback=feedback, learner=learner
    )


def reader_feedback(
    session: Session, index: TopicIndex, subscriber_ids: Collection[int]
) -> dict[int, ReaderFeedback]:
    """What these readers marked "more" and "fewer" like this, as the learner reads it (the
    marked papers with their stored vectors of the index's sentence model): only readers with
    any feedback."""
    said = feedback_of(session, subscriber_ids)
    if not said:
        return {}
    marked_ids = {paper_id for verdicts in said.values() for paper_id in verdicts}
    papers = {p.id: p for p in load_papers(session, ids=marked_ids)}
    encoder = index.index.encoder
    vectors: dict[int, np.ndarray] = {}
    if encoder is not None:
        for paper_id, blob in load_vectors(session, encoder.name, marked_ids).items():
            vectors[paper_id] = embed.unpack(blob, encoder.dimensions)[0]
    found = {}
    for subscriber_id, verdicts in said.items():
        marked = {
            verdict: tuple(
                Marked(pid, papers[pid].title, papers[pid].abstract, vectors.get(pid))
                for pid, said_of in sorted(verdicts.items())
                if said_of == verdict and pid in papers
            )
            for verdict in (MORE, LESS)
        }
        found[subscriber_id] = ReaderFeedback(marked[MORE], marked[LESS])
    return found


def _composed_earlier(db: Database, day: date, counts: dict[str, int]) -> Composition:
    """The counts of a composition made earlier, brought up to date."""
    composition = Composition(day)
    composition.skipped = counts.get("skipped", 0)
    composition.not_due = counts.get("not_due", 0)
    with db.session() as session:
        states = digest_states(session, day)
    composition.already_sent = states.get(SENT, 0)
    composition.failed = states.get(FAILED, 0)
    return composition


def _store(
    session: Session, settings: Settings, day: date, new: list[tuple[Due, Picked]]
) -> dict[int, int]:
    """The new digests stored as pending outbox rows; their ids by subscriber id."""
    rows = []
    for due, picked in new:
        message_id = message_id_for(settings, due.email, day)
        rows.append((NewDigest(due.subscriber_id, due.window_start, message_id), picked))
    return store_digests(session, day, rows)


def _outgoing(
    settings: Settings, due: Due, digest_id: int | None, cards: tuple[PaperCard, ...]
) -> Outgoing:
    return Outgoing(
        digest_id=digest_id,
        subscriber_id=due.subscriber_id,
        day=due.day,
        email=due.email,
        name=due.name,
        topics=due.preferences.topics,
        frequency=due.preferences.frequency,
        message_id=message_id_for(settings, due.email, due.day),
        cards=cards,
    )
