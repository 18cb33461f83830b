"""Delivery throughput: one real run of N digests to a local aiosmtpd sink in its own process,
with 1 and with 4 SMTP connections. Prints messages per second and writes bench-delivery.json.

    python -m bench.delivery [--subscribers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from newsletter.config import load_settings
from newsletter.db import Database
from newsletter.run import run_day

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 3, 11)
TOPICS = [
    "neural networks",
    "language models",
    "vision transformers;quantization",
    "graph neural networks",
    "diffusion models",
    "reinforcement learning;robotics",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        time.sleep(0.05)
    raise RuntimeError("the aiosmtpd sink did not start")


def one_run(work: Path, subscribers: int, connections: int, port: int) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    (work / "subscribers").mkdir(parents=True)
    shutil.copytree(ROOT / "seeds", work / "seeds")
    rows = "\n".join(f"reader{n}@example.org,{TOPICS[n % len(TOPICS)]}" for n in range(subscribers))
    (work / "subscribers" / "list.csv").write_text(f"email,topics\n{rows}\n")
    settings = load_settings(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
            "NEWSLETTER_SEEDS_DIR": str(work / "seeds"),
            "NEWSLETTER_SUBSCRIBERS_DIR": str(work / "subscribers"),
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(port),
            "NEWSLETTER_SMTP_SECURITY": "none",
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_SMTP_CONNECTIONS": str(connections),
        }
    )
    db = Database(settings.database_url)
    started = time.perf_counter()
    summary = run_day(db, settings, DAY, today=DAY, dry_run=False)
    elapsed = time.perf_counter() - started
    db.close()
    return {
        "connections": connections,
        "sent": summary.sent,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(summary.sent / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench-delivery.json"))
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as folder:
            results = [one_run(Path(folder) / f"c{c}", args.subscribers, c, port) for c in (1, 4)]
    finally:
        sink.terminate()
        sink.wait()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"delivery of a whole run (ingest, sync, compose, render, send) on {machine}")
    for r in results:
        print(
            f"  {r['connections']} connection(s): {r['sent']} digests in {r['seconds']} s "
            f"= {r['messages_per_second']} messages/s"
        )
    args.output.write_text(json.dumps({"machine": machine, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
