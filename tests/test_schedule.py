"""The daily job that runs itself: the scheduler fires, DST, one run per date across processes,
a clean stop, `status`, and no secrets in what it prints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from newsletter.config import load_settings
from newsletter.schedule import create_scheduler, next_run
from newsletter.store.leases import LeaseHeld, acquire

from .conftest import SECRET, SEEDS, abstract_about, make_dump, write_list
from .smtp_server import FaultyHandler, SmtpServer
from .test_deliver import smtp_env, start_run


def test_the_scheduler_fires_and_writes_the_days_digests(db, settings, workdir):
    today = datetime.now(settings.tz).date()
    (workdir / "seeds" / "today.txt").write_text(
        make_dump(
            f"{today:%b} {today.day}",
            [("Graph Neural Networks Today", abstract_about("graph neural networks"))],
        )
    )
    write_list(
        workdir / "subscribers", "l.csv", "email,topics\nada@example.org,graph neural networks\n"
    )
    scheduler, _ = create_scheduler(
        db,
        settings,
        dry_run=True,
        scheduler_class=BackgroundScheduler,
        trigger=DateTrigger(datetime.now(settings.tz) + timedelta(seconds=1)),
    )
    scheduler.start()
    target = workdir / "outbox" / today.isoformat() / "ada@example.org.eml"
    try:
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    assert target.exists()


@pytest.mark.parametrize(
    "now, expected_utc",
    [
        (datetime(2026, 3, 27, 12, 0), datetime(2026, 3, 28, 6, 0)),  # CET, UTC+1
        (datetime(2026, 3, 28, 12, 0), datetime(2026, 3, 29, 5, 0)),  # CEST from Mar 29
        (datetime(2026, 10, 24, 12, 0), datetime(2026, 10, 25, 6, 0)),  # CET again from Oct 25
        (datetime(2026, 10, 23, 12, 0), datetime(2026, 10, 24, 5, 0)),
    ],
)
def test_berlin_seven_oclock_on_both_sides_of_a_dst_change(env, now, expected_utc):
    settings = load_settings(
        {**env, "NEWSLETTER_SEND_AT": "07:00", "NEWSLETTER_TIMEZONE": "Europe/Berlin"}
    )
    fire = next_run(settings, now.replace(tzinfo=ZoneInfo("Europe/Berlin")))
    assert (fire.hour, fire.minute) == (7, 0)
    assert fire.astimezone(UTC).replace(tzinfo=None) == expected_utc


def test_the_lease_admits_one_holder_and_frees_a_dead_ones(db):
    day = date(2026, 3, 11)
    lease = acquire(db, day, "this-host:1:a")
    with pytest.raises(LeaseHeld):
        acquire(db, day, "this-host:2:b")
    lease.release()
    expiring = acquire(db, day, "elsewhere:1:c", seconds=-1)  # already expired
    acquire(db, day, "elsewhere:2:d").release()
    assert expiring.holder == "elsewhere:1:c"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    acquire(db, day, f"{socket.gethostname()}:{dead.pid}:e")
    acquire(db, day, "x:3:f")  # the holder's process is gone: taken over at once


# (on SQLite: two senders sharing a date on PostgreSQL are test_cluster's)
def test_two_concurrent_runs_send_each_digest_once(env, workdir, cli):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    rows = "\n".join(f"reader{n:02d}@example.org,neural networks" for n in range(20))
    write_list(workdir / "subscribers", "l.csv", f"email,topics\n{rows}\n")
    assert cli("ingest").code == 0 and cli("subscribers").code == 0
    handler = FaultyHandler(delay=0.3)
    with SmtpServer(handler) as server:
        runs = [start_run(workdir, env, server.port) for _ in range(2)]
        outputs = [process.communicate(timeout=120) for process in runs]
    assert [process.returncode for process in runs] == [0, 0]
    counts = handler.counts()
    assert len(counts) == 20 and set(counts.values()) == {1}
    lines = [out.strip().splitlines()[-1] for out, _ in outputs]
    print("concurrent runs:", lines)
    sent = [int(line.split(": ")[1].split(" sent")[0]) for line in lines]
    assert sum(sent) == 20  # they shared the work (cron and the scheduler, say): no one twice


def test_schedule_prints_the_next_run_and_stops_cleanly_without_leaking_secrets(env, workdir):
    secret_env = {
        **os.environ,
        **env,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SMTP_PASSWORD": "hunter2-password",
        "NEWSLETTER_TIMEZONE": "Europe/Berlin",
        "NEWSLETTER_SEND_AT": "07:00",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--verbose", "schedule"],
        cwd=workdir,
        env=secret_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = time.monotonic()
    lines: list[str] = []
    while time.monotonic() - started < 30:
        line = process.stdout.readline()
        lines.append(line)
        if "next run" in line:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "daily at 07:00 Europe/Berlin; next run" in output and "07:00:00+01:00" in output
    assert "scheduler stopped" in output
    assert "very-secret-key-123" not in output and "hunter2-password" not in output
    assert "very-secret" not in repr(load_settings(secret_env))


@pytest.mark.both_backends
def test_status_shows_runs_unsent_digests_and_suspended_subscribers(env, workdir, cli):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    write_list(
        workdir / "subscribers",
        "l.csv",
        "email,topics\ngone@example.org,neural networks\nok@example.org,neural networks\n",
    )
    handler = FaultyHandler(always_rcpt={"gone@example.org": "550 5.1.1 No such user"})
    with SmtpServer(handler) as server:
        for day in ("2026-03-11", "2026-03-17", "2026-08-08"):
            assert cli("run", "--date", day, extra_env=smtp_env({}, server.port)).code == 0
    result = cli("status")
    assert result.code == 0
    assert result.stdout.count(" run ") + result.stdout.count("│ run") >= 3
    assert (
        "2026-08-08" in result.stdout and "sent 1" in result.stdout and "failed 1" in result.stdout
    )
    assert "digests: 0 pending, 0 deferred, 3 failed" in result.stdout
    assert "suspended subscribers: gone@example.org (3 failed deliveries)" in result.stdout
    assert "next scheduled run: " in result.stdout
