"""What identifies a reader and a digest outside the database: the signed, opaque reader tokens
of our links (unsubscribe) and of the VERP envelope sender, the fixed Message-ID, and the address
as it goes into headers and RCPT. No token carries the reader's address in any encoding: a link
names a subscriber id and a digest's date (a feedback link also a paper id), signed for one
purpose (a link's token cannot serve another purpose), so a log or a proxy that records URLs
learns no address."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import idna
from sqlalchemy.orm import Session

from ..config import Settings
from ..store.db import Subscriber
from ..store.subscribers import legacy_links_until, subscriber_by_address, subscriber_by_id
from .render import ReaderLinks

TOKEN_SIGNATURE_CHARS = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signature(key: str, email: str) -> str:
    digest = hmac.new(key.encode(), f"unsubscribe:{email}".encode(), hashlib.sha256).digest()
    return _b64(digest)[:TOKEN_SIGNATURE_CHARS]


def legacy_unsubscribe_token(key: str, email: str) -> str:
    """The unsubscribe token of digests made before the opaque ones: `<address, base64url>.<HMAC
    of the address>`. No longer made for mail; read for a while (see `verify_legacy_token`)."""
    return f"{_b64(email.encode())}.{_signature(key, email)}"


def verify_legacy_token(key: str, token: str) -> str | None:
    """The address a legacy token was made for, or None when it is malformed or not signed by
    `key`. (Old links keep working until their digests are older than the window: the caller
    checks the date, `store.subscribers.legacy_links_until`.)"""
    encoded, _, signature = token.partition(".")
    try:
        email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not signature.isascii() or not hmac.compare_digest(signature, _signature(key, email)):
        return None
    return email


def unsubscribe_token(key: str, subscriber_id: int, day: date) -> str:
    """The opaque token of a digest's unsubscribe link (and its mailto subject)."""
    return reader_token(key, "unsubscribe", subscriber_id, day)


def unsubscribed_by(session: Session, key: str, token: str, today: date) -> Subscriber | None:
    """The reader an unsubscribe link's token names: an opaque token of ours, or an old one with
    the address in it while `legacy_links_until` (a stored subscriber in either case); None when
    it is forged, edited, made for another purpose, or an old link past its time."""
    named = read_reader_token(key, "unsubscribe", token)
    if named is not None:
        return subscriber_by_id(session, named[0])
    address = verify_legacy_token(key, token)
    until = legacy_links_until(session)
    if address is None or until is None or today > until:
        return None
    return subscriber_by_address(session, address)  # (made from a stored, normalised address)


def mailbox_address(email: str) -> str:
    """The address as it goes into headers and RCPT: an internationalized domain in its ASCII
    form (`user@bücher.example` is `user@xn--bcher-kva.example`), so that only a non-ASCII local
    part needs a server with SMTPUTF8. Addresses are stored in Unicode form, as the lists have
    them; tokens made for either form name the same reader."""
    local, _, domain = email.rpartition("@")
    if domain.isascii() or not local.isascii():
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return email


def message_id_for(settings: Settings, email: str, day: date) -> str:
    """Fixed for a subscriber and date, so a resend is recognisably the same message."""
    tag = hmac.new(
        settings.signing_key.encode(), f"digest:{email}:{day.isoformat()}".encode(), hashlib.sha256
    ).hexdigest()[:24]
    return f"<digest.{day:%Y%m%d}.{tag}@{settings.sender_domain}>"


def scheduled_time(settings: Settings, day: date) -> datetime:
    """The configured send time on `day`: the Date of a dry-run, so its files are reproducible."""
    hours, minutes = (int(part) for part in settings.send_at.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=settings.tz)


# --- VERP: each message's own envelope sender, naming its digest --------------------------------

VERP_EPOCH = date(2000, 1, 1)
VERP_SIGNATURE_CHARS = 16  # base32 of an HMAC-SHA256: 80 bits
# (at most VERP_TOKEN_CHARS: 12 + 1 + 6 + 1 + 16)
_VERP_TOKEN = re.compile(r"([0-9a-z]{1,12})-([0-9a-z]{1,6})-([a-z2-7]{16})")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def _reader_signature(key: str, purpose: str, subscriber_id: int, day: date) -> str:
    return _signed(_keyed(key), f"{purpose}:{subscriber_id}:{day.isoformat()}")


def _signed(keyed: hmac.HMAC, named: str) -> str:
    """The signature of `named`: its HMAC (from a keyed one) cut to 80 bits, lower-case base 32."""
    mac = keyed.copy()
    mac.update(named.encode())
    return base64.b32encode(mac.digest()[:10]).decode("ascii").lower()


def _day(base36: str) -> date | None:
    """The date a token names in base 36 days since VERP_EPOCH; None past the calendar."""
    try:
        return VERP_EPOCH + timedelta(days=int(base36, 36))
    except OverflowError:
        return None


@lru_cache(maxsize=8)
def _keyed(key: str) -> hmac.HMAC:
    """An HMAC-SHA256 with `key` set up once (a message signs a dozen links with it)."""
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def reader_token(key: str, purpose: str, subscriber_id: int, day: date) -> str:
    """`<subscriber id>-<day>-<HMAC of purpose, id and day>`, base 36 and lower-case base 32: one
    reader's digest of one date, for one purpose, in at most 36 characters that survive a server
    lower-casing an address's local part and need no escaping in a URL."""
    days = _base36((day - VERP_EPOCH).days)
    signature = _reader_signature(key, purpose, subscriber_id, day)
    return f"{_base36(subscriber_id)}-{days}-{signature}"


def read_reader_token(key: str, purpose: str, token: str) -> tuple[int, date] | None:
    """The (subscriber id, date) a token names, or None when it is malformed or not signed with
    `key` for `purpose` (forged, garbled on the way, or made for another purpose)."""
    match = _VERP_TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    subscriber_id, day = int(match[1], 36), _day(match[2])
    if day is None:
        return None
    if not hmac.compare_digest(match[3], _reader_signature(key, purpose, subscriber_id, day)):
        return None
    return subscriber_id, day


def verp_token(key: str, subscriber_id: int, day: date) -> str:
    """The VERP envelope sender's token: the digest of that reader and date."""
    return reader_token(key, "verp", subscriber_id, day)


def read_verp_token(key: str, token: str) -> tuple[int, date] | None:
    return read_reader_token(key, "verp", token)


def verp_address(settings: Settings, subscriber_id: int, day: date) -> str:
    """The envelope sender of one digest: `bounces+<token>@domain` with NEWSLETTER_BOUNCE_ADDRESS,
    else the address of NEWSLETTER_FROM."""
    if not settings.bounces.address:
        return settings.sender_address
    local, _, domain = settings.bounces.address.rpartition("@")
    return f"{local}+{verp_token(settings.signing_key, subscriber_id, day)}@{domain}"


# --- Links of a digest: feedback, the browser view, the feed ------------------------------------

FEEDBACK, VIEW, SHARE, FEED = "feedback", "view", "share", "feed"  # what a link's token is for
_PAPER_TOKEN = re.compile(r"([0-9a-z]{1,12})-([0-9a-z]{1,6})-([0-9a-z]{1,12})-([a-z2-7]{16})")


def paper_token(key: str, subscriber_id: int, day: date, paper_id: int) -> str:
    """`<subscriber id>-<day>-<paper id>-<HMAC>`: one paper of one reader's digest of one date,
    the token of its "More like this" and "Fewer like this" links (the path says which)."""
    return paper_tokens(key, subscriber_id, day, (paper_id,))[0]


def paper_tokens(key: str, subscriber_id: int, day: date, paper_ids: tuple[int, ...]) -> list[str]:
    """`paper_token` of each paper of one reader's digest, the shared parts worked out once."""
    head = f"{_base36(subscriber_id)}-{_base36((day - VERP_EPOCH).days)}-"
    reader = _keyed(key).copy()  # (the HMAC state after the part every paper shares)
    reader.update(f"{FEEDBACK}:{subscriber_id}:{day.isoformat()}:".encode())
    return [f"{head}{_base36(pid)}-{_signed(reader, str(pid))}" for pid in paper_ids]


def read_paper_token(key: str, token: str) -> tuple[int, date, int] | None:
    """The (subscriber id, date, paper id) a feedback token names, or None when it is malformed,
    edited, or not signed with `key` for feedback."""
    match = _PAPER_TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    subscriber_id, day, paper_id = int(match[1], 36), _day(match[2]), int(match[3], 36)
    if day is None:
        return None
    expected = paper_token(key, subscriber_id, day, paper_id)
    if not hmac.compare_digest(token.lower(), expected):
        return None
    return subscriber_id, day, paper_id


def reader_links(
    settings: Settings, subscriber_id: int, day: date, paper_ids: tuple[int, ...]
) -> ReaderLinks:
    """Every link of one reader's digest of `day` (papers in the digest's order)."""
    key, base = settings.signing_key, settings.base_url
    feedback = paper_tokens(key, subscriber_id, day, paper_ids)
    unsubscribe = unsubscribe_token(key, subscriber_id, day)
    return ReaderLinks(
        unsubscribe=f"{base}/unsubscribe/{unsubscribe}",
        view=f"{base}/digest/{reader_token(key, VIEW, subscriber_id, day)}",
        feed=f"{base}/feed/{reader_token(key, FEED, subscriber_id, day)}.atom",
        more=tuple(f"{base}/more/{token}" for token in feedback),
        less=tuple(f"{base}/less/{token}" for token in feedback),
        unsubscribe_token=unsubscribe,
    )


def share_url(settings: Settings, subscriber_id: int, day: date) -> str:
    """The digest's web page without the reader's own buttons, to pass on."""
    token = reader_token(settings.signing_key, SHARE, subscriber_id, day)
    return f"{settings.base_url}/digest/{token}"
