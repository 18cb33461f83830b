"""The shortcuts for big lists give what the plain path gives: worker processes write the same
files as rendering in-process, a real run streamed in small batches sends every digest exactly
once, and the benchmark's own code path runs end to end at a small N."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import subprocess
import sys
from datetime import date

import pytest
from sqlalchemy import func, select

from bench.synthetic import write_list as write_synthetic
from newsletter.config import load_settings
from newsletter.delivery import workers
from newsletter.digests import daily
from newsletter.digests.daily import run_day
from newsletter.store.db import SENT, Database, Digest

from .conftest import ROOT, SECRET, SEEDS, TODAY
from .smtp_server import FaultyHandler, SmtpServer

MAR_11 = date(2026, 3, 11)


def prepare(workdir, subscribers):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    return write_synthetic(workdir / "subscribers" / "list.csv", subscribers)


def test_worker_processes_write_the_same_files_as_in_process(env, workdir, monkeypatch):
    prepare(workdir, 150)
    monkeypatch.setattr(workers, "POOL_THRESHOLD", 1)
    outputs = {}
    for count in (0, 2):
        settings = load_settings({**env, "NEWSLETTER_WORKERS": str(count)})
        database = Database(f"sqlite:///{workdir / f'w{count}.db'}")
        outbox = workdir / f"outbox-{count}"
        summary = run_day(database, settings, MAR_11, today=TODAY, dry_run=True, outbox_dir=outbox)
        database.close()
        files = sorted((outbox / "2026-03-11").glob("*.eml"))
        assert summary.written == len(files) > 100
        outputs[count] = {path.name: path.read_bytes() for path in files}
    assert outputs[0] == outputs[2]  # byte for byte, in both the names and the contents


@pytest.mark.both_backends
def test_a_real_run_streamed_in_small_batches_sends_every_digest_once(
    env, workdir, db, monkeypatch
):
    prepare(workdir, 120)
    monkeypatch.setattr(workers, "POOL_THRESHOLD", 1)
    monkeypatch.setattr(daily, "OUTBOX_BATCH", 7)  # many claims, the last one not full
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        settings = load_settings(
            {
                **env,
                "NEWSLETTER_SMTP_HOST": "127.0.0.1",
                "NEWSLETTER_SMTP_PORT": str(server.port),
                "NEWSLETTER_SMTP_SECURITY": "none",
                "NEWSLETTER_SECRET_KEY": SECRET,
                "NEWSLETTER_WORKERS": "2",
            }
        )
        summary = run_day(db, settings, MAR_11, today=TODAY, dry_run=False)
        again = run_day(db, settings, MAR_11, today=TODAY, dry_run=False)
    counts = handler.counts()
    assert summary.sent == len(counts) > 90 and set(counts.values()) == {1}
    assert (summary.pending, again.sent, again.already_sent) == (0, 0, summary.sent)
    with db.session() as session:
        stored = session.execute(select(Digest.state, func.count()).group_by(Digest.state)).all()
    assert stored == [(SENT, summary.sent)]
    for address, raw in handler.received[:5]:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == address
        assert message["Subject"].startswith("Papers for Mar 11, 2026")


def test_the_benchmark_runs_end_to_end_at_a_small_size(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--sizes", "40", "--sink", "aiosmtpd"]
        + ["--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(output.read_text())["sizes"]
    stages = entry["stages"]
    assert set(stages["seconds"]) == {
        *("ingest", "sync", "select_rank", "render", "mime"),
        *("delivery", "delivery_library_data"),
    }
    assert stages["digests"] + stages["skipped"] + stages["not_due"] == 40
    assert stages["delivered"] == entry["run"]["digests"] == entry["dry_run"]["digests"]
    assert entry["dry_run"]["peak_rss_mb"] > 0
    assert "whole real run" in done.stdout and "ms/digest" in done.stdout
