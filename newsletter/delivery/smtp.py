"""Delivery over SMTP: aiosmtplib over several reused connections, a rate limit, and retries.

Delivery knows nothing of templates, ranking or the database: it gets envelopes (recipient and
message bytes) and reports each one's outcome to a callback. The failure rules live in `classify`:
5xx at RCPT or DATA fails that address for good, 4xx and dropped connections are retried with
exponential back-off and then deferred to the next run, and a server that cannot be reached at
all stops the run with everything unsent left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiosmtplib

from ..config import SmtpSettings
from . import smtpdata

SENT_OUTCOME = "sent"
DEFERRED_OUTCOME = "deferred"
FAILED_OUTCOME = "failed"
RECONNECT = "reconnect"  # the connection broke: try again on a new one
WAIT = "wait"  # deferred at once: no other try in this run could change the answer


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
    """The server cannot be used for anyone in this run: it is down, or it refused *us* (the
    greeting, our EHLO name, MAIL FROM, TLS, the login). Nothing more is sent, no reader is
    charged, and every digest not sent stays pending for the next run."""


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


def _reply(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {error.message}".strip()


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `error` (aiosmtplib wraps the handshake's), if there is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# Refusals that arrive at RCPT but are about us, not the reader: Postfix delays its client, HELO
# and sender restrictions to RCPT by default (smtpd_delay_reject=yes), so a bad EHLO name or a
# refused sender is answered there, for every reader alike; so is a relay that is not ours.
SENDER_FAULT_AT_RCPT = re.compile(
    r"helo command rejected|sender address rejected|client host rejected|blocked using|"
    r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|authentication required",
    re.IGNORECASE,
)
# Refusals worded otherwise are caught by what they have in common: a server that refuses the
# first few readers of a run alike, on policy grounds (5.7.x), and has accepted none, is refusing
# us. Those failures are held back, not charged, until the server has accepted a message.
ALIKE_REFUSALS = 3
_POLICY = re.compile(r"^5\.7\.\d{1,3}\b")
# What varies between two readers' copies of one refusal: addresses, ids in brackets, numbers.
_PARTICULARS = re.compile(r"<[^>]*>|\S+@\S+|\[[^\]]*\]|\([^)]*\)|\S*\d\S*")
_TOO_LARGE = re.compile(r"^5\.3\.4\b")  # RFC 3463: message too big for system


class MessageTooLarge(aiosmtplib.SMTPException):
    """The message is larger than the server takes (its EHLO SIZE): not sent, never tried."""


def too_large(error: BaseException) -> bool:
    """Whether the server refused the message for its size: 552 at MAIL FROM (RFC 1870 SIZE),
    5.3.4 at MAIL or after DATA, or larger than its EHLO said. The message's problem, not the
    reader's, nor the server's refusal of us."""
    if isinstance(error, MessageTooLarge):
        return True
    if not isinstance(error, aiosmtplib.SMTPResponseException):
        return False
    if _TOO_LARGE.match(error.message):
        return True
    return isinstance(error, aiosmtplib.SMTPSenderRefused) and error.code == 552


def sender_fault(error: BaseException, server: str) -> str | None:
    """Why `error` says the server refuses *us*, for every reader alike (a refused greeting, EHLO
    name, MAIL FROM or login, TLS, a relay that is not ours), or None when it does not."""
    if (tls := _tls_failure(error)) is not None:
        return _tls_message(server, tls)
    if type(error) is aiosmtplib.SMTPException:  # e.g. "STARTTLS extension not supported"
        return f"SMTP server {server}: {error} (NEWSLETTER_SMTP_SECURITY)"
    if not isinstance(error, aiosmtplib.SMTPResponseException):
        return None
    reply = _reply(error)
    permanent = 500 <= error.code < 600
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return f"SMTP login to {server} refused: {reply}"
    if isinstance(error, aiosmtplib.SMTPConnectResponseError) and permanent:
        return f"SMTP server {server} refused the connection: {reply}"
    if isinstance(error, aiosmtplib.SMTPHeloError) and permanent:
        return (
            f"SMTP server {server} refused our greeting (EHLO): {reply} "
            "(set NEWSLETTER_SMTP_HELO to this machine's public host name)"
        )
    if isinstance(error, aiosmtplib.SMTPSenderRefused) and permanent:
        return f"SMTP server {server} refused our sender <{error.sender}> at MAIL FROM: {reply}"
    if error.code == 530 or SENDER_FAULT_AT_RCPT.search(error.message):
        return f"SMTP server {server} refused us: {reply}"
    return None


def classify(error: BaseException, server: str) -> tuple[str, str]:
    """The failure rules in one place: (outcome, reason) for an error while sending one message.

    Only the reader's server speaking about the reader charges the reader: 5xx at RCPT, or to
    the message after DATA, fails that address for good (552 at DATA is temporary: RFC 5321
    4.5.3.1.10). A refusal of *us* (`sender_fault`) raises `ServerUnreachable`: the run stops
    and nobody is charged. 4xx is temporary; a dropped connection is retried on a new one; an
    address this server cannot carry (no SMTPUTF8) waits, with the reason."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if too_large(error):
        return WAIT, f"{server} refused this message for its size: {error}"
    if (fault := sender_fault(error, server)) is not None:
        raise ServerUnreachable(fault) from None
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return WAIT, f"{server} cannot carry this message: {error}"
    if isinstance(error, UnicodeError | ValueError):
        return WAIT, f"cannot send to this address: {error}"
    if isinstance(error, aiosmtplib.SMTPServerDisconnected) or not isinstance(
        error, aiosmtplib.SMTPResponseException
    ):
        return RECONNECT, f"{type(error).__name__}: {error}".strip()
    reply = _reply(error)
    reader_reply = isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError)
    if 500 <= error.code < 600 and reader_reply and error.code != 552:
        return FAILED_OUTCOME, reply
    return DEFERRED_OUTCOME, reply


def _tls_message(server: str, error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of SMTP server {server} not accepted: "
            f"{error.verify_message or error.reason} (a configuration error: check "
            "NEWSLETTER_SMTP_HOST, or NEWSLETTER_SMTP_VERIFY=false for a self-signed test server)"
        )
    return f"TLS with SMTP server {server} failed: {error.reason or error}"


class SmtpSender:
    """Delivers envelopes over several reused SMTP connections with retries and a rate limit."""

    def __init__(self, options: SmtpSettings, fast_data: bool = True):
        self.options = options
        self.fast_data = fast_data  # `smtpdata` on our connections (off: the library's DATA)
        self._limiter = _RateLimiter(options.rate_limit)
        # The first connection is opened alone: if the server refuses us (TLS, login, EHLO),
        # that is said once, not once per connection and attempt.
        self._first = asyncio.Lock()
        self._proven = False
        self._fatal: ServerUnreachable | None = None

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
            local_hostname=o.helo,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._fatal is not None:
            raise self._fatal
        if self._proven:
            return await self._open()
        async with self._first:
            if self._fatal is not None:
                raise self._fatal
            try:
                client = await self._open()
            except ServerUnreachable as error:
                self._fatal = error
                raise
            self._proven = True
            return client

    async def _open(self) -> aiosmtplib.SMTP:
        """A connection that has greeted the server (EHLO, TLS, login as configured)."""
        server = self.options.describe()
        last: BaseException | None = None
        for attempt in range(self.options.attempts):
            client = self._client()
            try:
                await client.connect()
                if client.is_ehlo_or_helo_needed:
                    await _greet(client)
                if self.fast_data:
                    smtpdata.switch_on(client)
                return client
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
                client.close()
                if (fault := sender_fault(error, server)) is not None:
                    raise ServerUnreachable(fault) from None
                last = error
                if attempt + 1 < self.options.attempts:
                    await asyncio.sleep(self.options.retry_delay * 2**attempt)
        raise ServerUnreachable(
            f"cannot connect to SMTP server {server}: {type(last).__name__}: {last}".rstrip(": ")
        )

    async def send_all(
        self,
        envelopes: AsyncIterator[Envelope],
        record: Callable[[Envelope, Outcome], None],
    ) -> DeliveryReport:
        """Send every envelope; `record` is called once per envelope as soon as its fate is known.
        Stops early, leaving the rest unsent, when the server cannot be used."""
        report = DeliveryReport()
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=self.options.connections * 4)
        stop = asyncio.Event()
        outcomes = _Outcomes(report, record, self.options.describe(), stop)
        done = outcomes.done

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
        if not stop.is_set():
            outcomes.finish()
        return report

    async def _deliver(
        self, client: aiosmtplib.SMTP | None, envelope: Envelope
    ) -> tuple[aiosmtplib.SMTP | None, Outcome]:
        reply = None
        server = self.options.describe()
        for attempt in range(1, self.options.attempts + 1):
            if client is None or not client.is_connected:
                client = await self._connect()
            await self._limiter.wait()
            try:
                reply = await _transaction(client, envelope)
                return client, Outcome(SENT_OUTCOME, attempt, reply=reply)
            except (TimeoutError, aiosmtplib.SMTPException, OSError, ValueError) as error:
                kind, reply = classify(error, server)
                if kind == FAILED_OUTCOME:
                    await _reset(client)
                    return client, Outcome(FAILED_OUTCOME, attempt, reply=reply, error=reply)
                if kind == WAIT:
                    await _reset(client)
                    return client, Outcome(DEFERRED_OUTCOME, attempt, error=reply)
                if kind == RECONNECT:
                    with contextlib.suppress(Exception):
                        client.close()
                    client = None
                else:
                    await _reset(client)
            if attempt < self.options.attempts:
                await asyncio.sleep(self.options.retry_delay * 2 ** (attempt - 1))
        return client, Outcome(DEFERRED_OUTCOME, self.options.attempts, reply=reply, error=reply)


class _Outcomes:
    """Passes each outcome on as it comes, but holds back permanent policy refusals (5.7.x)
    until the server has accepted a message: when the first `ALIKE_REFUSALS` readers are all
    refused alike, the server is refusing us, the run stops, and none of them is charged."""

    def __init__(
        self,
        report: DeliveryReport,
        record: Callable[[Envelope, Outcome], None],
        server: str,
        stop: asyncio.Event,
    ):
        self.report = report
        self.record = record
        self.server = server
        self.stop = stop
        self.held: list[tuple[Envelope, Outcome]] = []
        self.accepted = False

    def done(self, envelope: Envelope, outcome: Outcome) -> None:
        if outcome.kind == FAILED_OUTCOME and not self.accepted and _policy_refusal(outcome):
            self.held.append((envelope, outcome))
            replies = {_alike(o.reply or "") for _, o in self.held}
            if len(self.held) >= ALIKE_REFUSALS and len(replies) == 1:
                self.report.unreachable = self.report.unreachable or (
                    f"SMTP server {self.server} refused the first {len(self.held)} readers "
                    f"alike and accepted none, which is a refusal of us: {outcome.reply}"
                )
                self.held.clear()  # not charged: they stay pending
                self.stop.set()
            return
        if outcome.kind == SENT_OUTCOME and not self.accepted:
            self.accepted = True
            self.flush()
        self._pass_on(envelope, outcome)

    def flush(self) -> None:
        while self.held:
            self._pass_on(*self.held.pop(0))

    def finish(self) -> None:
        """At the end of the run: refusals held back are the readers' own if the server took
        some message; if it refused every reader it was given on policy grounds, it refused us,
        whatever their number (a two-reader list too): nobody is charged, they stay pending."""
        if self.held and not self.accepted:
            _, last = self.held[-1]
            self.report.unreachable = self.report.unreachable or (
                f"SMTP server {self.server} refused all {len(self.held)} reader(s) on policy "
                f"grounds and accepted none, which is a refusal of us: {last.reply}"
            )
            self.held.clear()
            self.stop.set()
        self.flush()

    def _pass_on(self, envelope: Envelope, outcome: Outcome) -> None:
        self.report.outcomes[outcome.kind] = self.report.outcomes.get(outcome.kind, 0) + 1
        self.record(envelope, outcome)


def _alike(reply: str) -> str:
    """A refusal as every reader's copy of it reads: its code and words, without the addresses,
    ids and numbers that differ from one reply to the next."""
    return (
        " ".join(_PARTICULARS.sub(" ", reply).split()).lower() + " " + " ".join(reply.split()[:2])
    )


def _policy_refusal(outcome: Outcome) -> bool:
    """A permanent refusal on policy grounds (RFC 3463 5.7.x), which may be about us."""
    reply = (outcome.reply or "").split(" ", 1)
    return len(reply) == 2 and bool(_POLICY.match(reply[1]))


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO for a server that knows no ESMTP) right after connecting: a server that
    refuses our name says so before any message, as the sender's fault it is."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


async def _transaction(client: aiosmtplib.SMTP, envelope: Envelope) -> str:
    """MAIL, RCPT and DATA for one message; the server's final reply. The library's `sendmail`
    would do the same, plus a second pass over the message to work out its SIZE (RFC 1870): our
    messages have CRLF line ends already, so their size is their length. Errors are raised as
    the library raises them, and `classify` reads them."""
    utf8 = not (envelope.recipient.isascii() and envelope.sender.isascii())
    options = []
    if client.supports_extension("size"):
        limit = client.esmtp_extensions.get("size", "")
        if re.fullmatch(r"[0-9]{1,15}", limit) and 0 < int(limit) < len(envelope.message):
            raise MessageTooLarge(
                f"{len(envelope.message):,} bytes, more than the {int(limit):,} it takes (SIZE)"
            )
        options.append(f"SIZE={len(envelope.message)}")
    if utf8:  # RFC 6531: an internationalized address
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        options.append("SMTPUTF8")
        if client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
    encoding = "utf-8" if utf8 else "ascii"
    await client.mail(envelope.sender, options=options, encoding=encoding)
    await client.rcpt(envelope.recipient, encoding=encoding)
    return (await client.data(envelope.message)).message


async def _reset(client: aiosmtplib.SMTP) -> None:
    """Clear a refused transaction so the connection can carry the next message."""
    with contextlib.suppress(Exception):
        await client.rset()
