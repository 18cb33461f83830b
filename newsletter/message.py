"""Build the MIME message of a digest: headers, the signed unsubscribe token, the Message-ID.

The message is `multipart/alternative` (plain text first, then HTML), UTF-8, serialized with CRLF
line ends exactly as it goes over SMTP. Header values go through the `email` package's header
registry, which refuses CR/LF, and display names are cleaned before that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import date, datetime, time
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache
from pathlib import Path
from urllib.parse import quote

import dkim

from .config import Settings
from .render import RenderedDigest
from .subscribers import clean_name

TOKEN_SIGNATURE_CHARS = 32
# Bodies are encoded with the standard 76-character quoted-printable lines; headers are written
# on one line (RFC 5322 allows 998 characters): folding would RFC 2047-encode the long URLs of
# List-Unsubscribe, which clients then cannot use.
OUTPUT_POLICY = policy.SMTP.clone(max_line_length=998)


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
    if not signature or not hmac.compare_digest(signature, _signature(key, email)):
        return None
    return email


def unsubscribe_url(settings: Settings, email: str) -> str:
    return f"{settings.base_url}/unsubscribe/{unsubscribe_token(settings.signing_key, email)}"


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


# Headers the DKIM signature covers; RFC 8058 asks for both List-Unsubscribe headers.
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@cache
def _dkim_key(path: Path) -> bytes:
    return path.read_bytes()


def sign_dkim(settings: Settings, raw: bytes) -> bytes:
    """The message with a DKIM-Signature header when DKIM is configured, else unchanged."""
    if not (settings.dkim_selector and settings.dkim_domain and settings.dkim_key_file):
        return raw
    signature = dkim.sign(
        raw,
        settings.dkim_selector.encode(),
        settings.dkim_domain.encode(),
        _dkim_key(settings.dkim_key_file),
        include_headers=list(DKIM_HEADERS),
    )
    return signature + raw


def list_id(settings: Settings) -> str:
    name = parseaddr(settings.sender)[0] or "Trending Papers"
    return f"{clean_name(name)} <digest.{settings.sender_domain}>"


def build_message(
    settings: Settings,
    rendered: RenderedDigest,
    to_email: str,
    to_name: str,
    message_id: str,
    sent_at: datetime,
) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = settings.sender
    message["To"] = Address(display_name=clean_name(to_name), addr_spec=to_email)
    message["Subject"] = " ".join(rendered.subject.split())
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message["List-Id"] = list_id(settings)
    token = unsubscribe_token(settings.signing_key, to_email)
    message["List-Unsubscribe"] = (
        f"<{settings.base_url}/unsubscribe/{token}>, "
        f"<mailto:{settings.unsubscribe_address}?subject={quote('unsubscribe ' + token)}>"
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Precedence"] = "bulk"
    message["Auto-Submitted"] = "auto-generated"
    if settings.uses_development_secret:
        message["X-Newsletter-Warning"] = "signed with the development key: preview only"
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary fixed by the Message-ID makes a message reproducible byte for byte; starting with
    # "=_" it can never occur inside quoted-printable parts.
    message.set_boundary("=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32])
    return message


def serialize(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP: CRLF line ends, unfolded headers."""
    return message.as_bytes(policy=OUTPUT_POLICY)
