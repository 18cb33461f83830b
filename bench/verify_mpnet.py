"""The all-mpnet-base-v2 forward pass checked on its real weights by what it retrieves.

    python -m bench.verify_mpnet        (needs the `semantic-large` extra; about two minutes)

The labelled topics are ranked by the cosine of topic and paper vectors alone, and by the plain
50/50 blend with BM25, as built and with two mistakes a port of MPNet can make: positions counted
from 0 as BERT counts them (MPNet's start after its padding index, at 2), and no relative-position
bias. The vectors are computed afresh (no cache: the mistakes must not land in it). The pass as
built should retrieve clearly best; nDCG@10 per labelled file, blend/meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from newsletter.ranking import embed

from .ranking import (
    FINAL,
    HOLDOUT,
    TEST,
    TUNING,
    _best,
    bm25_ranker,
    encoders,
    evaluate,
    load_labels,
    seed_papers,
)


def main() -> None:
    found = encoders()
    if "MPNet" not in found:
        raise SystemExit("all-mpnet-base-v2 is not installed: make install-large")
    encoder = found["MPNet"]
    papers = seed_papers()
    _, bm25 = bm25_ranker(papers)
    texts = [embed.paper_texts(p.title, p.abstract)[0] for p in papers]
    labels = [load_labels(path, papers) for path in (TUNING, TEST, HOLDOUT, FINAL)]
    queries = sorted({q for lab in labels for q in [*lab.grades, *lab.off_topic]})

    def measure(name: str) -> None:
        whole = encoder._compute(texts)
        topic = dict(zip(queries, encoder._compute(queries), strict=True))

        def blend(query: str) -> list[int]:
            lexical = bm25(query)
            lexical = lexical / lexical.max() if lexical.max() > 0 else lexical
            return _best(0.5 * lexical + 0.5 * (whole @ topic[query]), papers)

        def meaning(query: str) -> list[int]:
            return _best(whole @ topic[query], papers)

        cells = []
        for lab in labels:
            mean = evaluate(lab, {"blend": blend, "meaning": meaning})["mean"]
            cells.append(f"{mean['blend']['ndcg@10']:.3f}/{mean['meaning']['ndcg@10']:.3f}")
        print(f"{name:28}", "  ".join(cells), flush=True)

    print(f"{'nDCG@10 blend/meaning':28}", "  ".join(f"{lab.name[8:]:11}" for lab in labels))
    measure("as built")
    padding = embed.MPNET_PADDING
    embed.MPNET_PADDING = -1  # positions 0, 1, 2, ...
    try:
        measure("positions from 0")
    finally:
        embed.MPNET_PADDING = padding
    built: Callable = embed.Encoder._position_bias
    embed.Encoder._position_bias = lambda self, width: np.zeros(  # type: ignore[method-assign]
        (self.heads, width, width), np.float32
    )
    try:
        measure("no relative-position bias")
    finally:
        embed.Encoder._position_bias = built  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
