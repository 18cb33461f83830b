"""The whole pipeline at N synthetic subscribers: each stage on its own, whole runs, and the SMTP
baseline of Postfix's smtp-source. Prints a table and writes the results as JSON.

    python -m bench.pipeline [--sizes 1000,10000,100000] [--deliver-up-to 10000] [--output FILE]

For each N, three child processes (so that each reports its own peak memory):
- stages: ingest, sync, select+rank+store, render, MIME, delivery of N messages to the sink (and
  again with aiosmtplib's own DATA instead of `newsletter.smtpdata`), each timed separately
  (render and MIME on one core, as the library calls them);
- a real run (`run_day`, everything from ingest to the last SMTP reply) against the sink, for
  N up to --deliver-up-to;
- a dry-run (`run_day --dry-run`, every `.eml` written to disk).
The sink is a separate process: Postfix's `smtp-sink` when installed (it is the faster of the two),
else aiosmtpd's Sink. smtp-source then sends as many messages of our mean size to the same sink
(`smtp-source -s 8 -m N -l SIZE`), and our rate is printed as a ratio of its rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 3, 11)  # the first dump: 155 new papers, the biggest day of the seeds
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SAMPLE = 200  # distinct messages the delivery stage cycles through


# --- the sink ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited at once ({process.args[0]})")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the SMTP sink did not start")


@contextmanager
def sink(kind: str) -> Iterator[tuple[str, int]]:
    """A local SMTP sink in its own process: (which, port)."""
    if kind == "auto":
        kind = "smtp-sink" if os.access(SMTP_SINK, os.X_OK) else "aiosmtpd"
    port = free_port()
    if kind == "smtp-sink":
        command = [SMTP_SINK, "-c", "-m", "256", f"127.0.0.1:{port}", "1024"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]
    else:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
        command += ["-c", "aiosmtpd.handlers.Sink"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, process)
        yield kind, port
    finally:
        process.terminate()
        process.wait()


def smtp_source(port: int, messages: int, size: int) -> dict[str, float] | None:
    """Postfix's own load generator against the same sink: the baseline rate."""
    if not os.access(SMTP_SOURCE, os.X_OK):
        return None
    command = [SMTP_SOURCE, "-s", "8", "-m", str(messages), "-l", str(size)]
    command += ["-f", "bench@example.org", "-t", "reader@example.org", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return {
        "messages": messages,
        "size": size,
        "seconds": round(seconds, 3),
        "per_second": round(messages / seconds, 1),
    }


# --- child processes --------------------------------------------------------------------------


def _settings(work: Path, port: int) -> Any:
    from newsletter.config import load_settings

    return load_settings(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
            "NEWSLETTER_SEEDS_DIR": str(ROOT / "seeds"),
            "NEWSLETTER_SUBSCRIBERS_DIR": str(work / "subscribers"),
            "NEWSLETTER_OUTBOX_DIR": str(work / "outbox"),
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(port),
            "NEWSLETTER_SMTP_SECURITY": "none",
            "NEWSLETTER_SECRET_KEY": "bench-" + "0" * 40,
            "NEWSLETTER_SENDER": "Trending Papers <papers@example.org>",
        }
    )


class MemoryWatch:
    """Peak resident memory of this process and its worker processes together, sampled every
    50 ms from /proc (a worker's own ru_maxrss would count its parent's pages from the fork)."""

    def __init__(self) -> None:
        self.peak_total = self.peak_own = self.peak_worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss_kb(pid: int | str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    @staticmethod
    def _children() -> list[str]:
        found: list[str] = []
        for task in Path("/proc/self/task").glob("*/children"):
            with suppress(OSError):
                found += task.read_text().split()
        return found

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            own = self._rss_kb("self")
            workers = [self._rss_kb(pid) for pid in self._children()]
            self.peak_own = max(self.peak_own, own)
            self.peak_worker = max([self.peak_worker, *workers])
            self.peak_total = max(self.peak_total, own + sum(workers))

    def report(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # exact, between samples too
        return {
            "peak_rss_mb": round(max(own, self.peak_own) / 1024, 1),
            "peak_rss_worker_mb": round(self.peak_worker / 1024, 1),
            "peak_rss_total_mb": round(max(self.peak_total, own) / 1024, 1),
        }


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def child_stages(work: Path, subscribers: int, port: int, deliver: bool) -> dict[str, Any]:
    from bench.synthetic import write_list
    from newsletter.delivery.smtp import Envelope, SmtpSender
    from newsletter.delivery.workers import MessageFactory, links_of
    from newsletter.digests.compose import compose_day, stored_digests
    from newsletter.digests.daily import smtp_options
    from newsletter.ingest.intake import ingest_paths
    from newsletter.mail.signing import sign_dkim
    from newsletter.store.db import Database
    from newsletter.subscribers.lists import load_lists
    from newsletter.subscribers.sync import sync_subscribers

    topic_sets = write_list(work / "subscribers" / "list.csv", subscribers)
    settings = _settings(work, port)
    db = Database(settings.database_url)
    clock = _Clock()
    with clock.stage("ingest"):
        ingest_paths(db, [settings.seeds_dir], DAY)
    with clock.stage("sync"):
        sync_subscribers(db, load_lists([settings.subscribers_dir]))
    with clock.stage("select_rank"):
        composition = compose_day(db, settings, DAY, persist=True)
    factory = MessageFactory(settings)
    sent_at = datetime.now(settings.tz)
    sample: list[bytes] = []
    digests = size = 0
    for batch in stored_digests(db, settings, DAY):
        for outgoing in batch:
            with clock.stage("render"):  # once per digest shape, then from the cache
                shape = factory.shape_for(outgoing)
            with clock.stage("mime"):  # every message: headers, own values, DKIM if configured
                message = sign_dkim(
                    settings,
                    shape.message(
                        factory.letterhead,
                        outgoing.email,
                        outgoing.name,
                        outgoing.message_id,
                        sent_at,
                        links_of(settings, outgoing),
                    ),
                )
            digests += 1
            size += len(message)
            if len(sample) < SAMPLE:
                sample.append(message)
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "topic_sets": topic_sets,
        "digests": digests,
        "skipped": composition.skipped,
        "not_due": composition.not_due,
        "mean_size": size // max(digests, 1),
    }
    if deliver and sample:

        async def envelopes() -> AsyncIterator[Envelope]:
            for n in range(digests):
                yield Envelope(
                    n, settings.sender_address, f"reader{n}@example.org", sample[n % len(sample)]
                )

        # The same messages again with aiosmtplib's own DATA: what `newsletter.smtpdata` buys.
        for stage, fast_data in (("delivery", True), ("delivery_library_data", False)):
            sender = SmtpSender(smtp_options(settings), fast_data=fast_data)
            with clock.stage(stage):
                report = asyncio.run(sender.send_all(envelopes(), lambda _e, _o: None))
            result.setdefault("delivered", report.outcomes.get("sent", 0))
    db.close()
    result["seconds"] = {k: round(v, 3) for k, v in clock.seconds.items()}
    result["ms_per_digest"] = {
        k: round(v * 1000 / max(digests, 1), 4) for k, v in clock.seconds.items()
    }
    return result


def child_run(work: Path, subscribers: int, port: int, dry_run: bool) -> dict[str, Any]:
    from bench.synthetic import write_list
    from newsletter.digests.daily import run_day
    from newsletter.store.db import Database

    write_list(work / "subscribers" / "list.csv", subscribers)
    settings = _settings(work, port)
    db = Database(settings.database_url)
    started = time.perf_counter()
    summary = run_day(db, settings, DAY, today=DAY, dry_run=dry_run)
    seconds = time.perf_counter() - started
    db.close()
    done = summary.written if dry_run else summary.sent
    return {
        "subscribers": subscribers,
        "dry_run": dry_run,
        "digests": done,
        "line": summary.line(),
        "seconds": round(seconds, 3),
        "per_second": round(done / seconds, 1),
        "ms_per_digest": round(seconds * 1000 / max(done, 1), 4),
        "phases": summary.seconds,
    }


def spawn(kind: str, subscribers: int, port: int, extra: list[str] | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh process with its own temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-", dir=os.environ.get("BENCH_TMP")) as folder:
        command = [
            sys.executable,
            "-m",
            "bench.pipeline",
            "--child",
            kind,
            "--subscribers",
            str(subscribers),
            "--port",
            str(port),
            "--work",
            folder,
        ]
        done = subprocess.run(command + (extra or []), cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bench child {kind} N={subscribers} failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])


# --- the driver -------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measure(sizes: list[int], deliver_up_to: int, sink_kind: str) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "day": DAY.isoformat(), "sizes": []}
    with sink(sink_kind) as (kind, port):
        results["sink"] = kind
        for n in sizes:
            deliver = n <= deliver_up_to
            entry: dict[str, Any] = {"subscribers": n}
            entry["stages"] = spawn("stages", n, port, ["--deliver"] if deliver else [])
            if deliver:
                entry["run"] = spawn("run", n, port)
                sent = entry["run"]["digests"]
                source = smtp_source(port, sent, entry["stages"]["mean_size"])
                if source:
                    entry["smtp_source"] = source
                    entry["ratio_to_smtp_source"] = round(
                        entry["run"]["per_second"] / source["per_second"], 3
                    )
                    sending = entry["run"]["phases"].get("send")
                    if sending:
                        entry["send_phase_ratio_to_smtp_source"] = round(
                            sent / sending / source["per_second"], 3
                        )
                    delivered = entry["stages"]["seconds"].get("delivery")
                    if delivered:
                        alone = entry["stages"]["delivered"] / delivered
                        entry["delivery_ratio_to_smtp_source"] = round(
                            alone / source["per_second"], 3
                        )
            entry["dry_run"] = spawn("run", n, port, ["--dry-run"])
            results["sizes"].append(entry)
            print_entry(entry)
    return results


def print_entry(entry: dict[str, Any]) -> None:
    stages = entry["stages"]
    print(
        f"\nN = {entry['subscribers']:,} subscribers, {stages['topic_sets']:,} distinct topic "
        f"sets -> {stages['digests']:,} digests ({stages['skipped']} with nothing relevant, "
        f"{stages['not_due']} weekly not due), mean message {stages['mean_size']:,} bytes"
    )
    print("  stage          total s   ms/digest")
    for name, seconds in stages["seconds"].items():
        print(f"  {name:<13}{seconds:>9.2f}{stages['ms_per_digest'][name]:>12.4f}")
    print(f"  peak RSS of the stages process: {stages['peak_rss_mb']:.0f} MB")
    for label in ("run", "dry_run"):
        if label in entry:
            r = entry[label]
            print(
                f"  whole {'real run' if label == 'run' else 'dry-run '}: {r['digests']:,} in "
                f"{r['seconds']:.1f} s = {r['per_second']:,.0f}/s ({r['ms_per_digest']:.3f} "
                f"ms/digest), peak RSS {r['peak_rss_total_mb']:.0f} MB in all (main "
                f"{r['peak_rss_mb']:.0f} MB, largest worker {r['peak_rss_worker_mb']:.0f} MB)"
            )
            phases = ", ".join(f"{name} {sec:.1f} s" for name, sec in r["phases"].items())
            print(f"      phases: {phases}")
    if "smtp_source" in entry:
        s = entry["smtp_source"]
        print(
            f"  smtp-source -s 8 -m {s['messages']} -l {s['size']}: {s['per_second']:,.0f}/s; "
            f"ours as a ratio of it: whole run {entry['ratio_to_smtp_source']:.2f}, its send "
            f"phase {entry.get('send_phase_ratio_to_smtp_source', 0):.2f}, delivery stage alone "
            f"{entry.get('delivery_ratio_to_smtp_source', 0):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--deliver-up-to", type=int, default=10000)
    parser.add_argument("--sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--child", choices=("stages", "run"), help=argparse.SUPPRESS)
    parser.add_argument("--subscribers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deliver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with MemoryWatch() as watch:
            if args.child == "stages":
                result = child_stages(args.work, args.subscribers, args.port, args.deliver)
            else:
                result = child_run(args.work, args.subscribers, args.port, args.dry_run)
        print(json.dumps(result | watch.report()))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"papers-digest pipeline benchmark on {machine()}")
    results = measure(sizes, args.deliver_up_to, args.sink)
    print(f"\nsink: {results['sink']}; results in {args.output}")
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
