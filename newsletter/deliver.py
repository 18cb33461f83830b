"""Delivery: where finished messages go. In a dry-run, one `.eml` file per digest; in a real run,
SMTP with aiosmtplib over several reused connections, a rate limit, and retries.

Delivery knows nothing of templates, ranking or the database: it gets envelopes (recipient and
message bytes) and reports each one's outcome to a callback. The failure rules live in `classify`:
5xx at RCPT or DATA fails that address for good, 4xx and dropped connections are retried with
exponential back-off and then deferred to the next run, and a server that cannot be reached at
all stops the run with everything unsent left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote

import aiosmtplib
import aiosmtplib.email
import aiosmtplib.protocol
import aiosmtplib.smtp

# Characters an address may hold that are unsafe or awkward in a file name get %-escaped.
_FILE_SAFE = "@.+-_=!#$&'*^`{|}~"


def address_filename(address: str, suffix: str) -> str:
    return quote(address, safe=_FILE_SAFE) + suffix


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename: a reader never sees half a message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class OutboxWriter:
    """The dry-run outbox: `DIR/<date>/<address>.eml`."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path_for(self, day: date, address: str, suffix: str = ".eml") -> Path:
        return self.directory / day.isoformat() / address_filename(address, suffix)

    def write(self, day: date, address: str, message: bytes) -> Path:
        path = self.path_for(day, address)
        write_atomically(path, message)
        return path


# --- Real delivery over SMTP -------------------------------------------------------------------

# aiosmtplib turns every message's line ends into CRLF (twice: once more to work out its size)
# and doubles leading periods with regular expressions: about 0.3 ms per 27 KB message, as much as
# the rest of its work. Our messages are CRLF already, so these equivalents find that out with a
# C-speed scan and fall back to the library's own code otherwise (tests/test_deliver.py checks
# they agree). Installed only if aiosmtplib still has these hooks.
_normalize_line_endings = getattr(aiosmtplib.protocol, "normalize_message_line_endings", None)


_checked: list[bytes] = [b""]  # the last message found in CRLF: aiosmtplib asks twice per send


def _fast_normalize(message: bytes) -> bytes:
    if message is _checked[0]:
        return message
    pairs = message.count(b"\r\n")
    if message.count(b"\r") != pairs or message.count(b"\n") != pairs:  # a lone CR or LF
        assert _normalize_line_endings is not None
        return _normalize_line_endings(message)
    if not message.endswith(b"\r\n"):
        return message + b"\r\n"
    _checked[0] = message
    return message


class _PeriodQuoter:
    """`re.compile(rb"(?m)^\\.")`'s `sub` for CRLF text, with `bytes.replace`."""

    @staticmethod
    def sub(doubled: bytes, message: bytes) -> bytes:
        assert doubled == b".."
        head = b"." if message.startswith(b".") else b""
        return head + (message.replace(b"\n.", b"\n..") if b"\n." in message else message)


if (
    _normalize_line_endings is not None
    and _normalize_line_endings.__module__ == "aiosmtplib.protocol"  # not ours (a reload)
    and hasattr(aiosmtplib.protocol, "PERIOD_REGEX")
):
    aiosmtplib.protocol.normalize_message_line_endings = _fast_normalize
    aiosmtplib.smtp.normalize_message_line_endings = _fast_normalize  # type: ignore[attr-defined]
    aiosmtplib.protocol.PERIOD_REGEX = _PeriodQuoter()  # type: ignore[assignment]

# It also parses the sender and each recipient with `email.utils.parseaddr` four times per
# message (0.1 ms); the answer for an address never changes, so it is remembered.
if hasattr(aiosmtplib.email, "parse_address") and hasattr(aiosmtplib.smtp, "parse_address"):
    _parse_address = functools.lru_cache(maxsize=1024)(aiosmtplib.email.parse_address)
    aiosmtplib.email.parse_address = _parse_address
    aiosmtplib.smtp.parse_address = _parse_address  # type: ignore[attr-defined]

SENT_OUTCOME = "sent"
DEFERRED_OUTCOME = "deferred"
FAILED_OUTCOME = "failed"


@dataclass(frozen=True)
class Envelope:
    """One message to hand to the SMTP server. `key` lets the caller match outcomes to rows."""

    key: int
    sender: str
    recipient: str
    message: bytes


@dataclass(frozen=True)
class Outcome:
    """What became of one envelope: sent, deferred (retry later) or failed (permanently)."""

    kind: str
    attempts: int
    reply: str | None = None
    error: str | None = None


@dataclass
class DeliveryReport:
    outcomes: dict[str, int] = field(default_factory=dict)
    unreachable: str | None = None  # why the server could not be used; the rest stays pending


class ServerUnreachable(Exception):
    """Connecting (or logging in) failed: nothing more can be sent in this run."""


@dataclass(frozen=True)
class SmtpOptions:
    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    verify: bool = True
    timeout: float = 30.0
    connections: int = 4
    rate_limit: float = 0.0  # messages per second over all connections; 0 = unlimited
    attempts: int = 3  # tries per message within one run
    retry_delay: float = 2.0  # seconds before the second try; doubles after each

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


class _RateLimiter:
    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next_slot = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next_slot - now
            self.next_slot = max(now, self.next_slot) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def classify(error: BaseException) -> tuple[str, str]:
    """Failure rules in one place: (deferred | failed | reconnect, reply text) for an SMTP error.

    5xx at RCPT or DATA is permanent for that address; 4xx is temporary; a dropped connection
    is retried on a new connection."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPResponseException) and not isinstance(
        error, aiosmtplib.SMTPServerDisconnected
    ):
        reply = f"{error.code} {error.message}".strip()
        if 500 <= error.code < 600:
            return FAILED_OUTCOME, reply
        return DEFERRED_OUTCOME, reply
    return "reconnect", f"{type(error).__name__}: {error}".strip()


class SmtpSender:
    """Delivers envelopes over several reused SMTP connections with retries and a rate limit."""

    def __init__(self, options: SmtpOptions):
        self.options = options
        self._limiter = _RateLimiter(options.rate_limit)

    def _client(self) -> aiosmtplib.SMTP:
        o = self.options
        context = None
        if o.security != "none":
            context = ssl.create_default_context()
            if not o.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            username=o.username or None,
            password=o.password if o.username else None,
            use_tls=o.security == "tls",
            start_tls=o.security == "starttls",
            validate_certs=o.verify,
            tls_context=context,
            timeout=o.timeout,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        last: BaseException | None = None
        for attempt in range(self.options.attempts):
            client = self._client()
            try:
                await client.connect()
                return client
            except aiosmtplib.SMTPAuthenticationError as error:
                raise ServerUnreachable(
                    f"SMTP login to {self.options.describe()} refused: {error.code} {error.message}"
                ) from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
                last = error
                if attempt + 1 < self.options.attempts:
                    await asyncio.sleep(self.options.retry_delay * 2**attempt)
        raise ServerUnreachable(
            f"cannot connect to SMTP server {self.options.describe()}: "
            f"{type(last).__name__}: {last}".rstrip(": ")
        )

    async def send_all(
        self,
        envelopes: AsyncIterator[Envelope],
        record: Callable[[Envelope, Outcome], None],
    ) -> DeliveryReport:
        """Send every envelope; `record` is called once per envelope as soon as its fate is known.
        Stops early, leaving the rest unsent, when the server cannot be reached."""
        report = DeliveryReport()
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=self.options.connections * 4)
        stop = asyncio.Event()

        def done(envelope: Envelope, outcome: Outcome) -> None:
            report.outcomes[outcome.kind] = report.outcomes.get(outcome.kind, 0) + 1
            record(envelope, outcome)

        async def produce() -> None:
            try:
                async for envelope in envelopes:
                    if stop.is_set():
                        break
                    await queue.put(envelope)
            finally:
                for _ in range(self.options.connections):
                    await queue.put(None)

        async def work() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while (envelope := await queue.get()) is not None:
                    if stop.is_set():
                        continue
                    try:
                        client, outcome = await self._deliver(client, envelope)
                    except ServerUnreachable as error:
                        report.unreachable = report.unreachable or str(error)
                        stop.set()
                        continue
                    done(envelope, outcome)
            finally:
                if client is not None and client.is_connected:
                    with contextlib.suppress(Exception):
                        await client.quit()

        await asyncio.gather(produce(), *(work() for _ in range(self.options.connections)))
        return report

    async def _deliver(
        self, client: aiosmtplib.SMTP | None, envelope: Envelope
    ) -> tuple[aiosmtplib.SMTP | None, Outcome]:
        reply = None
        for attempt in range(1, self.options.attempts + 1):
            if client is None or not client.is_connected:
                client = await self._connect()
            await self._limiter.wait()
            try:
                _, reply = await client.sendmail(
                    envelope.sender, [envelope.recipient], envelope.message
                )
                return client, Outcome(SENT_OUTCOME, attempt, reply=reply)
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
                kind, reply = classify(error)
                if kind == FAILED_OUTCOME:
                    await _reset(client)
                    return client, Outcome(FAILED_OUTCOME, attempt, reply=reply, error=reply)
                if kind == "reconnect":
                    with contextlib.suppress(Exception):
                        client.close()
                    client = None
                else:
                    await _reset(client)
            if attempt < self.options.attempts:
                await asyncio.sleep(self.options.retry_delay * 2 ** (attempt - 1))
        return client, Outcome(DEFERRED_OUTCOME, self.options.attempts, reply=reply, error=reply)


async def _reset(client: aiosmtplib.SMTP) -> None:
    """Clear a refused transaction so the connection can carry the next message."""
    with contextlib.suppress(Exception):
        await client.rset()
