"""Make `newsletter/data/word-stats.json`: the document frequencies of the papers of `seeds/` as
BM25 reads them (`ranking.index.paper_tokens`), the reference that a day's few papers are counted
with (`ranking.index.WordStats`). No label is read. Run it after changing the seeds or the
tokenizer; a test fails until then.

    python -m bench.word_stats
"""

from __future__ import annotations

import json

from bench.ranking import seed_papers
from newsletter.ranking.index import STATS, WordStats, paper_tokens


def seed_stats() -> WordStats:
    return WordStats.of([paper_tokens(p.title, p.abstract) for p in seed_papers()])


def main() -> None:
    stats = seed_stats()
    path = STATS
    path.write_text(
        json.dumps(
            {
                "documents": stats.documents,
                "length": stats.length,
                "df": dict(sorted(stats.df.items())),
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    print(f"{path}: {stats.documents} papers, {len(stats.df)} words")


if __name__ == "__main__":
    main()
