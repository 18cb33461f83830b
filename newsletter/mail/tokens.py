"""What identifies a reader and a digest outside the database: the signed unsubscribe token and
its link, the fixed Message-ID, and the address as it goes into headers and RCPT."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import date, datetime, time, timedelta

import idna

from ..config import Settings

TOKEN_SIGNATURE_CHARS = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signature(key: str, email: str) -> str:
    digest = hmac.new(key.encode(), f"unsubscribe:{email}".encode(), hashlib.sha256).digest()
    return _b64(digest)[:TOKEN_SIGNATURE_CHARS]


def unsubscribe_token(key: str, email: str) -> str:
    """`<address, base64url>.<HMAC-SHA256 of the address>`: only the key holder can make one."""
    return f"{_b64(email.encode())}.{_signature(key, email)}"


def verify_token(key: str, token: str) -> str | None:
    """The address the token was made for, or None when it is malformed or not signed by `key`."""
    encoded, _, signature = token.partition(".")
    try:
        email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not signature.isascii() or not hmac.compare_digest(signature, _signature(key, email)):
        return None
    return email


def unsubscribe_url(settings: Settings, email: str) -> str:
    return f"{settings.base_url}/unsubscribe/{unsubscribe_token(settings.signing_key, email)}"


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


def _verp_signature(key: str, subscriber_id: int, day: date) -> str:
    mac = hmac.new(
        key.encode(), f"verp:{subscriber_id}:{day.isoformat()}".encode(), hashlib.sha256
    ).digest()
    return base64.b32encode(mac[:10]).decode("ascii").lower()


def verp_token(key: str, subscriber_id: int, day: date) -> str:
    """`<subscriber id>-<day>-<HMAC>`, base 36 and lower-case base 32: the digest of that reader
    and date, in at most 36 characters that survive a server lower-casing the local part."""
    days = _base36((day - VERP_EPOCH).days)
    return f"{_base36(subscriber_id)}-{days}-{_verp_signature(key, subscriber_id, day)}"


def read_verp_token(key: str, token: str) -> tuple[int, date] | None:
    """The (subscriber id, date) a token names, or None when it is malformed or not signed with
    `key` (forged, or garbled on the way)."""
    match = _VERP_TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    subscriber_id = int(match[1], 36)
    try:
        day = VERP_EPOCH + timedelta(days=int(match[2], 36))
    except OverflowError:
        return None
    if not hmac.compare_digest(match[3], _verp_signature(key, subscriber_id, day)):
        return None
    return subscriber_id, day


def verp_address(settings: Settings, subscriber_id: int, day: date) -> str:
    """The envelope sender of one digest: `bounces+<token>@domain` with NEWSLETTER_BOUNCE_ADDRESS,
    else the address of NEWSLETTER_FROM."""
    if not settings.bounces.address:
        return settings.sender_address
    local, _, domain = settings.bounces.address.rpartition("@")
    return f"{local}+{verp_token(settings.signing_key, subscriber_id, day)}@{domain}"
