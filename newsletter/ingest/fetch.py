"""`newsletter fetch`: download the Daily Papers list of some days, save each answer unchanged in
the seeds folder, then ingest it.

`GET <NEWSLETTER_PAPERS_API>/api/daily_papers?date=YYYY-MM-DD` over httpx, with a timeout and
retries with doubling back-off on connection errors, timeouts, 429 and 5xx; a `Retry-After` (seconds
or an HTTP date) is honoured up to `MAX_RETRY_AFTER`, and a server that asks for longer is a failure
of that day rather than a run that hangs. An answer is saved (temporary file, then rename) only
once it parses as the expected list, so a failed day stores nothing; an empty list is a normal day.
Every day's outcome is recorded for `newsletter status`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from .. import __version__
from ..config import Settings
from ..deadlines import TooLate, within
from ..errors import DumpError
from ..files import write_atomically
from ..store.db import Database
from ..store.runs import record_fetch
from .apidumps import file_name, parse_api_dump
from .intake import MAX_DUMP_BYTES, MAX_DUMP_PAPERS, IngestReport, ingest_paths

log = logging.getLogger(__name__)

USER_AGENT = f"papers-digest/{__version__}"
MAX_RETRY_AFTER = 300.0  # seconds: a server asking for a longer pause fails the day
MAX_REDIRECTS = 5
MAX_DAYS = 366  # `--days`: a year of backfill at most


class FetchFailed(Exception):
    """A day's list could not be had; the message says why, in a few words."""


@dataclass(frozen=True)
class DayFetch:
    day: date
    path: Path | None = None  # where the answer was saved
    papers: int = 0
    error: str | None = None
    kept: bool = False  # an empty answer did not replace the papers saved earlier

    @property
    def line(self) -> str:
        if self.error is not None:
            return f"fetch {self.day.isoformat()}: {self.error}; nothing stored"
        if self.kept:
            return (
                f"{self.day.isoformat()}: the API lists no papers now; kept the earlier "
                f"answer in {self.path}"
            )
        return f"{self.day.isoformat()}: {self.papers} paper(s), saved to {self.path}"


@dataclass
class FetchReport:
    days: list[DayFetch] = field(default_factory=list)
    ingest: IngestReport | None = None

    @property
    def failed(self) -> list[DayFetch]:
        return [day for day in self.days if day.error is not None]

    @property
    def saved(self) -> list[Path]:
        return [day.path for day in self.days if day.path is not None and not day.kept]


class PapersApi:
    """The Daily Papers API at `settings.fetch.api`: one answer per day, or `FetchFailed`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = httpx.Client(
            base_url=settings.fetch.api,
            timeout=settings.fetch.timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )

    def __enter__(self) -> PapersApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def day(self, day: date) -> bytes:
        """The answer for `day`, retried as the settings say."""
        attempts = self.settings.fetch.attempts
        for attempt in range(1, attempts + 1):
            wait = self.settings.fetch.retry_delay * 2 ** (attempt - 1)
            try:
                return self._get(day)
            except _Retryable as error:
                reason = str(error)
                if error.retry_after is not None:
                    if error.retry_after > MAX_RETRY_AFTER:
                        raise FetchFailed(
                            f"{reason}, asked to wait {error.retry_after:.0f} s "
                            f"(more than {MAX_RETRY_AFTER:.0f})"
                        ) from None
                    wait = error.retry_after
            if attempt < attempts:
                log.debug("fetch %s: %s; again in %.1f s", day.isoformat(), reason, wait)
                time.sleep(min(wait, MAX_RETRY_AFTER))
        raise FetchFailed(f"{reason} ({attempts} attempt{'s' if attempts > 1 else ''})")

    def _get(self, day: date) -> bytes:
        """One request, with a deadline for the whole exchange (`timeout` × 2): httpx's timeout
        is per read, so a server sending its headers a byte at a time would never time out."""
        timeout = self.settings.fetch.timeout
        try:
            return within(
                timeout * 2 + 1,
                lambda: self._request(day, time.monotonic() + timeout * 2),
                f"fetch {day}",
            )
        except TooLate:
            raise _Retryable(f"answer not complete within {timeout * 2:g} s") from None

    def _request(self, day: date, deadline: float) -> bytes:
        timeout = self.settings.fetch.timeout
        try:
            with self.client.stream(
                "GET", "/api/daily_papers", params={"date": day.isoformat()}
            ) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(_status(response), _retry_after(response))
                if response.status_code != 200:
                    raise FetchFailed(_status(response))
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DUMP_BYTES:
                        raise FetchFailed(
                            f"answer larger than {MAX_DUMP_BYTES // 2**20} MiB, not a papers list"
                        )
                    if time.monotonic() > deadline:
                        raise _Retryable(f"answer not complete within {timeout * 2:g} s")
                return bytes(body)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {timeout:g} s") from None
        except httpx.TransportError as error:
            raise _Retryable(f"cannot reach {self.settings.fetch.api}: {_reason(error)}") from None
        except httpx.TooManyRedirects:
            raise FetchFailed(f"more than {MAX_REDIRECTS} redirects") from None
        except httpx.HTTPError as error:  # a body that is not what its headers say, …
            raise FetchFailed(f"unreadable answer: {_reason(error)}") from None


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _reason(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:200]


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if re.fullmatch(r"[0-9]{1,12}", value):  # ASCII digits only: "²" is a digit to Python
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def fetch_days(
    db: Database,
    settings: Settings,
    end: date,
    days: int = 1,
    *,
    today: date,
    ingest: bool = True,
) -> FetchReport:
    """Fetch `end` and the `days` − 1 days before it (oldest first), save each answer, then ingest
    the saved files unless `ingest` is false (`run` ingests the whole seeds folder after)."""
    report = FetchReport()
    with PapersApi(settings) as client:
        for offset in range(days - 1, -1, -1):
            day = end - timedelta(days=offset)
            done = _fetch_day(client, settings.seeds_dir, day)
            record_fetch(db, day, done.error, done.papers)
            report.days.append(done)
    if ingest and report.saved:
        report.ingest = ingest_paths(db, report.saved, today)
    return report


def _fetch_day(client: PapersApi, seeds_dir: Path, day: date) -> DayFetch:
    path = seeds_dir / file_name(day)
    try:
        answer = client.day(day)
        parsed, _ = parse_api_dump(answer, "answer", path.name)
    except (FetchFailed, DumpError) as error:
        return DayFetch(day, error=str(error))
    if len(parsed.papers) > MAX_DUMP_PAPERS:  # ingest would refuse it: it is not saved
        return DayFetch(
            day, error=f"{len(parsed.papers):,} papers, more than a page lists; nothing stored"
        )
    if not parsed.papers and _saved_papers(path) > 0:
        return DayFetch(day, path=path, kept=True)
    try:
        write_atomically(path, answer)
    except OSError as error:
        return DayFetch(day, error=f"cannot write {path}: {error.strerror or error}")
    return DayFetch(day, path=path, papers=len(parsed.papers))


def _saved_papers(path: Path) -> int:
    """How many papers the answer saved earlier at `path` lists (0: none, or not readable)."""
    try:
        parsed, _ = parse_api_dump(path.read_bytes(), str(path), path.name)
    except (OSError, DumpError):
        return 0
    return len(parsed.papers)
