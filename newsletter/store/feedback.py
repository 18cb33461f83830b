"""Readers' feedback in the store: what a reader said of a paper from a digest's links ("more" or
"less" like this), one row per reader and paper, and what ranking reads back of it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import LESS, MORE, Feedback, chunked, utcnow

RECORDED, UNCHANGED = "recorded", "unchanged"


def record_feedback(
    session: Session, subscriber_id: int, paper_id: int, verdict: str, day: date
) -> str:
    """Store a reader's verdict on a paper: RECORDED when it is new or replaces the other one,
    UNCHANGED when they had said the same already (a second click changes nothing)."""
    if verdict not in (MORE, LESS):
        raise ValueError(f"feedback is {MORE!r} or {LESS!r}, not {verdict!r}")
    row = session.get(Feedback, (subscriber_id, paper_id))
    if row is not None and row.verdict == verdict:
        return UNCHANGED
    if row is None:
        session.add(
            Feedback(
                subscriber_id=subscriber_id,
                paper_id=paper_id,
                verdict=verdict,
                digest_date=day,
                at=utcnow(),
            )
        )
    else:
        row.verdict, row.digest_date, row.at = verdict, day, utcnow()
    session.flush()
    return RECORDED


def verdict_on(session: Session, subscriber_id: int, paper_id: int) -> str | None:
    row = session.get(Feedback, (subscriber_id, paper_id))
    return row.verdict if row is not None else None


def feedback_of(session: Session, subscriber_ids: Collection[int]) -> dict[int, dict[int, str]]:
    """Per reader (of those given), their verdicts by paper id: only readers with any."""
    found: dict[int, dict[int, str]] = defaultdict(dict)
    for chunk in chunked(list(subscriber_ids)):
        rows = session.execute(
            select(Feedback.subscriber_id, Feedback.paper_id, Feedback.verdict)
            .where(Feedback.subscriber_id.in_(chunk))
            .order_by(Feedback.subscriber_id, Feedback.paper_id)
        )
        for subscriber_id, paper_id, verdict in rows:
            found[subscriber_id][paper_id] = verdict
    return dict(found)


def feedback_counts(session: Session) -> dict[int, dict[str, int]]:
    """Per reader with any feedback: how many papers they marked more and less."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {MORE: 0, LESS: 0})
    rows = session.execute(
        select(Feedback.subscriber_id, Feedback.verdict, func.count()).group_by(
            Feedback.subscriber_id, Feedback.verdict
        )
    )
    for subscriber_id, verdict, count in rows:
        counts[subscriber_id][verdict] = count
    return dict(counts)


def feedback_fingerprint(session: Session) -> str:
    """Changes whenever any feedback is recorded (a composition made before it is stale)."""
    count, last = session.execute(select(func.count(), func.max(Feedback.at))).one()
    return f"{count}|{last}"
