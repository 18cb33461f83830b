"""One daily run: ingest → sync → select and rank (compose) → render → deliver, and its summary.

A real run stores every digest as a pending outbox row first, then sends them (and any unsent
digest of the days before) over SMTP, recording each outcome as it happens. A dry-run writes one
`.eml` per digest under `outbox/<date>/` and stores no digest, so it changes nothing a later real
run depends on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from ..config import Settings, SmtpSettings
from ..delivery.eml import EmlFolder
from ..delivery.smtp import (
    DEFERRED_OUTCOME,
    FAILED_OUTCOME,
    SENT_OUTCOME,
    DeliveryReport,
    Envelope,
    Outcome,
    SmtpSender,
)
from ..delivery.workers import MessageMaker, digest_content
from ..errors import NewsletterError, SubscriberListError
from ..files import write_atomically
from ..ingest.dumps import DAYS_AHEAD
from ..ingest.fetch import fetch_days
from ..ingest.intake import IngestReport, ingest_paths
from ..mail.outgoing import Outgoing
from ..mail.render import Renderer, day_label
from ..mail.tokens import mailbox_address, scheduled_time, verp_address
from ..store.db import DEFERRED, FAILED, PENDING, SENT, Database, utcnow
from ..store.leases import Heartbeat, holder_name
from ..store.outbox import (
    OUTBOX_BATCH,
    OutcomeRecorder,
    claim_batch,
    count_unsent,
    others_at_work,
    release_claims,
    renew_claims,
)
from ..store.papers import latest_dump_date
from ..store.runs import finish_record, start_record
from ..subscribers.lists import load_lists
from ..subscribers.sync import SyncReport, sync_subscribers
from .compose import StoredDigests, compose_day, compose_for, compose_shared

log = logging.getLogger(__name__)

_STATE_OF = {SENT_OUTCOME: SENT, DEFERRED_OUTCOME: DEFERRED, FAILED_OUTCOME: FAILED}

# Write errors that concern one file only: the dry-run goes on with the others.
ONE_FILE_ERRORS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


@dataclass
class RunSummary:
    day: date
    dry_run: bool
    written: int = 0
    sent: int = 0
    deferred: int = 0
    pending: int = 0  # left unsent because the server could not be reached
    unreachable: str | None = None
    stopped: bool = False  # asked to stop: the rest was parked as pending
    skipped: int = 0
    not_due: int = 0
    already_sent: int = 0
    failed: int = 0
    outbox: Path | None = None
    ingest: IngestReport | None = None
    sync: SyncReport | None = None
    prepared: bool = False  # seeds ingested and lists synced (or refused) already
    bad_rows: list[str] = field(default_factory=list)  # why the lists were refused, if they were
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase

    def counts(self) -> dict[str, int]:
        names = (
            "written",
            "sent",
            "deferred",
            "failed",
            "skipped",
            "not_due",
            "already_sent",
            "pending",
        )
        return {name: getattr(self, name) for name in names} | {"bad_rows": len(self.bad_rows)}

    def line(self) -> str:
        if self.dry_run:
            parts = [f"{self.written} digest(s) written"]
        else:
            parts = [f"{self.sent} sent", f"{self.deferred} deferred", f"{self.failed} failed"]
        parts += [f"{self.skipped} skipped (nothing relevant)", f"{self.not_due} not due"]
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent")
        if self.dry_run and self.failed:
            parts.append(f"{self.failed} failed earlier")
        if self.pending:
            parts.append(f"{self.pending} left pending")
        mode = "dry-run" if self.dry_run else "run"
        return f"{mode} {self.day.isoformat()}: " + ", ".join(parts)


def prepare(db: Database, settings: Settings, today: date, summary: RunSummary) -> None:
    """Ingest the seeds folder (when there is one) and sync the subscriber lists. The lists are
    the source of truth for who is subscribed: a missing or empty folder is an error, never a
    reason to delist everyone. Lists with a bad row are refused whole (nothing of them is
    stored), and the day's mail goes to the readers of the last good lists: one bad row must
    not stop everyone's mail. The run says which rows, and ends in an error after delivering."""
    if settings.seeds_dir.is_dir():
        summary.ingest = ingest_paths(db, [settings.seeds_dir], today)
    try:
        rows = load_lists([settings.subscribers_dir])
    except SubscriberListError as error:
        summary.bad_rows = list(error.problems)
        summary.warnings.extend(error.problems)
        summary.warnings.append(
            f"the subscriber lists were not synced ({len(error.problems)} bad row(s)): this run "
            "mails the readers of the last lists that were"
        )
        return
    summary.sync = sync_subscribers(db, rows)


# How far a run's writing or sending is: (what, done, of how many). The command line draws it.
Progress = Callable[[str, int, int], None]
WRITING, SENDING = "Writing digests", "Sending digests"


def _unheard(_what: str, _done: int, _total: int) -> None:
    pass


LATEST = "latest"  # `run --date latest`: the newest dump, once the seeds folder is ingested


def run_day(
    db: Database,
    settings: Settings,
    day: date | str,
    *,
    today: date,
    dry_run: bool,
    outbox_dir: Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """The daily job for `day`. Several real runs of one date (cron and the scheduler, or
    senders on several machines sharing a database) cooperate: one selects the date's digests
    while the others wait, then each claims and sends batches until none is left. Setting `stop`
    parks the run: messages in flight finish, the rest stays pending for the next run.
    `progress` hears how far writing or sending is (the command line draws a bar with it)."""
    progress = progress or _unheard
    if not dry_run:
        settings.require_sending()
    fetched = None
    if settings.fetch.enabled:  # a failed day is reported and the run sends from what is stored
        fetched = fetch_days(
            db, settings, today if day == LATEST else day, today=today, ingest=False
        )
    summary = RunSummary(today, dry_run)  # (its day is known below)
    if day == LATEST:  # the newest dump may not be stored yet: ingest first, then look
        prepare(db, settings, today, summary)
        summary.prepared = True
        day = latest_dump_date(db, today + timedelta(days=DAYS_AHEAD))
    if not isinstance(day, date):
        raise TypeError(f"run_day: a date or {LATEST!r}, not {day!r}")
    summary.day = day
    if fetched is not None:
        summary.warnings.extend(failed.line for failed in fetched.failed)
    holder = holder_name()
    record = start_record(db, day, dry_run, holder)
    outcome = "crashed"
    try:
        _run(db, settings, summary, today, outbox_dir, progress, stop, holder)
        outcome = "unreachable" if summary.unreachable else "stopped" if summary.stopped else "ok"
        log.debug("run %s took %s (seconds per phase)", day.isoformat(), summary.seconds)
    finally:
        finish_record(db, record, outcome, summary.counts())
    return summary


def _run(
    db: Database,
    settings: Settings,
    summary: RunSummary,
    today: date,
    outbox_dir: Path | None,
    progress: Progress,
    stop: threading.Event | None,
    holder: str,
) -> None:
    day = summary.day
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[phase] = round(now - clock, 3)
        clock = now

    if not summary.prepared:  # (prepared already for `--date latest`)
        prepare(db, settings, today, summary)
    lap("ingest_sync")
    if summary.ingest:
        summary.warnings.extend(summary.ingest.errors)
    if summary.dry_run:
        composition = compose_day(db, settings, day, persist=False)
    else:
        shared = compose_shared(db, settings, day, holder, stop)
        if shared is None:  # asked to stop while another sender was selecting
            summary.stopped = True
            return
        composition = shared
    lap("select_rank")
    summary.skipped = composition.skipped
    summary.not_due = composition.not_due
    summary.already_sent = composition.already_sent
    summary.failed = composition.failed
    if summary.dry_run:
        summary.written = _write_files(
            settings, summary, composition.outgoing, outbox_dir, progress
        )
        lap("write")
        return
    composition.outgoing.clear()  # the stored rows are claimed in batches as they are sent
    report = send_digests(db, settings, day, progress, stop, holder)
    lap("send")
    summary.sent = report.outcomes.get(SENT_OUTCOME, 0)
    summary.deferred = report.outcomes.get(DEFERRED_OUTCOME, 0)
    summary.failed += report.outcomes.get(FAILED_OUTCOME, 0)
    summary.unreachable = report.unreachable
    halted = report.unreachable is not None or (stop is not None and stop.is_set())
    summary.pending = count_unsent(db, day, (PENDING,)) if halted else 0
    summary.stopped = stop is not None and stop.is_set() and summary.pending > 0


def _write_files(
    settings: Settings,
    summary: RunSummary,
    digests: list[Outgoing],
    outbox_dir: Path | None,
    progress: Progress,
) -> int:
    """A dry-run's messages as `.eml` files; how many were written. A file that cannot be
    written is a warning; an outbox that cannot be written to stops the run."""
    day = summary.day
    writer = EmlFolder(outbox_dir or settings.outbox_dir)
    summary.outbox = writer.directory / day.isoformat()
    written = 0
    sent_at = scheduled_time(settings, day)
    progress(WRITING, 0, len(digests))
    with MessageMaker(settings, len(digests), sent_at) as maker:
        for done, (outgoing, _, message) in enumerate(maker.stream([digests]), start=1):
            progress(WRITING, done, len(digests))
            # What the receiving server will write at the top: the envelope sender.
            sender = verp_address(settings, outgoing.subscriber_id, outgoing.day)
            try:
                writer.write(
                    day, outgoing.email, b"Return-Path: <%s>\r\n" % sender.encode() + message
                )
            except OSError as error:
                name = writer.path_for(day, outgoing.email)
                if error.errno not in ONE_FILE_ERRORS:  # the outbox itself: stop here
                    raise NewsletterError(
                        f"outbox {writer.directory}: cannot write {name.name}: "
                        f"{error.strerror or error}"
                    ) from None
                summary.warnings.append(f"{name}: not written: {error.strerror}")
                continue
            written += 1
    return written


def smtp_options(settings: Settings) -> SmtpSettings:
    """The SMTP settings with the name we greet servers with worked out (`helo_name`)."""
    return replace(settings.smtp, helo=settings.helo_name)


def send_digests(
    db: Database,
    settings: Settings,
    day: date,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    holder: str | None = None,
) -> DeliveryReport:
    """Claim, render and send the unsent stored digests due by `day` a batch at a time, rendering
    on every core while the connections send and recording each outcome the moment it is known.
    Other senders of the date may be claiming beside us; when nothing is free but some are still
    claimed by a live sender, wait: if it dies, its claims come back to us once they expire."""
    holder = holder or holder_name()
    progress = progress or _unheard
    expected = count_unsent(db, day)
    subjects: dict[int, str] = {}
    done = 0

    batches = _claimed_batches(db, settings, day, holder, StoredDigests(db, day), stop)
    with (
        MessageMaker(settings, expected) as maker,
        OutcomeRecorder(db) as recorder,
        Heartbeat(lambda: renew_claims(db, holder, settings.claim_lease), settings.claim_lease / 3),
    ):
        progress(SENDING, 0, expected)

        async def envelopes() -> AsyncIterator[Envelope]:
            async for outgoing, subject, message in maker.astream(batches):
                if stop is not None and stop.is_set():
                    return  # parked: what is claimed and unsent goes back to pending below
                if outgoing.digest_id is None:
                    raise RuntimeError("a digest to send over SMTP is stored first")
                subjects[outgoing.digest_id] = subject
                to = mailbox_address(outgoing.email)
                sender = verp_address(settings, outgoing.subscriber_id, outgoing.day)
                yield Envelope(outgoing.digest_id, sender, to, message)

        def record(envelope: Envelope, outcome: Outcome) -> None:
            recorder.record(
                envelope.key,
                _STATE_OF[outcome.kind],
                attempts=outcome.attempts,
                reply=outcome.reply,
                error=outcome.error,
                subject=subjects.pop(envelope.key, ""),
            )
            nonlocal done
            done += 1
            progress(SENDING, done, expected)

        try:
            sender = SmtpSender(smtp_options(settings))
            return asyncio.run(sender.send_all(envelopes(), record))
        finally:
            release_claims(db, holder)


async def _claimed_batches(
    db: Database,
    settings: Settings,
    day: date,
    holder: str,
    loader: StoredDigests,
    stop: threading.Event | None,
) -> AsyncIterator[list[Outgoing]]:
    """Batches of digests claimed for this sender; an empty batch while nothing is free but
    others still hold claims, so that the maker hands out what it has and then waits."""
    started = utcnow()

    def claim(after: int) -> list[int]:
        return claim_batch(db, day, holder, started, OUTBOX_BATCH, settings.claim_lease, after)

    after = 0  # go on from the last batch; from the start again only when nothing is left
    while not (stop is not None and stop.is_set()):
        ids = claim(after)
        if not ids and after:
            after = 0
            continue
        # Nothing free and nobody else at work: done, after one more try for claims that ran
        # out between the two looks (they are free now).
        if not ids and not others_at_work(db, day, holder) and not (ids := claim(0)):
            return
        if ids:
            after = ids[-1]
            yield loader.load(ids)
        else:
            yield []


def preview(
    db: Database, settings: Settings, email: str, day: date, *, today: date, directory: Path
) -> Path:
    """Render one subscriber's digest for `day` to an `.html` file; stores no digest. (Lists
    with a bad row stop a preview: no mail waits on it, and it would show stale preferences.)"""
    prepared = RunSummary(day, dry_run=True)
    prepare(db, settings, today, prepared)
    if prepared.bad_rows:
        raise SubscriberListError(prepared.bad_rows)
    outgoing = compose_for(db, settings, email, day)
    if outgoing is None:
        raise NewsletterError(
            f"{email} would get no digest on {day_label(day)}: no new paper matches their topics"
        )
    rendered = Renderer().render(digest_content(settings, outgoing))
    path = EmlFolder(directory).path_for(day, outgoing.email, ".html")
    write_atomically(path, rendered.html.encode("utf-8"))
    return path
