"""Ranking cost against stored history: select+rank per digest with 1 day, 1 year and 3 years of
papers stored, the day's own papers (the seeds' first dump date) the same in each case.

    python -m bench.history [--subscribers 1000] [--years 0,1,3] [--output FILE]

The history is synthetic (`bench.synthetic.synthetic_paper`, `PAPERS_PER_DAY` a day, one dump a
day), stored before the day's window, so what changes between the cases is only how much lies in
the store. Each case composes every due digest (`compose_day`, nothing stored) three times and
keeps the fastest; the figure is seconds per due digest, and its ratio to the 1-day case.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.pipeline import DAY, ROOT, machine
from bench.synthetic import PAPERS_PER_DAY, synthetic_paper, write_list

DAYS_A_YEAR = 365


def store_history(db: Any, before: date, days: int, seed: int = 11) -> int:
    """`days` days of synthetic papers, one dump each, the last on the day before `before`:
    bulk INSERTs, as ingest would leave them (papers, dumps, appearances). Returns the papers."""
    from newsletter.store.db import Appearance, Dump, Paper, insert_in_batches
    from newsletter.text import normalize_title

    rng = random.Random(seed)
    dumps, papers, appearances = [], [], []
    serial = 0
    for back in range(days, 0, -1):
        day = before - timedelta(days=back)
        dump_id = len(dumps) + 1_000_000
        dumps.append(
            {
                "id": dump_id,
                "sha256": f"history-{day}",
                "filename": f"history-{day}",
                "dump_date": day,
                "paper_count": PAPERS_PER_DAY,
            }
        )
        for position in range(1, PAPERS_PER_DAY + 1):
            serial += 1
            title, abstract = synthetic_paper(rng, serial)
            paper_id = serial + 1_000_000
            papers.append(
                {
                    "id": paper_id,
                    "key": normalize_title(title),
                    "title": title,
                    "abstract": abstract,
                    "first_seen": day,
                }
            )
            appearances.append(
                {"paper_id": paper_id, "dump_id": dump_id, "seen_on": day, "position": position}
            )
    with db.session() as session:
        insert_in_batches(session, Dump.__table__, dumps)
        insert_in_batches(session, Paper.__table__, papers)
        insert_in_batches(session, Appearance.__table__, appearances)
    return len(papers)


def measure(years: float, subscribers: int, work: Path) -> dict[str, Any]:
    from newsletter.config import load_settings
    from newsletter.digests.compose import compose_day
    from newsletter.digests.plan import earliest_candidate
    from newsletter.ingest.intake import ingest_paths
    from newsletter.store.db import Database
    from newsletter.subscribers.lists import load_lists
    from newsletter.subscribers.sync import sync_subscribers

    write_list(work / "subscribers" / "list.csv", subscribers)
    settings = load_settings(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
            "NEWSLETTER_SEEDS_DIR": str(ROOT / "seeds"),
            "NEWSLETTER_SUBSCRIBERS_DIR": str(work / "subscribers"),
        }
    )
    db = Database(settings.database_url)
    ingest_paths(db, [settings.seeds_dir], DAY, year=DAY.year)
    history = store_history(db, earliest_candidate(DAY), round(years * DAYS_A_YEAR))
    sync_subscribers(db, load_lists([settings.subscribers_dir]))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        composition = compose_day(db, settings, DAY, persist=False, keep=False)
        best = min(best, time.perf_counter() - started)
    due = subscribers - composition.not_due
    db.close()
    return {
        "years": years,
        "history_papers": history,
        "due": due,
        "seconds": round(best, 3),
        "ms_per_digest": round(1000 * best / max(due, 1), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--years", default="0,1,3")
    parser.add_argument("--output", type=Path, default=Path("bench-history.json"))
    args = parser.parse_args()
    rows = []
    for years in (float(y) for y in args.years.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(years, args.subscribers, Path(folder)))
    first = rows[0]["ms_per_digest"]
    print(f"\n== select+rank per digest against stored history ({machine()}) ==")
    print(f"{'stored before the day':>24} | {'papers':>7} | {'due':>6} | {'ms/digest':>9} | ratio")
    for row in rows:
        label = "1 day" if not row["years"] else f"{row['years']:g} year(s)"
        row["ratio"] = round(row["ms_per_digest"] / first, 3) if first else None
        print(
            f"{label:>24} | {row['history_papers']:>7} | {row['due']:>6} | "
            f"{row['ms_per_digest']:>9.3f} | {row['ratio']}"
        )
    args.output.write_text(
        json.dumps(
            {"machine": machine(), "python": platform.python_version(), "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
