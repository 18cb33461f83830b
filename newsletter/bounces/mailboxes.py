"""Where bounces are read from: `.eml` files, Maildir folders and mbox files (what a local MTA
delivers to), and an IMAP mailbox (`NEWSLETTER_BOUNCE_IMAP_URL`).

Files are only read. In an IMAP mailbox each message read is flagged `\\Seen` and with the keyword
`$PapersDigestRead` (or only `\\Seen` where the server keeps no keywords) and the next fetch asks
for the others; nothing is deleted or moved, so nothing is lost. Either way a message read twice
changes nothing (`bounces` records each one once).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import mailbox
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..config import Settings, is_loopback
from ..deadlines import TooLate, within
from ..errors import BounceError, ConfigError
from ..store.db import Database
from .rules import BounceReport, handle_message

log = logging.getLogger(__name__)

READ_KEYWORD = "$PapersDigestRead"
FALSE = ("false", "0", "no", "off")
IMAP_TIMEOUT = 60.0  # one read
IMAP_DEADLINE = 300.0  # the whole exchange


def read_paths(db: Database, settings: Settings, paths: list[Path]) -> BounceReport:
    """`newsletter bounces read PATH…`."""
    _require_key(settings)
    report = BounceReport()
    for name, data in _messages(paths, report):
        _handle(db, settings, data, name, report)
    return report


def _require_key(settings: Settings) -> None:
    """VERP tokens are signed with the secret key: without it every token would look forged."""
    if settings.bounces.address and settings.uses_development_secret:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY is not set: the VERP tokens of bounces are verified with the "
            "key that signed them"
        )


def _handle(db: Database, settings: Settings, data: bytes, name: str, report: BounceReport) -> None:
    try:
        report.handled.append(handle_message(db, settings, data, name))
    except BounceError as error:
        report.errors.append(str(error))


def _messages(paths: list[Path], report: BounceReport) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        try:
            if path.is_dir() and any((path / sub).is_dir() for sub in ("cur", "new")):
                yield from _maildir(path)
            elif path.is_dir():
                for file in sorted(p for p in path.iterdir() if p.is_file()):
                    yield from _file(file)
            elif path.is_file():
                yield from _file(path)
            else:
                report.errors.append(f"{path}: no such file or folder")
        except OSError as error:
            report.errors.append(f"{path}: cannot be read: {error.strerror or error}")


def _maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    folder = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(folder.keys()):
        subdir = "new" if (path / "new" / key).exists() else "cur"
        yield f"{path}/{subdir}/{key}", folder.get_bytes(key)


def _file(path: Path) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as file:
        head = file.read(5)
    if head == b"From ":  # an mbox: messages after "From " separator lines
        box = mailbox.mbox(path, factory=None, create=False)
        try:
            for number, key in enumerate(box.keys(), start=1):
                yield f"{path}, message {number}", box.get_bytes(key)
        finally:
            box.close()
    else:
        yield str(path), path.read_bytes()


def fetch_imap(db: Database, settings: Settings) -> BounceReport:
    """`newsletter bounces fetch`: the unread messages of the IMAP bounce mailbox. `imaps://` is
    TLS; `imap://` is STARTTLS, required but to a server on this machine; certificates are
    checked but on this machine (`?verify=true|false` decides)."""
    if not settings.bounces.imap_url:
        raise ConfigError("NEWSLETTER_BOUNCE_IMAP_URL is not set: no bounce mailbox to fetch")
    where = ImapPlace.parse(settings.bounces.imap_url)
    _require_key(settings)
    report = BounceReport()
    # The whole exchange has a deadline, not each read: a server sending a byte every few
    # seconds would otherwise hold the command (and the scheduled run after it) for hours.
    connection: list[imaplib.IMAP4] = []

    def exchange() -> None:
        with where.connect() as imap:
            connection.append(imap)
            _fetch_unread(db, settings, imap, where, report)

    try:
        within(IMAP_DEADLINE, exchange, "bounce mailbox")
    except TooLate:
        for imap in connection:  # wakes the read it is stuck in; what was read stays read
            with contextlib.suppress(Exception):
                imap.shutdown()
        raise BounceError(
            f"bounce mailbox {where}: not read within {IMAP_DEADLINE:g} s (too slow to be "
            f"up); {len(report.handled)} message(s) read before that"
        ) from None
    except (imaplib.IMAP4.error, OSError, ssl.SSLError) as error:
        raise BounceError(f"bounce mailbox {where}: {_reason(error)}") from None
    return report


@dataclass(frozen=True)
class ImapPlace:
    """The bounce mailbox as NEWSLETTER_BOUNCE_IMAP_URL names it."""

    scheme: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str
    security: str  # tls | starttls | none
    verify: bool  # check the server's certificate

    @classmethod
    def parse(cls, url: str) -> ImapPlace:
        parts = urlsplit(url)
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        security = query.get("security", "tls" if parts.scheme == "imaps" else "starttls")
        if security not in ("tls", "starttls", "none"):
            raise ConfigError(
                f"NEWSLETTER_BOUNCE_IMAP_URL: security={security}: expected tls, starttls or none"
            )
        try:
            port = parts.port or (993 if security == "tls" else 143)
        except ValueError:
            raise ConfigError("NEWSLETTER_BOUNCE_IMAP_URL: the port is not a number") from None
        host = parts.hostname or ""
        if not parts.username or not host:
            raise ConfigError("NEWSLETTER_BOUNCE_IMAP_URL: expected imaps://user:password@host/")
        if security == "none" and not is_loopback(host):
            raise ConfigError(
                "NEWSLETTER_BOUNCE_IMAP_URL: security=none would send the password in clear to "
                f"{host} (allowed only to a server on this machine)"
            )
        return cls(
            parts.scheme,
            host,
            port,
            unquote(parts.username),
            unquote(parts.password or ""),
            unquote(parts.path.lstrip("/")) or "INBOX",
            security,
            # A server on this machine is reached without a network in between: its own
            # certificate (a test server's, say) is taken unless verify=true asks otherwise.
            query.get("verify", "false" if is_loopback(host) else "true") not in FALSE,
        )

    def __str__(self) -> str:  # no password
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"

    def connect(self) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.security == "tls":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=context, timeout=IMAP_TIMEOUT
            )
        else:
            imap = imaplib.IMAP4(self.host, self.port, timeout=IMAP_TIMEOUT)
            if self.security == "starttls" and "STARTTLS" in imap.capabilities:
                imap.starttls(context)
            elif self.security == "starttls" and not is_loopback(self.host):
                imap.shutdown()
                raise BounceError(
                    f"bounce mailbox {self}: the server offers no STARTTLS, and the password "
                    "would go in clear (use imaps://, or a server that offers STARTTLS)"
                )
        imap.login(self.user, self.password)
        return imap


def _fetch_unread(
    db: Database, settings: Settings, imap: imaplib.IMAP4, where: ImapPlace, report: BounceReport
) -> None:
    status, _ = imap.select(_quoted(where.folder))
    if status != "OK":
        raise BounceError(f"bounce mailbox {where}: no folder {where.folder!r}")
    flags = " ".join(str(f) for f in imap.untagged_responses.get("PERMANENTFLAGS", []))
    keywords = "\\*" in flags
    criterion = ("UNKEYWORD", READ_KEYWORD) if keywords else ("UNSEEN",)
    _, found = imap.uid("SEARCH", None, *criterion)
    mark = f"(\\Seen {READ_KEYWORD})" if keywords else "(\\Seen)"
    for uid in (found[0] or b"").split():
        _, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        data = next((item[1] for item in fetched if isinstance(item, tuple)), None)
        if data is None:
            continue
        _handle(db, settings, data, f"{where} uid {uid.decode()}", report)
        # Read, or refused with one line: either way not asked for again; never deleted.
        imap.uid("STORE", uid, "+FLAGS.SILENT", mark)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "no answer (timeout)"
    if isinstance(error, ssl.SSLError):  # e.g. "[SSL: CERTIFICATE_VERIFY_FAILED] certificate …"
        return " ".join(str(error).split())[:200]
    if isinstance(error, OSError) and not isinstance(error, ssl.SSLError) and error.strerror:
        return error.strerror
    text = error.args[0] if error.args else error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:200] or type(error).__name__
