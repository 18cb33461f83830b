"""Bounces in the store: whether a message was read before, the sent digest a bounce is about
(by its VERP token's subscriber and date, or by a returned Message-ID), and whether a digest's
bounce was scored already. Recording them is `bounces.rules`'s, with these rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import SCORED, SENT, BounceRecord, Digest


def read_before(session: Session, key: str) -> bool:
    """Whether the message with this key (its Message-ID, else a hash) was read before."""
    return session.scalar(select(BounceRecord.id).where(BounceRecord.key == key)) is not None


def sent_digest(session: Session, subscriber_id: int, day: date) -> Digest | None:
    """The digest of `day` sent to that subscriber."""
    return session.scalar(
        select(Digest).where(
            Digest.subscriber_id == subscriber_id,
            Digest.digest_date == day,
            Digest.state == SENT,
        )
    )


def sent_digests_with_message_ids(session: Session, ids: Sequence[str]) -> list[Digest]:
    """The sent digests whose Message-ID is one of `ids` (lower-case)."""
    return list(
        session.scalars(
            select(Digest).where(func.lower(Digest.message_id).in_(ids), Digest.state == SENT)
        )
    )


def scored_before(session: Session, digest_id: int) -> bool:
    """Whether a bounce of this digest already added to its reader's score (a digest counts
    once, however many bounces it draws)."""
    found = session.scalar(
        select(BounceRecord.id).where(
            BounceRecord.digest_id == digest_id, BounceRecord.action == SCORED
        )
    )
    return found is not None
