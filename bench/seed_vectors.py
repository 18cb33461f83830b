"""Make `newsletter/data/seed-vectors.npz`: the sentence vectors of every paper in `seeds/`, as
ingest makes them, shipped so that a fresh machine's `make demo` (and the test suite) need not
make them again. Run it after changing the seeds, the model or the encoder; a test fails until
then.

    python -m bench.seed_vectors
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import select

from newsletter.ingest.intake import ingest_paths
from newsletter.ranking import embed
from newsletter.store.db import Database, Paper

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
TODAY = date(2026, 11, 24)  # any day after the seeds: their papers and texts are the same


def seed_texts() -> list[str]:
    """Every text ingest embeds for the papers of the seed dumps."""
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{folder}/seeds.db")
        ingest_paths(db, [SEEDS], TODAY)  # (embeds them too: the encoder caches what it makes)
        with db.session() as session:
            papers = session.execute(select(Paper.title, Paper.abstract)).all()
        db.close()
    return sorted(
        {text for title, abstract in papers for text in embed.paper_texts(title, abstract)}
    )


def main() -> None:
    encoder = embed.load()
    if encoder is None:
        raise SystemExit("the `semantic` extra is not installed")
    texts = seed_texts()
    vectors = encoder.encode(texts).astype("<f2")
    keys = np.array([embed._VectorCache.key(text) for text in texts])
    np.savez_compressed(embed.SHIPPED, model=np.array(encoder.name), keys=keys, vectors=vectors)
    print(f"{embed.SHIPPED}: {len(texts)} texts, {embed.SHIPPED.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
