"""Settings for every stage, read once from the environment (or a `.env` file) and passed down.

Nothing else in the package reads `os.environ`: a stage gets the `Settings` it needs as an argument,
so tests build their own settings and a run never changes behaviour half way through.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from .errors import ConfigError
from .text import CONTROL

# Signs unsubscribe links in dry-runs and previews when no secret is configured. Never used for a
# real send: `Settings.require_secret` refuses it.
DEVELOPMENT_SECRET = "papers-digest-DEVELOPMENT-KEY-not-for-production"

SECURITY_MODES = ("starttls", "tls", "none")
# Seconds. The heartbeat renews claims every third of the lease: 0 would make it spin.
MIN_CLAIM_LEASE, MAX_CLAIM_LEASE = 1.0, 86400.0
VERP_TOKEN_CHARS = 36  # the longest VERP token (`tokens.verp_token`)
LOCAL_PART_MAX = 64  # RFC 5321 §4.5.3.1.1
SECRET_MIN_BYTES = 32  # an HMAC key shorter than this can be guessed by a patient attacker
# Settings written into message headers: a CR or LF there would add a header of its own.
HEADER_SETTINGS = (
    "FROM",
    "BASE_URL",
    "UNSUBSCRIBE_MAILTO",
    "SMTP_HELO",
    "BOUNCE_ADDRESS",
    "DKIM_SELECTOR",
    "DKIM_DOMAIN",
)


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """How to reach the SMTP server (the `SMTP_` variables and `NEWSLETTER_RATE_LIMIT`)."""

    host: str = "localhost"
    port: int = 25
    security: str = "starttls"  # "starttls", "tls" or "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    helo: str | None = None  # the EHLO name; None: see `Settings.helo_name`
    verify: bool = True
    timeout: float = 30.0
    connections: int = 4
    rate_limit: float = 0.0  # messages per second over all connections; 0 = unlimited
    attempts: int = 3  # tries per message within one run
    retry_delay: float = 2.0  # seconds before the second try; doubles after each

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    """The Daily Papers API (`NEWSLETTER_PAPERS_API` and the `FETCH` variables)."""

    api: str = "https://huggingface.co"  # its base URL
    enabled: bool = False  # `run` and `schedule` fetch the day's list first
    timeout: float = 10.0  # the list is a few hundred KB: a server this slow is down
    attempts: int = 3
    retry_delay: float = 2.0  # seconds before the second attempt; doubles after


@dataclass(frozen=True, kw_only=True)
class BounceSettings:
    """Where bounces come back (the `BOUNCE_` variables)."""

    address: str | None = None  # VERP envelope senders: local+token@domain
    imap_url: str | None = field(default=None, repr=False)  # holds a password


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    """DKIM signing (the `DKIM_` variables): all three or none."""

    selector: str | None = None
    domain: str | None = None
    key_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = "sqlite:///newsletter.db"
    seeds_dir: Path = Path("seeds")
    subscribers_dir: Path = Path("subscribers")
    outbox_dir: Path = Path("outbox")
    sender: str = "Trending Papers <papers@localhost>"
    base_url: str = "http://localhost:8000"
    secret_key: str | None = field(default=None, repr=False)
    unsubscribe_mailto: str | None = None
    send_at: str = "07:00"
    timezone: str = "UTC"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # 0: render in-process
    claim_lease: float = 120.0  # seconds a sender's claim on digests lasts unless renewed
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    bounces: BounceSettings = field(default_factory=BounceSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)

    @cached_property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    @cached_property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "localhost"

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.sender_domain}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def helo_name(self) -> str:
        """The name we greet SMTP servers with: NEWSLETTER_SMTP_HELO, else this machine's FQDN
        when it has a dot, else the domain of NEWSLETTER_FROM (a bare "localhost" is refused by
        servers that want a fully qualified name)."""
        if self.smtp.helo:
            return self.smtp.helo
        fqdn = socket.getfqdn()
        return fqdn if "." in fqdn.strip(".") else self.sender_domain

    @property
    def uses_development_secret(self) -> bool:
        return not self.secret_key

    @property
    def signing_key(self) -> str:
        """The key for unsubscribe tokens: the configured secret, or the marked development key."""
        return self.secret_key or DEVELOPMENT_SECRET

    def require_secret(self, purpose: str = "a real send") -> None:
        """Refuse to go on without a real signing key: with the published development key (or a
        short one) anyone could forge an unsubscribe link for anyone."""
        if not self.secret_key:
            raise ConfigError(
                f"NEWSLETTER_SECRET_KEY is not set: {purpose} needs it to sign unsubscribe links "
                "(use --dry-run to preview without it)"
            )
        if self.secret_key == DEVELOPMENT_SECRET:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY is the published development key: set a secret of your "
                "own (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if len(self.secret_key.encode("utf-8")) < SECRET_MIN_BYTES:
            raise ConfigError(
                f"NEWSLETTER_SECRET_KEY is too short ({len(self.secret_key.encode('utf-8'))} "
                f"bytes): use at least {SECRET_MIN_BYTES} random bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )

    def require_sending(self) -> None:
        """What a real send needs beyond loading: a real key, and no password sent in clear to a
        server that is not on this machine."""
        self.require_secret()
        smtp = self.smtp
        if smtp.security == "none" and smtp.username and not is_loopback(smtp.host):
            raise ConfigError(
                f"NEWSLETTER_SMTP_SECURITY=none with NEWSLETTER_SMTP_USERNAME would send the "
                f"password in clear to {smtp.host}: use starttls or tls (plain text "
                "is allowed only to a server on this machine)"
            )


@dataclass(frozen=True)
class Variable:
    """One environment variable: NEWSLETTER_<name>, the setting it fills ("part.field" for a
    part's), and how its text is read (a reader raises ConfigError naming the variable)."""

    name: str
    field: str
    read: Callable[[str, str], Any] = lambda _name, raw: raw
    exact: bool = False  # a secret: taken as written, spaces and all

    @property
    def variable(self) -> str:
        return f"NEWSLETTER_{self.name}"


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def read(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r}: expected a number from {low} to {high}")
        return value

    return read


def _number(low: float, high: float) -> Callable[[str, str], float]:
    """A finite number from `low` to `high` (`inf` and `nan` are numbers to Python, not to us:
    an infinite retry delay would hang a run with a digest claimed)."""

    def read(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{name}={raw!r}: expected a number from {low:g} to {high:g}")
        return value

    return read


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _url(_name: str, raw: str) -> str:
    return raw.rstrip("/")


def _path(_name: str, raw: str) -> Path:
    return Path(raw)


# Every variable the product reads, and where it goes: the one place a name is written.
VARIABLES = (
    Variable("DATABASE_URL", "database_url"),
    Variable("SEEDS_DIR", "seeds_dir", _path),
    Variable("SUBSCRIBERS_DIR", "subscribers_dir", _path),
    Variable("OUTBOX_DIR", "outbox_dir", _path),
    Variable("FROM", "sender"),
    Variable("BASE_URL", "base_url", _url),
    Variable("SECRET_KEY", "secret_key", exact=True),
    Variable("UNSUBSCRIBE_MAILTO", "unsubscribe_mailto"),
    Variable("SEND_AT", "send_at"),
    Variable("TIMEZONE", "timezone"),
    Variable("WORKERS", "workers", _integer(0, 64)),
    Variable("CLAIM_LEASE", "claim_lease", _number(MIN_CLAIM_LEASE, MAX_CLAIM_LEASE)),
    Variable("SMTP_HOST", "smtp.host"),
    Variable("SMTP_PORT", "smtp.port", _integer(1, 65535)),
    Variable("SMTP_SECURITY", "smtp.security", lambda _name, raw: raw.lower()),
    Variable("SMTP_USERNAME", "smtp.username"),
    Variable("SMTP_PASSWORD", "smtp.password", exact=True),
    Variable("SMTP_HELO", "smtp.helo"),
    Variable("SMTP_VERIFY", "smtp.verify", _boolean),
    Variable("SMTP_TIMEOUT", "smtp.timeout", _number(0.1, 3600)),
    Variable("SMTP_CONNECTIONS", "smtp.connections", _integer(1, 64)),
    Variable("RATE_LIMIT", "smtp.rate_limit", _number(0, 100_000)),
    Variable("SMTP_ATTEMPTS", "smtp.attempts", _integer(1, 20)),
    Variable("SMTP_RETRY_DELAY", "smtp.retry_delay", _number(0, 3600)),
    Variable("PAPERS_API", "fetch.api", _url),
    Variable("FETCH", "fetch.enabled", _boolean),
    Variable("FETCH_TIMEOUT", "fetch.timeout", _number(0.1, 600)),
    Variable("FETCH_ATTEMPTS", "fetch.attempts", _integer(1, 20)),
    Variable("FETCH_RETRY_DELAY", "fetch.retry_delay", _number(0, 600)),
    Variable("BOUNCE_ADDRESS", "bounces.address"),
    Variable("BOUNCE_IMAP_URL", "bounces.imap_url"),
    Variable("DKIM_SELECTOR", "dkim.selector"),
    Variable("DKIM_DOMAIN", "dkim.domain"),
    Variable("DKIM_KEY_FILE", "dkim.key_file", _path),
)
PARTS = {
    "smtp": SmtpSettings,
    "fetch": FetchSettings,
    "bounces": BounceSettings,
    "dkim": DkimSettings,
}


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Settings from `environ` (default: the process environment) over the `.env` file, if any.
    A variable that is empty or only spaces is unset (secrets excepted: taken as written)."""
    values: dict[str, str] = {}
    dotenv = env_file if env_file is not None else Path(".env")
    if environ is None and dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    given: dict[str, dict[str, Any]] = {"": {}, **{part: {} for part in PARTS}}
    for variable in VARIABLES:
        raw = values.get(variable.variable)
        if raw is not None and not variable.exact:
            raw = raw.strip()
        if not raw:
            continue
        part, _, name = variable.field.rpartition(".")
        given[part][name] = variable.read(variable.variable, raw)
    parts = {part: kind(**given[part]) for part, kind in PARTS.items()}
    settings = Settings(**given[""], **parts)
    validate(settings)
    return settings


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def setting(settings: Settings, path: str) -> Any:
    """The value of a setting by its place in the table ("smtp.port", "sender")."""
    value: Any = settings
    for name in path.split("."):
        value = getattr(value, name)
    return value


def validate(settings: Settings) -> None:
    """What the table's readers cannot check alone (each number's range is its reader's)."""
    for variable in VARIABLES:
        value = setting(settings, variable.field)
        if variable.name in HEADER_SETTINGS and value and CONTROL.search(value):
            raise ConfigError(
                f"{variable.variable} holds a line break or control character: it would be "
                "written into message headers"
            )
    if settings.smtp.helo and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", settings.smtp.helo):
        raise ConfigError(
            f"NEWSLETTER_SMTP_HELO={settings.smtp.helo!r}: expected a host name such as "
            "mail.example.org"
        )
    if settings.smtp.security not in SECURITY_MODES:
        raise ConfigError(
            f"NEWSLETTER_SMTP_SECURITY={settings.smtp.security!r}: expected one of "
            + ", ".join(SECURITY_MODES)
        )
    if "@" not in settings.sender_address:
        raise ConfigError(f"NEWSLETTER_FROM={settings.sender!r} has no email address")
    if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", settings.send_at):
        raise ConfigError(f"NEWSLETTER_SEND_AT={settings.send_at!r}: expected HH:MM, e.g. 07:00")
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"NEWSLETTER_TIMEZONE={settings.timezone!r} is not an IANA time zone "
            "(e.g. Europe/Berlin)"
        ) from None
    if not re.match(r"https?://[^/\s]+", settings.base_url):
        raise ConfigError(f"NEWSLETTER_BASE_URL={settings.base_url!r}: expected an http(s) URL")
    dkim = (settings.dkim.selector, settings.dkim.domain, settings.dkim.key_file)
    if any(dkim) and not all(dkim):
        raise ConfigError(
            "DKIM signing needs all of NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_DOMAIN and "
            "NEWSLETTER_DKIM_KEY_FILE"
        )
    if settings.dkim.key_file is not None:
        _validate_dkim_key(settings.dkim.key_file)
    _validate_fetch(settings)
    _validate_bounces(settings)


def _validate_dkim_key(path: Path) -> None:
    """The key file holds a private key dkimpy can sign with: found out at start-up, not at the
    first message (with digests claimed)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"NEWSLETTER_DKIM_KEY_FILE={path}: cannot be read: {error.strerror or error}"
        ) from None
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    try:
        parse_pem_private_key(data)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE={path}: not a PEM RSA private key") from None


def _validate_bounces(settings: Settings) -> None:
    address = settings.bounces.address
    if address is not None:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or "+" in local or any(c in address for c in "<> "):
            raise ConfigError(
                f"NEWSLETTER_BOUNCE_ADDRESS={address!r}: expected a plain address such as "
                "bounces@example.org (without '+': the token goes after it)"
            )
        if len(local) + 1 + VERP_TOKEN_CHARS > LOCAL_PART_MAX:
            raise ConfigError(
                f"NEWSLETTER_BOUNCE_ADDRESS={address!r}: its local part may have at most "
                f"{LOCAL_PART_MAX - 1 - VERP_TOKEN_CHARS} characters (a {VERP_TOKEN_CHARS}-"
                f"character token is added to it, and a local part holds {LOCAL_PART_MAX})"
            )
    url = settings.bounces.imap_url
    if url is not None and not re.match(r"imaps?://[^/\s]+", url):
        raise ConfigError(
            "NEWSLETTER_BOUNCE_IMAP_URL: expected imaps://user:password@host/MAILBOX "
            "(or imap:// for STARTTLS)"
        )


def _validate_fetch(settings: Settings) -> None:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", settings.fetch.api):
        raise ConfigError(
            f"NEWSLETTER_PAPERS_API={settings.fetch.api!r}: expected an http(s) base URL such "
            "as https://huggingface.co"
        )
