"""Ranking quality on labelled topics: nDCG@10 and P@5 per topic and their mean, for plain BM25
(bm25s, English stemmer, title + abstract) and for our ranker, side by side.

    python -m bench.ranking [--labels bench/ranking-dev.json]

Labels: grade 2 = clearly on topic, 1 = partly, unlisted = not relevant. Our ranker is judged on
what it returns: it may return fewer than 10 papers (its relevance threshold), and a missing
paper scores like an irrelevant one.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import bm25s
import Stemmer

from newsletter.dumps import normalize_title, parse_dump
from newsletter.rank import PaperText, TopicIndex

ROOT = Path(__file__).resolve().parent.parent
LABELS = Path(__file__).resolve().parent / "ranking-dev.json"


def seed_papers(seeds: Path = ROOT / "seeds") -> list[PaperText]:
    """The unique papers of the dumps with their trending signal, as ingest would store them."""
    found: dict[str, dict] = {}
    for path in sorted(seeds.glob("*.txt")):
        for item in parse_dump(path.read_bytes(), path.name).papers:
            paper = found.setdefault(item.key, {"title": item.title, "abstract": "", "seen": []})
            paper["abstract"] = max(paper["abstract"], item.abstract, key=len)
            paper["seen"].append(item.position)
    return [
        PaperText(n, p["title"], p["abstract"], len(p["seen"]), min(p["seen"]))
        for n, p in enumerate(found.values())
    ]


def ndcg_at(ranked: Sequence[str], grades: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** grades.get(t, 0) - 1) / math.log2(i + 2) for i, t in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def precision_at(ranked: Sequence[str], grades: dict[str, int], k: int = 5) -> float:
    return sum(1 for t in ranked[:k] if grades.get(t, 0) > 0) / k


def bm25_baseline(papers: list[PaperText]) -> Callable[[str], list[str]]:
    stemmer = Stemmer.Stemmer("english")
    corpus = [f"{p.title} {p.abstract}" for p in papers]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )

    def search(topic: str) -> list[str]:
        query = bm25s.tokenize(
            topic, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )[0]
        scores = retriever.get_scores(query)
        order = sorted(range(len(papers)), key=lambda i: -scores[i])
        return [papers[i].title for i in order[:10] if scores[i] > 0]

    return search


def our_ranker(papers: list[PaperText]) -> Callable[[str], list[str]]:
    index = TopicIndex(papers)
    titles = {p.id: p.title for p in papers}
    return lambda topic: [titles[r.paper_id] for r in index.rank([topic], limit=10)]


def evaluate(labels: Path = LABELS) -> dict:
    topics = json.loads(labels.read_text())["topics"]
    papers = seed_papers()
    keyed = {normalize_title(p.title): p.title for p in papers}
    rankers = {"bm25": bm25_baseline(papers), "ours": our_ranker(papers)}
    rows = {}
    for topic, graded in topics.items():
        grades = {keyed.get(normalize_title(t), t): g for t, g in graded.items()}
        rows[topic] = {
            name: {
                "ndcg@10": ndcg_at(rank(topic), grades),
                "p@5": precision_at(rank(topic), grades),
            }
            for name, rank in rankers.items()
        }
    mean = {
        name: {m: sum(r[name][m] for r in rows.values()) / len(rows) for m in ("ndcg@10", "p@5")}
        for name in rankers
    }
    return {"date": date.today().isoformat(), "papers": len(papers), "topics": rows, "mean": mean}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--output", type=Path, default=Path("bench-ranking.json"))
    args = parser.parse_args()
    result = evaluate(args.labels)
    print(f"{'topic':42} {'BM25 nDCG@10':>12} {'P@5':>5} {'ours nDCG@10':>13} {'P@5':>5}")
    for topic, row in [*result["topics"].items(), ("MEAN", result["mean"])]:
        b, o = row["bm25"], row["ours"]
        print(
            f"{topic[:42]:42} {b['ndcg@10']:12.3f} {b['p@5']:5.2f} {o['ndcg@10']:13.3f} "
            f"{o['p@5']:5.2f}"
        )
    args.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
