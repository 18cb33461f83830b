"""What a bounce or a complaint does to a subscriber, and the record of every message read.

Who it is about: the VERP token where the bounce was addressed, verified with
NEWSLETTER_SECRET_KEY. A token that is present but does not verify is forged or garbled, and the
message changes nothing whatever else it says. Only a message with no token at all may count, and
then only when a failed address and a returned Message-ID name one digest we sent.

The rules (README, "Bounces and complaints"):
- an address that does not exist (5.1.x but 5.1.7/5.1.8, which concern our sender; 5.2.1) is
  suspended at once;
- another permanent bounce adds 1 to the bounce score, a temporary one 0.25; one digest counts
  once however many bounces it draws; the score halves every 30 days; at 4 the address is
  suspended;
- a complaint (ARF) unsubscribes at once and for good;
- a status code about our own sender (5.1.7, 5.1.8) charges nobody;
- `newsletter resubscribe` clears it all.
Every message is recorded once under its key: reading it again changes nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import NewsletterError
from ..mail.tokens import read_verp_token, unsubscribed_by
from ..store.bounces import (
    read_before,
    scored_before,
    sent_digest,
    sent_digests_with_message_ids,
)
from ..store.db import (
    ACTIVE,
    BOUNCE,
    COMPLAINT,
    NO_ACTION,
    SCORED,
    SENDER_PROBLEM,
    SUSPENDED,
    TEMPORARY,
    UNSUBSCRIBED,
    BounceRecord,
    Database,
    Digest,
    Subscriber,
    utcnow,
)
from ..store.subscribers import change_status, current_score
from ..subscribers.addresses import normalize_address
from .dsn import AUTO_REPLY, UNSUBSCRIBE, Failure, Reading, read_bounce

SUSPEND_SCORE = 4.0
PERMANENT_WEIGHT = 1.0
TEMPORARY_WEIGHT = 0.25
SENDER_CODES = ("5.1.7", "5.1.8", "4.1.7", "4.1.8")  # our sender's address, not the reader's

# Kinds recorded besides dsn's: messages that change nothing.
FORGED, UNMATCHED = "forged", "unmatched"

PLURAL = {
    BOUNCE: "bounces",
    COMPLAINT: "complaints",
    AUTO_REPLY: "auto-replies",
    SENDER_PROBLEM: "sender problems",
    UNSUBSCRIBE: "unsubscribes",
}
# Refusals that say our mail failed authentication (RFC 7372: DKIM, SPF, DMARC, reverse DNS;
# 5.7.27, our sender's domain) or that our sending IP is refused: the sender's problem, for
# nobody's score.
AUTHENTICATION_CODES = tuple(f"5.7.{n}" for n in range(20, 28))
ABOUT_US = re.compile(
    r"not accepted from this ip|\bdmarc\b|\bspf\b|reverse dns|\bptr\b|dkim|"
    r"(ip|address) (is )?(listed|blacklisted|blocklisted|blocked)",
    re.IGNORECASE,
)
# Actions besides NO_ACTION and SCORED.
SUSPENDED_NOW, UNSUBSCRIBED_NOW, ALREADY = SUSPENDED, UNSUBSCRIBED, "already read"


def about_us(failure: Failure) -> bool:
    """Whether a bounce says our mail failed the reader's server's checks of *us*: a DMARC, SPF,
    DKIM or reverse-DNS failure, or our IP refused. It counts for no reader."""
    if failure.status in AUTHENTICATION_CODES:
        return True
    mailbox = (failure.status or "").startswith(("5.1.", "5.2.", "4.2."))  # the reader's own
    return not mailbox and bool(ABOUT_US.search(failure.diagnostic))


def no_such_address(code: str | None) -> bool:
    """5.1.x (bad mailbox, domain, syntax; moved; null MX) but our own sender's 5.1.7/5.1.8,
    and 5.2.1 (mailbox disabled)."""
    if code is None or code in SENDER_CODES:
        return False
    return code.startswith("5.1.") or code == "5.2.1"


@dataclass(frozen=True)
class Handled:
    name: str
    kind: str
    action: str
    email: str | None = None
    detail: str = ""

    @property
    def line(self) -> str:
        who = f"{self.email}: " if self.email else ""
        return f"{self.name}: {self.kind}, {who}{self.action}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass
class BounceReport:
    handled: list[Handled] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        read = [h for h in self.handled if h.action != ALREADY]
        kinds = Counter(h.kind for h in read)
        actions = Counter(h.action for h in read)
        parts = [
            f"{n} {PLURAL.get(kind, kind) if n > 1 else kind}" for kind, n in sorted(kinds.items())
        ]
        changes = [f"{actions[a]} {a}" for a in (SUSPENDED_NOW, UNSUBSCRIBED_NOW, SCORED)]
        return (
            f"read {len(read)} message(s): {', '.join(parts) or 'none'}; "
            f"{', '.join(changes)}; {len(self.handled) - len(read)} already read; "
            f"{len(self.errors)} refused"
        )


def handle_message(db: Database, settings: Settings, data: bytes, name: str) -> Handled:
    """Read one message from the bounce mailbox and apply it; `BounceError` for one that is
    not a readable message (nothing is recorded: it is refused again next time)."""
    reading = read_bounce(data, name, settings.bounces.address, settings.unsubscribe_address)
    try:
        with db.session() as session:
            if read_before(session, reading.key):
                return Handled(name, reading.kind, ALREADY)
            return _apply(session, settings, reading, name)
    except IntegrityError:  # another process read the same message just now
        return Handled(name, reading.kind, ALREADY)


def _apply(session: Session, settings: Settings, reading: Reading, name: str) -> Handled:
    now = utcnow()
    received = min(reading.received_at or now, now)
    record = BounceRecord(key=reading.key, received_at=received, kind=reading.kind)
    session.add(record)
    if reading.kind == UNSUBSCRIBE:
        return _unsubscribe_by_mail(session, settings, reading, record, name)
    if reading.kind not in (BOUNCE, COMPLAINT):
        record.detail = reading.detail
        return Handled(name, reading.kind, NO_ACTION, detail=reading.detail)
    target = _target(session, settings, reading)
    if isinstance(target, tuple) and isinstance(target[0], str):  # nobody is charged: why
        record.kind, record.detail = target
        return Handled(name, record.kind, NO_ACTION, detail=record.detail)
    digest, failure = target
    subscriber = digest.subscriber
    record.subscriber_id, record.digest_id = subscriber.id, digest.id
    # When it bounced: its Date, but never before the digest went out nor after now (a Date can
    # be anything; the score decays from it).
    sent_at = digest.sent_at or datetime.combine(digest.digest_date, time())
    received = record.received_at = min(max(received, sent_at), now)
    record.status_code = failure.status
    record.detail = failure.diagnostic[:500]
    if reading.kind == COMPLAINT:
        record.action = _unsubscribe(subscriber, now)
    elif about_us(failure):
        record.kind = SENDER_PROBLEM
    else:
        record.kind = BOUNCE if failure.permanent else TEMPORARY
        record.action = _bounce(session, subscriber, digest, failure, received, now)
    return Handled(name, record.kind, record.action, subscriber.email, failure.status or "")


def _target(
    session: Session, settings: Settings, reading: Reading
) -> tuple[Digest, Failure] | tuple[str, str]:
    """The digest the message is about and the failure that concerns it, or (FORGED or
    UNMATCHED, why) when there is none."""
    if reading.tokens:
        named = [read_verp_token(settings.signing_key, token) for token in reading.tokens]
        valid = [n for n in named if n is not None]
        if not valid:
            return FORGED, "its VERP token does not verify: forged or garbled"
        subscriber_id, day = valid[0]
        digest = sent_digest(session, subscriber_id, day)
        if digest is None:
            return UNMATCHED, f"its token names no digest we sent ({day.isoformat()})"
        own = [f for f in reading.failures if _same(f.address, digest.subscriber.email)]
        worst = sorted(reading.failures, key=lambda f: (not f.permanent, f.status is None))
        if reading.unnamed is not None:  # a mail system's report that names nobody
            worst.append(reading.unnamed)
        if not (own or worst):
            return UNMATCHED, "it names no failed address"
        return digest, (own or worst)[0]
    ids = reading.message_ids or ("",)
    digests = sent_digests_with_message_ids(session, ids)
    for failure in reading.failures:
        for digest in digests:
            if _same(failure.address, digest.subscriber.email):
                return digest, failure
    return UNMATCHED, "no VERP token, and no failed address with a returned Message-ID we sent"


def _same(address: str, email: str) -> bool:
    try:
        return normalize_address(address) == email
    except NewsletterError:  # an address the lists would refuse is nobody's
        return False


def _unsubscribe_by_mail(
    session: Session, settings: Settings, reading: Reading, record: BounceRecord, name: str
) -> Handled:
    """A reader's mail to the List-Unsubscribe address: the token in its subject or body,
    verified, unsubscribes that reader (once); a forged or foreign token changes nothing."""
    today = utcnow().date()
    named = [unsubscribed_by(session, settings.signing_key, t, today) for t in reading.requests]
    subscriber = next((s for s in named if s is not None), None)
    if subscriber is None:
        record.kind = FORGED if reading.requests else UNMATCHED
        record.detail = (
            "its unsubscribe token does not verify, or names nobody we mail"
            if reading.requests
            else "an unsubscribe request without the token of our link"
        )
        return Handled(name, record.kind, NO_ACTION, detail=record.detail)
    record.subscriber_id = subscriber.id
    changed = change_status(subscriber, UNSUBSCRIBED, "unsubscribe by mail", utcnow())
    record.action = UNSUBSCRIBED_NOW if changed else NO_ACTION
    return Handled(name, UNSUBSCRIBE, record.action, subscriber.email)


def _unsubscribe(subscriber: Subscriber, now: datetime) -> str:
    changed = change_status(subscriber, UNSUBSCRIBED, "complaint", now)
    return UNSUBSCRIBED_NOW if changed else NO_ACTION


def _bounce(
    session: Session,
    subscriber: Subscriber,
    digest: Digest,
    failure: Failure,
    received: datetime,
    now: datetime,
) -> str:
    if failure.status in SENDER_CODES or subscriber.status != ACTIVE:
        return NO_ACTION
    if failure.permanent and no_such_address(failure.status):
        return _suspend(subscriber, f"bounce {failure.status}", now)
    if scored_before(session, digest.id):
        return NO_ACTION  # one digest counts once
    weight = PERMANENT_WEIGHT if failure.permanent else TEMPORARY_WEIGHT
    base = subscriber.bounce_score_at or received
    if received >= base:  # bring the score to this bounce's time, then add it
        score = current_score(subscriber.bounce_score, subscriber.bounce_score_at, received)
        subscriber.bounce_score, subscriber.bounce_score_at = score + weight, received
    else:  # an older bounce read late: what it would weigh by now
        subscriber.bounce_score += current_score(weight, received, base)
    at = max(received, subscriber.bounce_score_at or received)
    if current_score(subscriber.bounce_score, subscriber.bounce_score_at, at) >= SUSPEND_SCORE:
        return _suspend(subscriber, "bounce score", now)
    return SCORED


def _suspend(subscriber: Subscriber, reason: str, now: datetime) -> str:
    change_status(subscriber, SUSPENDED, reason, now)  # (it is active: see `_bounce`)
    return SUSPENDED_NOW
