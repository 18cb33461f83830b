"""APScheduler (3.x) wiring around the daily run: a cron trigger at NEWSLETTER_SEND_AT in
NEWSLETTER_TIMEZONE (DST-correct: the wall-clock time stays, the UTC time moves).

Each tick ingests, syncs and runs for the local date. Missed ticks are coalesced into one and
still run within the grace time; at most one tick runs at a time. SIGINT or SIGTERM parks the run
in progress (messages in flight finish, the rest stays pending) and stops the scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from .bounces.mailboxes import fetch_imap
from .config import Settings
from .digests.daily import run_day
from .errors import NewsletterError
from .store.db import Database

log = logging.getLogger("newsletter.schedule")
MISFIRE_GRACE_SECONDS = 6 * 3600  # a machine that slept through 07:00 still sends by 13:00


def daily_trigger(settings: Settings) -> CronTrigger:
    hour, minute = (int(part) for part in settings.send_at.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=settings.tz)


def next_run(settings: Settings, now: datetime | None = None) -> datetime:
    """When the scheduler fires next, in the configured time zone."""
    now = now or datetime.now(settings.tz)
    fire = daily_trigger(settings).get_next_fire_time(None, now)
    if fire is None:  # a daily cron trigger always fires again
        raise RuntimeError(f"the daily trigger at {settings.send_at} never fires")
    return fire


def make_tick(
    db: Database,
    settings: Settings,
    *,
    dry_run: bool,
    outbox_dir: Path | None,
    stop: threading.Event,
) -> Callable[[], None]:
    def tick() -> None:
        day = datetime.now(settings.tz).date()
        log.info("tick: running %s%s", day.isoformat(), " (dry-run)" if dry_run else "")
        if settings.bounces.imap_url:  # the mailbox first, so no digest goes to a dead address
            _read_bounces(db, settings)
        try:
            summary = run_day(
                db, settings, day, today=day, dry_run=dry_run, outbox_dir=outbox_dir, stop=stop
            )
        except NewsletterError as error:
            log.error("run %s failed: %s", day.isoformat(), error)
            return
        for warning in summary.warnings:
            log.warning("%s", warning)
        if summary.unreachable:
            log.error("%s; %s", summary.line(), summary.unreachable)
        else:
            log.info("%s", summary.line())

    return tick


def _read_bounces(db: Database, settings: Settings) -> None:
    """Bounces and complaints from the IMAP mailbox; a mailbox that cannot be read is logged
    and the run goes on."""
    try:
        report = fetch_imap(db, settings)
    except NewsletterError as error:
        log.error("bounces: %s", error)
        return
    for error in report.errors:
        log.warning("bounces: %s", error)
    log.info("bounces: %s", report.summary)


def create_scheduler(
    db: Database,
    settings: Settings,
    *,
    dry_run: bool = False,
    outbox_dir: Path | None = None,
    scheduler_class: type[BaseScheduler] = BlockingScheduler,
    trigger: BaseTrigger | None = None,
) -> tuple[BaseScheduler, threading.Event]:
    """A scheduler with the daily job, and the event that parks a run in progress."""
    stop = threading.Event()
    scheduler = scheduler_class(
        timezone=settings.tz,
        job_defaults={
            "coalesce": True,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            "max_instances": 1,
        },
    )
    scheduler.add_job(
        make_tick(db, settings, dry_run=dry_run, outbox_dir=outbox_dir, stop=stop),
        trigger or daily_trigger(settings),
        id="daily-digest",
        name="daily digest",
    )
    return scheduler, stop


def run_forever(
    db: Database, settings: Settings, *, dry_run: bool, outbox_dir: Path | None
) -> None:
    """`newsletter schedule`: run in the foreground until SIGINT or SIGTERM."""
    scheduler, stop = create_scheduler(db, settings, dry_run=dry_run, outbox_dir=outbox_dir)

    def shut_down(signum: int, _frame: Any) -> None:
        log.info("%s: parking the run in progress and stopping", signal.Signals(signum).name)
        stop.set()
        with contextlib.suppress(SchedulerNotRunningError):
            scheduler.shutdown(wait=True)

    def started(_event: object) -> None:
        fire = next_run(settings)
        log.info(
            "scheduler started: daily at %s %s; next run %s (%s UTC)",
            settings.send_at,
            settings.timezone,
            fire.isoformat(),
            fire.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        )

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    scheduler.add_listener(started, EVENT_SCHEDULER_STARTED)
    if not stop.is_set():
        scheduler.start()
    log.info("scheduler stopped")
