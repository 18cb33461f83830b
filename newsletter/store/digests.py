"""Digests in the store: who is due (subscribers, their last and today's digests, the papers
they hold already), the digests a run composes stored as pending outbox rows with their papers,
and the record of each date's composition. Sending them is `outbox`'s."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Row, Text, cast, func, select
from sqlalchemy.orm import Session

from ..records import Ranked
from .db import (
    ACTIVE,
    LIVE_STATES,
    PENDING,
    ComposedDate,
    Digest,
    DigestPaper,
    Dump,
    Paper,
    Subscriber,
    chunked,
    insert_in_batches,
    utcnow,
)
from .feedback import feedback_fingerprint


@dataclass(frozen=True)
class NewDigest:
    """A digest about to be stored: whose, from which day its papers are, and its Message-ID."""

    subscriber_id: int
    window_start: date
    message_id: str


def subscribers_to_plan(
    session: Session, only: int | None = None, *, everyone: bool = False
) -> Sequence[Row[Any]]:
    """The listed, active subscribers (`everyone`: whatever their status; `only`: that id) with
    what planning reads of them."""
    # Plain rows, not ORM objects: at 100,000 subscribers the difference is a few hundred MB.
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.topics,
        Subscriber.exclude,
        Subscriber.max_papers,
        Subscriber.frequency,
        Subscriber.on_empty,
    )
    if not everyone:
        query = query.where(Subscriber.listed.is_(True), Subscriber.status == ACTIVE)
    if only is not None:
        query = query.where(Subscriber.id == only)
    return session.execute(query.order_by(Subscriber.id)).all()


def last_digest_dates(session: Session, day: date) -> dict[int, date]:
    """Each subscriber's last digest date before `day` (sent, or still to be sent)."""
    return dict(
        session.execute(
            select(Digest.subscriber_id, func.max(Digest.digest_date))
            .where(Digest.state.in_(LIVE_STATES), Digest.digest_date < day)
            .group_by(Digest.subscriber_id)
        ).all()
    )


def digests_of_day(session: Session, day: date) -> dict[int, Row[Any]]:
    """The digests already made for `day`, by subscriber: a repeated run reuses them."""
    return {
        d.subscriber_id: d
        for d in session.execute(
            select(Digest.subscriber_id, Digest.id, Digest.state, Digest.window_start).where(
                Digest.digest_date == day
            )
        )
    }


def papers_first_seen(session: Session, since: date, until: date) -> dict[int, date]:
    """The ids of the papers first seen from `since` to `until`, with that date."""
    return dict(
        session.execute(
            select(Paper.id, Paper.first_seen).where(Paper.first_seen.between(since, until))
        ).all()
    )


def papers_in_other_digests(
    session: Session, day: date, papers: Collection[int]
) -> dict[int, set[int]]:
    """Per subscriber, which of `papers` a live digest of theirs of another date than `day`
    holds (sent, or still to be sent)."""
    held: dict[int, set[int]] = defaultdict(set)
    for chunk in chunked(sorted(papers)):
        for subscriber_id, paper_id in session.execute(
            select(Digest.subscriber_id, DigestPaper.paper_id)
            .join(DigestPaper, DigestPaper.digest_id == Digest.id)
            .where(
                Digest.state.in_(LIVE_STATES),
                Digest.digest_date != day,
                DigestPaper.paper_id.in_(chunk),
            )
        ):
            held[subscriber_id].add(paper_id)
    return held


def digest_states(session: Session, day: date) -> dict[str, int]:
    """How many digests of `day` of listed, active subscribers are in each state."""
    return dict(
        session.execute(
            select(Digest.state, func.count())
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(
                Digest.digest_date == day,
                Subscriber.listed.is_(True),
                Subscriber.status == ACTIVE,
            )
            .group_by(Digest.state)
        ).all()
    )


def composition_fingerprint(session: Session) -> str:
    """Changes whenever a subscriber is added, changed, unsubscribed, gives feedback, or a dump is
    ingested."""
    subscribers = session.execute(
        select(func.count(Subscriber.id), func.max(Subscriber.id), func.max(Subscriber.updated_at))
    ).one()
    dumps = session.execute(select(func.count(Dump.id), func.max(Dump.id))).one()
    feedback = feedback_fingerprint(session)
    return "|".join(str(value) for value in (*subscribers, *dumps, feedback))


def composed_earlier(session: Session, day: date) -> ComposedDate | None:
    """The record of `day`'s last composition, if any."""
    return session.get(ComposedDate, day)


def record_composition(
    session: Session, day: date, fingerprint: str, holder: str, counts: dict[str, int]
) -> None:
    session.merge(
        ComposedDate(
            run_date=day,
            fingerprint=fingerprint,
            holder=holder,
            composed_at=utcnow(),
            counts=counts,
        )
    )


def papers_of_digests(
    session: Session, digest_ids: list[int]
) -> dict[int, list[tuple[int, tuple[str, ...]]]]:
    """Per digest, its papers in order with why each was picked (digests stored before reasons
    were kept show the topics they matched)."""
    stored: dict[int, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
    # The reasons as their stored JSON text, decoded once per distinct text: thousands of rows
    # repeat the same few.
    matched_text = cast(DigestPaper.matched, Text)
    decoded: dict[str, tuple[str, ...]] = {}
    for chunk in chunked(digest_ids):
        rows = session.execute(
            select(DigestPaper.digest_id, DigestPaper.paper_id, DigestPaper.why, matched_text)
            .where(DigestPaper.digest_id.in_(chunk))
            .order_by(DigestPaper.digest_id, DigestPaper.rank)
        )
        for digest_id, paper_id, why, matched in rows:
            text = why if why is not None else matched
            if text not in decoded:
                decoded[text] = tuple(json.loads(text) or ())
            stored[digest_id].append((paper_id, decoded[text]))
    return stored


def store_digests(
    session: Session, day: date, new: Sequence[tuple[NewDigest, Sequence[Ranked]]]
) -> dict[int, int]:
    """Store new digests as pending outbox rows with their papers, with bulk INSERTs (part of the
    caller's transaction: all of them or none); their ids by subscriber id."""
    now = utcnow()
    digests = [
        {
            "subscriber_id": digest.subscriber_id,
            "digest_date": day,
            "window_start": digest.window_start,
            "state": PENDING,
            "message_id": digest.message_id,
            "subject": "",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for digest, _ in new
    ]
    insert_in_batches(session, Digest.__table__, digests)
    ids = dict(
        session.execute(
            select(Digest.subscriber_id, Digest.id).where(Digest.digest_date == day)
        ).all()
    )
    encoded: dict[tuple[str, ...], str] = {}

    def encode(why: tuple[str, ...]) -> str:
        encoded[why] = json.dumps(list(why), ensure_ascii=False)
        return encoded[why]

    rows = [
        {
            "digest_id": ids[digest.subscriber_id],
            "paper_id": pick.paper_id,
            "rank": rank,
            "score": pick.score,
            "matched": list(pick.matched),
            "why": encoded[pick.why] if pick.why in encoded else encode(pick.why),
        }
        for digest, picked in new
        for rank, pick in enumerate(picked, start=1)
    ]
    insert_in_batches(session, DigestPaper.__table__, rows)
    return ids


def recent_digests(
    session: Session, subscriber_id: int, since: date, until: date
) -> list[Row[Any]]:
    """A reader's live digests dated from `since` to `until` (id, date), newest first."""
    return list(
        session.execute(
            select(Digest.id, Digest.digest_date)
            .where(
                Digest.subscriber_id == subscriber_id,
                Digest.state.in_(LIVE_STATES),
                Digest.digest_date.between(since, until),
            )
            .order_by(Digest.digest_date.desc())
        )
    )
