"""Understand one message that came back to the bounce address (pure: bytes in, a `Reading` out).

- Which addresses failed, and whether for good, comes from `flufl.bounce` (Mailman's detectors:
  RFC 3464 DSNs and a dozen non-DSN formats: Exim, qmail, Exchange, Postfix, Yahoo, AOL, …).
- The status code, which tells an address that does not exist (5.1.1) from a full mailbox, comes
  from the DSN's Status field, else from the bounce's text next to the address ("550 5.1.1 No
  such user here", "(#5.1.1)").
- ARF feedback reports (RFC 5965) are complaints; auto-replies (`Auto-Submitted: auto-replied`
  and the like, without a delivery report) are not bounces.
- Who it is about: the VERP tokens found where the bounce was addressed (Delivered-To,
  X-Original-To, To, the report's Original-Mail-From, the returned Return-Path), and the
  Message-IDs of the returned original. Verifying them is the caller's business (`bounces`).

A file that is not mail, a delivery report that names no recipient, or a message over
`MAX_BOUNCE_BYTES` raises `BounceError` with one line.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from flufl.bounce import all_failures

from ..errors import BounceError
from ..store.db import BOUNCE, COMPLAINT

MAX_BOUNCE_BYTES = 16 * 2**20  # a bounce returns at most the original digest (~100 KB) and text
MAX_PARTS = 200  # a bounce has a handful; thousands nested would cost the parser seconds

AUTO_REPLY, UNRECOGNISED = "auto-reply", "unrecognised"
UNSUBSCRIBE = "unsubscribe"  # a reader's mail to the List-Unsubscribe mailto: address
# An unsubscribe token as `mail.tokens` makes them: the subscriber id and day in base 36 and a
# base 32 signature, joined by "-"; or an old one, base64url, a dot, a 32-character signature.
UNSUBSCRIBE_TOKEN = re.compile(
    r"(?<![\w.-])([0-9A-Za-z]{1,12}-[0-9A-Za-z]{1,6}-[A-Za-z2-7]{16}"
    r"|[A-Za-z0-9_-]{2,700}\.[A-Za-z0-9_-]{32})(?![\w-])"
)
COMPLAINT_TYPES = ("abuse", "fraud", "virus")  # ARF Feedback-Type values that are complaints

ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
MESSAGE_ID_LINE = re.compile(r"(?im)^\s*message-id:\s*(<[^<>\s]{1,250}>)")
RETURNED = ("message/rfc822", "text/rfc822-headers")  # a report's copy of the original
FEEDBACK = "message/feedback-report"
TOKEN_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to")
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office)", re.I
)

logging.getLogger("flufl.bounce").setLevel(logging.WARNING)  # it logs each detector it runs


@dataclass(frozen=True)
class Failure:
    address: str  # lower-cased
    permanent: bool
    status: str | None = None  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # what the server said, one line


@dataclass(frozen=True)
class Reading:
    kind: str  # BOUNCE, COMPLAINT, AUTO_REPLY or UNRECOGNISED
    key: str  # the message's identity: its Message-ID, else a hash of it
    received_at: datetime | None  # its Date, naive UTC
    failures: tuple[Failure, ...] = ()  # a bounce's failed addresses; a complaint's reader
    tokens: tuple[str, ...] = ()  # VERP tokens where it was addressed, as found
    message_ids: tuple[str, ...] = ()  # of the returned original message
    detail: str = ""
    # A mail system's report that names no address: it is about whoever its VERP token names.
    unnamed: Failure | None = None
    requests: tuple[str, ...] = ()  # an unsubscribe request's tokens, as found (not verified)


def read_bounce(
    data: bytes, name: str, bounce_address: str | None, unsubscribe_address: str | None = None
) -> Reading:
    """What one message says. `bounce_address` (NEWSLETTER_BOUNCE_ADDRESS) is where VERP tokens
    are looked for; `name` is how errors name the message. Anyone can mail that address: a
    message of thousands of parts (which the standard library's parser and walker nest by
    recursion) is refused in one line, before it is parsed, like any other unreadable one."""
    if len(data) > MAX_BOUNCE_BYTES:
        raise BounceError(
            f"{name}: {len(data) / 2**20:.0f} MiB, too large for a bounce "
            f"(at most {MAX_BOUNCE_BYTES // 2**20} MiB); not read"
        )
    if data.lower().count(b"content-type:") > MAX_PARTS:  # cheap, before any parsing
        raise BounceError(f"{name}: more than {MAX_PARTS} parts, not a bounce; not read")
    message = _parse(data, name)
    # What a report returns of the original message, and a feedback report's fields: read once.
    returned = [_returned_headers(p) for p in message.walk() if p.get_content_type() in RETURNED]
    feedback = next(
        (_report_fields(p) for p in message.walk() if p.get_content_type() == FEEDBACK), {}
    )
    common = {
        "key": _key(message, data),
        "received_at": _date(message),
        "tokens": _tokens(message, returned, feedback, bounce_address),
        "message_ids": _returned_ids(message, returned),
    }
    report_type = collapse_rfc2231_value(
        message.get_param("report-type", "", header="content-type")
    ).lower()
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _complaint(feedback, returned, common)
    statuses = _dsn_statuses(message, name)
    system = _from_mail_system(message)
    if not statuses and not system and _asks_to_unsubscribe(message, unsubscribe_address):
        found = UNSUBSCRIBE_TOKEN.findall(str(message.get("subject", "")))
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                found += UNSUBSCRIBE_TOKEN.findall(_text(part)[:20_000])
        return Reading(
            UNSUBSCRIBE, requests=tuple(dict.fromkeys(found))[:5], detail="unsubscribe", **common
        )
    auto = (
        _auto_reply(message)
        and not statuses
        and not message.get("x-failed-recipients")
        and not system  # Exim writes Auto-Submitted: auto-replied on its own bounces
    )
    if auto:
        return Reading(AUTO_REPLY, detail="auto-reply", **common)
    failures = _failures(message, statuses)
    if not failures and system and common["tokens"]:  # the VERP address it came back to says
        return Reading(BOUNCE, unnamed=_unnamed_failure(message), **common)
    if not failures:
        return Reading(UNRECOGNISED, detail="no failed address found", **common)
    return Reading(BOUNCE, failures=failures, **common)


def _asks_to_unsubscribe(message: Message, address: str | None) -> bool:
    """Sent to the List-Unsubscribe mailto: address, or with the subject that link sets."""
    subject = str(message.get("subject", "")).strip().lower()
    if subject.startswith("unsubscribe"):
        return True
    if not address:
        return False
    places = " ".join(str(v) for h in TOKEN_HEADERS for v in message.get_all(h, []))
    return address.lower() in places.lower()


MAIL_SYSTEM = ("mailer-daemon", "postmaster", "mail delivery system", "mail delivery subsystem")
PERMANENT_WORDS = re.compile(r"permanent(ly)? (error|failure|fatal)|could not be delivered", re.I)


def _from_mail_system(message: Message) -> bool:
    """A mail system's own report: from MAILER-DAEMON or postmaster, with a null return path
    (RFC 5321 4.5.5), whatever its Auto-Submitted says."""
    name, address = parseaddr(str(message.get("from", "")))
    null_path = str(message.get("return-path", "")).strip() in ("<>", "")
    sender = {address.partition("@")[0].lower(), name.strip().lower()}
    return null_path and not sender.isdisjoint(MAIL_SYSTEM)


def _unnamed_failure(message: Message) -> Failure:
    """A mail system's report that names no address we can read: whoever the VERP token names
    failed, for good when the text says so or gives a 5.x.x code."""
    text = "\n".join(_text(p) for p in message.walk() if p.get_content_type() == "text/plain")
    code = _code(text)
    lasting = bool(PERMANENT_WORDS.search(text)) or (code or "").startswith("5")
    line = next((ln.strip() for ln in text.splitlines() if ENHANCED_STATUS.search(ln)), "")
    return Failure("", lasting, code, " ".join(line.split())[:300])


def _parse(data: bytes, name: str) -> Message:
    if not data.strip():
        raise BounceError(f"{name}: empty, not a mail message")
    if b"\x00" in data[:65536]:
        raise BounceError(f"{name}: binary data (NUL byte), not a mail message")
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if not any(message.get(h) for h in ("from", "date", "message-id", "received", "subject")):
        raise BounceError(f"{name}: no mail headers (From, Date, Subject…), not a mail message")
    return message


def _key(message: Message, data: bytes) -> str:
    """The same message read from a file, a Maildir, an mbox or IMAP has one key: its Message-ID
    (every MTA gives its bounces one), else a hash of its text."""
    found = MESSAGE_ID_LINE.match(f"Message-ID: {message.get('message-id', '')}")
    if found:
        return f"id:{found[1].lower()}"
    text = data.replace(b"\r\n", b"\n")
    if text.startswith(b"From "):  # an mbox's separator line
        text = text.partition(b"\n")[2]
    return f"sha256:{hashlib.sha256(text).hexdigest()}"


def _date(message: Message) -> datetime | None:
    try:
        when = parsedate_to_datetime(str(message.get("date", "")))
        return when if when.tzinfo is None else when.astimezone(UTC).replace(tzinfo=None)
    except (TypeError, ValueError, IndexError, OverflowError):  # (year 9999 in UTC-23:59…)
        return None


def _tokens(
    message: Message,
    returned: list[Message],
    feedback: dict[str, list[str]],
    bounce_address: str | None,
) -> tuple[str, ...]:
    if not bounce_address:
        return ()
    local, _, domain = bounce_address.rpartition("@")
    pattern = re.compile(rf"{re.escape(local)}\+([^@\s<>\"]{{1,80}})@{re.escape(domain)}", re.I)
    places = [value for h in TOKEN_HEADERS for value in message.get_all(h, [])]
    places += feedback.get("original-mail-from", [])
    places += [value for headers in returned for value in headers.get_all("return-path", [])]
    found: list[str] = []
    for value in places:
        found += [t for t in pattern.findall(str(value)) if t not in found]
    return tuple(found)


def _returned_headers(part: Message) -> Message:
    """The headers of the original message a report returns (whole or headers only)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True) or b""
    return email.message_from_bytes(text, policy=email.policy.compat32)


def _returned_ids(message: Message, returned: list[Message]) -> tuple[str, ...]:
    ids = [str(value) for headers in returned for value in headers.get_all("message-id", [])]
    for part in message.walk():  # (a plain-text bounce returns the original in its body)
        if part.get_content_maintype() == "text" and part.get_content_type() not in RETURNED:
            ids += MESSAGE_ID_LINE.findall(_text(part))
    cleaned = [m[1].lower() for v in ids if (m := MESSAGE_ID_LINE.match(f"Message-ID: {v}"))]
    return tuple(dict.fromkeys(cleaned))


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", "replace")


def _report_fields(part: Message) -> dict[str, list[str]]:
    """The fields of a message/feedback-report part, lower-case names."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [b for b in payload if isinstance(b, Message)]
        items = [(k.lower(), str(v)) for b in blocks for k, v in b.items()]
    else:
        parsed = email.message_from_string(str(payload), policy=email.policy.compat32)
        items = [(k.lower(), str(v)) for k, v in parsed.items()]
    fields: dict[str, list[str]] = {}
    for key, value in items:
        fields.setdefault(key, []).append(" ".join(value.split()))
    return fields


def _complaint(
    fields: dict[str, list[str]], returned: list[Message], common: dict[str, Any]
) -> Reading:
    returned_to = [value for headers in returned for value in headers.get_all("to", [])]
    kind = (fields.get("feedback-type") or [""])[0].lower()
    if kind not in COMPLAINT_TYPES:
        return Reading(UNRECOGNISED, detail=f"feedback report of type {kind or 'none'}", **common)
    named = fields.get("original-rcpt-to", []) or returned_to
    addresses = [a.lower() for _, a in getaddresses(named) if "@" in a]
    failures = tuple(
        Failure(a, True, None, f"complaint ({kind})") for a in dict.fromkeys(addresses)
    )
    return Reading(COMPLAINT, failures=failures, detail=f"complaint ({kind})", **common)


def _dsn_statuses(message: Message, name: str) -> dict[str, tuple[str, str, str]]:
    """address → (action, status, diagnostic) of each recipient of an RFC 3464 report."""
    statuses: dict[str, tuple[str, str, str]] = {}
    reports = recipients = 0
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        reports += 1
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks:
            if not isinstance(block, Message):
                continue
            recipient = block.get("final-recipient") or block.get("original-recipient")
            if not recipient:
                continue
            recipients += 1
            address = str(recipient).partition(";")[2].strip().strip("<>").lower()
            if "@" not in address:  # a local file or pipe (Exim's "save to /mail/spool/…")
                continue
            action = str(block.get("action", "")).strip().lower()
            status = str(block.get("status", "")).strip()
            diagnostic = " ".join(str(block.get("diagnostic-code", "")).split())
            statuses[address] = (action, status, diagnostic.partition(";")[2].strip()[:300])
    if reports and not recipients:
        raise BounceError(
            f"{name}: a delivery report that names no recipient (no Final-Recipient); "
            "nothing changed"
        )
    return statuses


def _auto_reply(message: Message) -> bool:
    auto = str(message.get("auto-submitted", "")).strip().lower()
    return (
        auto.startswith("auto-replied")
        or any(message.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponse"))
        or str(message.get("precedence", "")).strip().lower() == "auto_reply"
        or AUTO_REPLY_SUBJECT.match(str(message.get("subject", ""))) is not None
    )


def _failures(message: Message, statuses: dict[str, tuple[str, str, str]]) -> tuple[Failure, ...]:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripped on a strange message: it found nothing
        temporary, permanent = frozenset(), frozenset()
    found: dict[str, bool] = {}
    for raw, lasting in [(a, False) for a in temporary] + [(a, True) for a in permanent]:
        address = raw.decode("ascii", "replace").strip().strip("<>").lower()
        if "@" in address:
            found[address] = found.get(address, False) or lasting
    for address, (action, status, _) in statuses.items():  # (detectors may miss a 4.x.x)
        if address not in found and action in ("failed", "delayed"):
            found[address] = action == "failed" and status.startswith("5")
    text = "\n".join(_text(p) for p in message.walk() if p.get_content_type() == "text/plain")
    failures = []
    for address, lasting in found.items():
        action, status, diagnostic = statuses.get(address, ("", "", ""))
        written = _code(diagnostic) or _code_near(text, address, len(found) == 1)
        code = _specific(_code(status), written)
        if code:
            lasting = code.startswith("5") if status else lasting or code.startswith("5")
        failures.append(Failure(address, lasting, code, diagnostic or _line_near(text, address)))
    return tuple(failures)


def _specific(status: str | None, written: str | None) -> str | None:
    """The report's Status, unless it is only its class (Exim's reports say "5.0.0" whatever the
    server answered) and the server's own reply says more in the same class ("550 5.1.1 User
    unknown"): then the reply's."""
    if status is None:
        return written
    if written and status.endswith(".0.0") and written[0] == status[0]:
        return written
    return status


def _code(text: str) -> str | None:
    match = ENHANCED_STATUS.search(text or "")
    return ".".join(match.groups()) if match else None


def _code_near(text: str, address: str, only: bool) -> str | None:
    """The enhanced status code written after the address in the bounce's text (Exim, qmail
    and others put the server's reply there), or anywhere in it when one address failed."""
    at = text.lower().find(address)
    if at >= 0:
        code = _code(text[at : at + 600])
        if code:
            return code
    return _code(text) if only else None


def _line_near(text: str, address: str) -> str:
    at = text.lower().find(address)
    if at < 0:
        return ""
    return " ".join(text[at : at + 300].split())[:300]
