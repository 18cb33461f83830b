"""Settings for every stage, read once from the environment (or a `.env` file) and passed down.

Nothing else in the package reads `os.environ`: a stage gets the `Settings` it needs as an argument,
so tests build their own settings and a run never changes behaviour half way through.
"""

from __future__ import annotations

import ipaddress
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
MIN_CLAIM_LEASE, MAX_CLAIM_LEASE = 1.0, 86400.0  # seconds
VERP_TOKEN_CHARS = 36  # the longest VERP token (`tokens.verp_token`)
LOCAL_PART_MAX = 64  # RFC 5321 §4.5.3.1.1
SECRET_MIN_BYTES = 32  # an HMAC key shorter than this can be guessed by a patient attacker
# Settings written into message headers: a CR or LF there would add a header of its own.
HEADER_SETTINGS = {
    "NEWSLETTER_FROM": "sender",
    "NEWSLETTER_BASE_URL": "base_url",
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe_mailto",
    "NEWSLETTER_SMTP_HELO": "smtp_helo",
    "NEWSLETTER_BOUNCE_ADDRESS": "bounce_address",
    "NEWSLETTER_DKIM_SELECTOR": "dkim_selector",
    "NEWSLETTER_DKIM_DOMAIN": "dkim_domain",
}


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///newsletter.db"
    seeds_dir: Path = Path("seeds")
    subscribers_dir: Path = Path("subscribers")
    outbox_dir: Path = Path("outbox")
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_security: str = "starttls"
    smtp_helo: str | None = None  # the EHLO name; None: see `helo_name`
    smtp_verify: bool = True
    smtp_timeout: float = 30.0
    smtp_connections: int = 4
    rate_limit: float = 0.0
    smtp_attempts: int = 3
    smtp_retry_delay: float = 2.0
    sender: str = "Trending Papers <papers@localhost>"
    base_url: str = "http://localhost:8000"
    secret_key: str | None = field(default=None, repr=False)
    unsubscribe_mailto: str | None = None
    send_at: str = "07:00"
    timezone: str = "UTC"
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_key_file: Path | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # 0: render in-process
    claim_lease: float = 120.0  # seconds a sender's claim on digests lasts unless renewed
    papers_api: str = "https://huggingface.co"  # base URL of the Daily Papers API
    fetch: bool = False  # `run` and `schedule` fetch the day's list first
    fetch_timeout: float = 10.0  # the list is a few hundred KB: a server this slow is down
    fetch_attempts: int = 3
    fetch_retry_delay: float = 2.0  # seconds before the second attempt; doubles after
    bounce_address: str | None = None  # VERP envelope senders: local+token@domain
    bounce_imap_url: str | None = field(default=None, repr=False)  # holds a password

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
        if self.smtp_helo:
            return self.smtp_helo
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
        if self.smtp_security == "none" and self.smtp_username and not is_loopback(self.smtp_host):
            raise ConfigError(
                f"NEWSLETTER_SMTP_SECURITY=none with NEWSLETTER_SMTP_USERNAME would send the "
                f"password in clear to {self.smtp_host}: use starttls or tls (plain text "
                "is allowed only to a server on this machine)"
            )


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Settings from `environ` (default: the process environment) over the `.env` file, if any."""
    values: dict[str, str] = {}
    dotenv = env_file if env_file is not None else Path(".env")
    if environ is None and dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = values.get(f"NEWSLETTER_{name}")
        return value.strip() if value is not None and value.strip() != "" else None

    defaults = Settings()
    settings = Settings(
        database_url=get("DATABASE_URL") or defaults.database_url,
        seeds_dir=Path(get("SEEDS_DIR") or defaults.seeds_dir),
        subscribers_dir=Path(get("SUBSCRIBERS_DIR") or defaults.subscribers_dir),
        outbox_dir=Path(get("OUTBOX_DIR") or defaults.outbox_dir),
        smtp_host=get("SMTP_HOST") or defaults.smtp_host,
        smtp_port=_integer("NEWSLETTER_SMTP_PORT", get("SMTP_PORT"), defaults.smtp_port, 1, 65535),
        smtp_username=get("SMTP_USERNAME"),
        smtp_password=values.get("NEWSLETTER_SMTP_PASSWORD") or None,
        smtp_security=(get("SMTP_SECURITY") or defaults.smtp_security).lower(),
        smtp_helo=get("SMTP_HELO"),
        smtp_verify=_boolean("NEWSLETTER_SMTP_VERIFY", get("SMTP_VERIFY"), defaults.smtp_verify),
        smtp_timeout=_number("NEWSLETTER_SMTP_TIMEOUT", get("SMTP_TIMEOUT"), defaults.smtp_timeout),
        smtp_connections=_integer(
            "NEWSLETTER_SMTP_CONNECTIONS", get("SMTP_CONNECTIONS"), defaults.smtp_connections, 1, 64
        ),
        rate_limit=_number("NEWSLETTER_RATE_LIMIT", get("RATE_LIMIT"), defaults.rate_limit),
        smtp_attempts=_integer(
            "NEWSLETTER_SMTP_ATTEMPTS", get("SMTP_ATTEMPTS"), defaults.smtp_attempts, 1, 20
        ),
        smtp_retry_delay=_number(
            "NEWSLETTER_SMTP_RETRY_DELAY", get("SMTP_RETRY_DELAY"), defaults.smtp_retry_delay
        ),
        sender=get("FROM") or defaults.sender,
        base_url=(get("BASE_URL") or defaults.base_url).rstrip("/"),
        secret_key=values.get("NEWSLETTER_SECRET_KEY") or None,
        unsubscribe_mailto=get("UNSUBSCRIBE_MAILTO"),
        send_at=get("SEND_AT") or defaults.send_at,
        timezone=get("TIMEZONE") or defaults.timezone,
        dkim_selector=get("DKIM_SELECTOR"),
        dkim_domain=get("DKIM_DOMAIN"),
        dkim_key_file=Path(key) if (key := get("DKIM_KEY_FILE")) else None,
        workers=_integer("NEWSLETTER_WORKERS", get("WORKERS"), defaults.workers, 0, 64),
        claim_lease=_number("NEWSLETTER_CLAIM_LEASE", get("CLAIM_LEASE"), defaults.claim_lease),
        **_fetch_settings(get, defaults),
        bounce_address=get("BOUNCE_ADDRESS"),
        bounce_imap_url=get("BOUNCE_IMAP_URL"),
    )
    validate(settings)
    return settings


def _fetch_settings(get: Callable[[str], str | None], defaults: Settings) -> dict[str, Any]:
    return {
        "papers_api": (get("PAPERS_API") or defaults.papers_api).rstrip("/"),
        "fetch": _boolean("NEWSLETTER_FETCH", get("FETCH"), defaults.fetch),
        "fetch_timeout": _number(
            "NEWSLETTER_FETCH_TIMEOUT", get("FETCH_TIMEOUT"), defaults.fetch_timeout
        ),
        "fetch_attempts": _integer(
            "NEWSLETTER_FETCH_ATTEMPTS", get("FETCH_ATTEMPTS"), defaults.fetch_attempts, 1, 20
        ),
        "fetch_retry_delay": _number(
            "NEWSLETTER_FETCH_RETRY_DELAY", get("FETCH_RETRY_DELAY"), defaults.fetch_retry_delay
        ),
    }


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate(settings: Settings) -> None:
    for name, attribute in HEADER_SETTINGS.items():
        value = getattr(settings, attribute)
        if value and CONTROL.search(value):
            raise ConfigError(
                f"{name} holds a line break or control character: it would be written into "
                "message headers"
            )
    if settings.smtp_helo and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", settings.smtp_helo):
        raise ConfigError(
            f"NEWSLETTER_SMTP_HELO={settings.smtp_helo!r}: expected a host name such as "
            "mail.example.org"
        )
    if settings.smtp_security not in SECURITY_MODES:
        raise ConfigError(
            f"NEWSLETTER_SMTP_SECURITY={settings.smtp_security!r}: expected one of "
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
    if settings.rate_limit < 0:
        raise ConfigError("NEWSLETTER_RATE_LIMIT must not be negative")
    dkim = (settings.dkim_selector, settings.dkim_domain, settings.dkim_key_file)
    if any(dkim) and not all(dkim):
        raise ConfigError(
            "DKIM signing needs all of NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_DOMAIN and "
            "NEWSLETTER_DKIM_KEY_FILE"
        )
    if settings.dkim_key_file is not None and not settings.dkim_key_file.is_file():
        raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE={settings.dkim_key_file}: no such file")
    if settings.smtp_retry_delay < 0 or settings.smtp_timeout <= 0:
        raise ConfigError("NEWSLETTER_SMTP_RETRY_DELAY and _TIMEOUT must be positive numbers")
    _validate_fetch(settings)
    _validate_bounces(settings)
    if not MIN_CLAIM_LEASE <= settings.claim_lease <= MAX_CLAIM_LEASE:
        # The heartbeat renews claims every third of the lease: 0 would make it spin.
        raise ConfigError(
            f"NEWSLETTER_CLAIM_LEASE={settings.claim_lease:g}: give seconds from "
            f"{MIN_CLAIM_LEASE:g} to {MAX_CLAIM_LEASE:g}"
        )


def _validate_bounces(settings: Settings) -> None:
    address = settings.bounce_address
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
    url = settings.bounce_imap_url
    if url is not None and not re.match(r"imaps?://[^/\s]+", url):
        raise ConfigError(
            "NEWSLETTER_BOUNCE_IMAP_URL: expected imaps://user:password@host/MAILBOX "
            "(or imap:// for STARTTLS)"
        )


def _validate_fetch(settings: Settings) -> None:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", settings.papers_api):
        raise ConfigError(
            f"NEWSLETTER_PAPERS_API={settings.papers_api!r}: expected an http(s) base URL such "
            "as https://huggingface.co"
        )
    if not (0 < settings.fetch_timeout <= 600 and 0 <= settings.fetch_retry_delay <= 600):
        raise ConfigError(
            "NEWSLETTER_FETCH_TIMEOUT (above 0) and NEWSLETTER_FETCH_RETRY_DELAY: seconds, "
            "at most 600"
        )


def _integer(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r}: expected a number from {low} to {high}")
    return value


def _number(name: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None


def _boolean(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")
