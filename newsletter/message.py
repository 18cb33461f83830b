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
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache
from pathlib import Path
from urllib.parse import quote

import dkim
import idna

from .config import Settings
from .render import QP_MARK, DigestShape, Pieces, RenderedDigest, reader_values
from .text import clean_name

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
    if not signature.isascii() or not hmac.compare_digest(signature, _signature(key, email)):
        return None
    return email


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


def _headers(
    settings: Settings,
    subject: str,
    to_email: str,
    to_name: str,
    message_id: str,
    sent_at: datetime,
) -> list[tuple[str, str]]:
    """The digest's headers in order, as (name, unencoded value); no value holds CR or LF."""
    token = unsubscribe_token(settings.signing_key, to_email)
    headers = [
        ("From", settings.sender),
        # (an internationalized address is set as an `Address` by `build_message`)
        ("To", formataddr((clean_name(to_name), to_email)) if to_email.isascii() else to_email),
        ("Subject", " ".join(subject.split())),
        ("Date", format_datetime(sent_at)),
        ("Message-ID", message_id),
        ("List-Id", list_id(settings)),
        (
            "List-Unsubscribe",
            f"<{settings.base_url}/unsubscribe/{token}>, "
            f"<mailto:{settings.unsubscribe_address}?subject={quote('unsubscribe ' + token)}>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Precedence", "bulk"),
        ("Auto-Submitted", "auto-generated"),
    ]
    if settings.uses_development_secret:
        headers.append(("X-Newsletter-Warning", "signed with the development key: preview only"))
    return headers


def _boundary(message_id: str) -> str:
    # Fixed by the Message-ID, a message is reproducible byte for byte; starting with "=_" the
    # boundary can never occur inside quoted-printable parts.
    return "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]


def build_message(
    settings: Settings,
    rendered: RenderedDigest,
    to_email: str,
    to_name: str,
    message_id: str,
    sent_at: datetime,
) -> EmailMessage:
    """The message built with the standard library's `EmailMessage` (the reference for
    `message_bytes`, and its fallback for internationalized addresses)."""
    building = policy.SMTP if to_email.isascii() else policy.SMTPUTF8
    # 76: the quoted-printable line of RFC 2045 (the content manager wraps at the policy's length)
    message = EmailMessage(policy=building.clone(max_line_length=76))
    for name, value in _headers(settings, rendered.subject, to_email, to_name, message_id, sent_at):
        # The recipient as an Address, so that quotes in the name survive.
        local, _, domain = to_email.rpartition("@")  # (addr_spec= refuses a UTF-8 local part)
        to = Address(display_name=clean_name(to_name), username=local, domain=domain)
        if "=?" in value and name in ("Subject", "To"):
            message[name] = _AsWritten(
                name, formataddr((to.display_name, to_email)) if name == "To" else value
            )
        else:
            message[name] = to if name == "To" else value
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.set_boundary(_boundary(message_id))
    return message


class _AsWritten(str):
    """A header value the `email` package must not parse: given a value holding an encoded-word
    (`=?utf-8?b?...?=` in a title or a name), it would decode it on the way in and write the
    decoded text out raw, and the reader's client would then show something no one wrote."""

    def __new__(cls, name: str, value: str) -> _AsWritten:
        header = super().__new__(cls, value)
        header.name = name
        return header

    name: str

    def fold(self, *, policy: policy.Policy) -> str:
        return f"{self.name}: {_encode_header(self.name, str(self))}{policy.linesep}"


def serialize(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP: CRLF line ends, unfolded headers."""
    return message.as_bytes(policy=OUTPUT_POLICY)


def message_bytes(
    settings: Settings,
    rendered: RenderedDigest,
    to_email: str,
    to_name: str,
    message_id: str,
    sent_at: datetime,
) -> bytes:
    """The same message as `serialize(build_message(...))`, assembled directly: about ten times
    cheaper than `EmailMessage`, which matters at 100,000 digests. Header values are ASCII or
    RFC 2047 encoded; both parts are quoted-printable UTF-8 with CRLF line ends."""
    if not to_email.isascii():  # an SMTPUTF8 message: UTF-8 headers, as RFC 6532 has them
        message = build_message(settings, rendered, to_email, to_name, message_id, sent_at)
        return message.as_bytes(policy=OUTPUT_POLICY.clone(utf8=True))
    bodies = [_quoted_printable(rendered.text), _quoted_printable(rendered.html)]
    return _assemble(settings, rendered.subject, bodies, to_email, to_name, message_id, sent_at)


class MessageShape:
    """A `DigestShape` with both parts quoted-printable encoded once: a reader's message is then
    the headers plus the encoded pieces with the reader's own values encoded in between."""

    def __init__(self, shape: DigestShape):
        self.subject = shape.subject
        self._text = _encoded_pieces(shape.text)
        self._html = _encoded_pieces(shape.html)

    def message(
        self,
        settings: Settings,
        to_email: str,
        to_name: str,
        message_id: str,
        sent_at: datetime,
        unsubscribe: str,
    ) -> bytes:
        """The same message as `message_bytes` of the filled shape, as the `email` package reads
        it back (only where the soft line breaks fall differs). ASCII addresses only: the
        `email` package builds the others (`message_bytes`)."""
        assert to_email.isascii(), to_email
        values, escaped = reader_values(to_name, to_email, unsubscribe)
        bodies = [_fill(self._text, values), _fill(self._html, escaped)]
        return _assemble(settings, self.subject, bodies, to_email, to_name, message_id, sent_at)


def _assemble(
    settings: Settings,
    subject: str,
    bodies: list[str],
    to_email: str,
    to_name: str,
    message_id: str,
    sent_at: datetime,
) -> bytes:
    """Headers and the two quoted-printable parts (plain text, then HTML) as SMTP bytes."""
    boundary = _boundary(message_id)
    lines = [
        f"{name}: {_encode_header(name, value)}"
        for name, value in _headers(settings, subject, to_email, to_name, message_id, sent_at)
    ]
    lines += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']
    parts = "".join(
        f"--{boundary}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"{body}\r\n"  # this CRLF belongs to the boundary
        for subtype, body in zip(("plain", "html"), bodies, strict=True)
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + parts + f"--{boundary}--\r\n").encode("ascii")


def _encode_header(name: str, value: str) -> str:
    """A header value as it is written: ASCII as it is, the rest RFC 2047 encoded; text that
    looks like an encoded-word is encoded too, so that no client decodes what a title or a name
    holds."""
    if value.isascii() and "=?" not in value:
        return value
    if name in ("From", "To", "List-Id"):
        display, address = parseaddr(value)
        if "=?" in display:
            return f"{_encoded_words(display)} <{address}>"
        return formataddr((display, address), charset="utf-8")
    return _encoded_words(value)


ENCODED_WORD_BYTES = 45  # 60 base64 characters: with "=?utf-8?b?" and "?=", 72 of RFC 2047's 75


def _encoded_words(value: str) -> str:
    """`value` as RFC 2047 base64 encoded-words, split between characters, on one line (the
    space between two encoded-words is not part of the text). The `email` package's `Header`
    does the same about twenty times slower."""
    words, chunk, size = [], [], 0
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > ENCODED_WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    encoded = (base64.b64encode(word.encode("utf-8")).decode("ascii") for word in words)
    return " ".join(f"=?utf-8?b?{word}?=" for word in encoded)


def _lines(text: str) -> bytes:
    return b"\n".join(text.encode("utf-8").splitlines()) + b"\n"


def _qp(data: bytes) -> str:
    """Quoted-printable with CRLF line ends (binascii's C encoder: 76-character lines)."""
    return binascii.b2a_qp(data, istext=True).decode("ascii").replace("\n", "\r\n")


def _quoted_printable(text: str) -> str:
    """A UTF-8 text part in quoted-printable."""
    return _qp(_lines(text))


QP_LINE = 76


def _qp_piece(data: bytes) -> str:
    """Part of a quoted-printable body that more text follows: encoded, ending in a soft line
    break, so that pieces encoded apart join into one valid body of lines of at most 76."""
    encoded = _qp(data)
    if not encoded or encoded.endswith("\r\n"):
        return encoded
    head, _, last = encoded.rpartition("\r\n")
    if len(last) >= QP_LINE:  # no room for the "=": break it earlier, never inside an "=XX"
        cut = QP_LINE - 1
        while "=" in last[cut - 2 : cut]:
            cut -= 1
        last = last[:cut] + "=\r\n" + last[cut:]
    return (head + "\r\n" if head else "") + last + "=\r\n"


Encoded = tuple[str, ...]  # encoded text, slot name, encoded text, ...


def _encoded_pieces(pieces: Pieces) -> Encoded:
    # One marker where each slot goes, so that the body's lines are normalised once.
    marked = "".join(_MARK if i % 2 else piece for i, piece in enumerate(pieces))
    parts = _lines(marked).split(_MARK.encode())
    # Every part but the last ends in a soft break; the last ends the body's final line.
    encoded = [_qp_piece(part) for part in parts[:-1]] + [_qp(parts[-1])]
    slots = pieces[1::2]
    result = [encoded[0]]
    for slot, text in zip(slots, encoded[1:], strict=True):
        result += [slot, text]
    return tuple(result)


_MARK = QP_MARK


def _fill(encoded: Encoded, values: dict[str, str]) -> str:
    return "".join(
        _qp_piece(values[piece].encode("utf-8")) if i % 2 else piece
        for i, piece in enumerate(encoded)
    )
