"""Ranking quality on labelled topics, for three rankers side by side:

- bm25: plain BM25 (bm25s, English stemmer, stop words, the title twice), always its 10 best;
- blend: a plain embedding blend, half that BM25 (divided by its best score) and half the cosine of
  all-MiniLM-L6-v2 vectors of topic and paper (title + abstract), always its 10 best;
- ours: `newsletter rank --limit 10`, which returns only the papers it finds relevant.

    python -m bench.ranking [--labels bench/ranking-test.json ...]

Per topic and on average: nDCG@10, precision of the returned list, recall counted up to 10 (the
relevant papers returned over min(10, relevant papers)), their F1, and for the off-topic queries
(fields no seed paper is about) how many papers came back. Labels: grade 2 = centrally about the
topic, 1 = substantially related, unlisted = not relevant; a missing paper scores as irrelevant.
The tuning half chose every constant (`python -m bench.tune`); the test half and the later
held-out set were not used to choose anything, and are the numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from newsletter.ingest.dumps import parse_dump
from newsletter.ranking import embed, models
from newsletter.ranking.rank import TopicIndex
from newsletter.records import PaperText
from newsletter.text import normalize_title

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TUNING = HERE / "ranking-tune.json"
TEST = HERE / "ranking-test.json"
HOLDOUT = HERE / "ranking-holdout.json"  # labelled later (see its "about")
FINAL = HERE / "ranking-final.json"  # labelled last: the test set of the final ranker
K = 10
SEED_YEAR_END = date(2026, 12, 31)  # the seeds are ingested as dumps of 2026


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


@dataclass
class Labels:
    name: str
    grades: dict[str, dict[int, int]]  # topic -> paper id -> grade
    kinds: dict[str, str]
    off_topic: list[str]


def load_labels(path: Path, papers: Sequence[PaperText]) -> Labels:
    data = json.loads(path.read_text())
    ids = {normalize_title(p.title): p.id for p in papers}
    grades: dict[str, dict[int, int]] = {}
    for topic, entry in data["topics"].items():
        unknown = [t for t in entry["grades"] if normalize_title(t) not in ids]
        if unknown:
            raise SystemExit(
                f"{path}: {topic!r} grades a paper that is not in the seeds: {unknown[0]}"
            )
        grades[topic] = {ids[normalize_title(t)]: g for t, g in entry["grades"].items()}
    kinds = {topic: entry.get("kind", "") for topic, entry in data["topics"].items()}
    return Labels(path.stem, grades, kinds, list(data.get("off_topic", {})))


def ndcg_at(ranked: Sequence[int], grades: dict[int, int], k: int = K) -> float:
    dcg = sum((2 ** grades.get(p, 0) - 1) / math.log2(i + 2) for i, p in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def returned_set(ranked: Sequence[int], grades: dict[int, int], k: int = K) -> dict[str, float]:
    """Precision of what would be mailed, recall counted up to k, and their F1."""
    hits = sum(1 for p in ranked[:k] if grades.get(p, 0) > 0)
    precision = hits / len(ranked[:k]) if ranked else 0.0
    recall = hits / min(k, len(grades)) if grades else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


Ranker = Callable[[str], list[int]]


def bm25_ranker(papers: Sequence[PaperText]) -> tuple[Ranker, Callable[[str], np.ndarray]]:
    stemmer = Stemmer.Stemmer("english")
    corpus = [f"{p.title} {p.title} {p.abstract}" for p in papers]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )

    def scores(topic: str) -> np.ndarray:
        query = bm25s.tokenize(
            topic, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )[0]
        return np.asarray(retriever.get_scores(query), dtype=float)

    return lambda topic: _best(scores(topic), papers, positive=True), scores


def blend_ranker(
    papers: Sequence[PaperText], bm25: Callable[[str], np.ndarray], encoder: embed.Encoder
) -> Ranker:
    whole = encoder.encode([embed.paper_texts(p.title, p.abstract)[0] for p in papers])

    def rank(topic: str) -> list[int]:
        lexical = bm25(topic)
        if lexical.max() > 0:
            lexical = lexical / lexical.max()
        cosine = whole @ encoder.encode([topic])[0]
        return _best(0.5 * lexical + 0.5 * cosine, papers)

    return rank


def _best(scores: np.ndarray, papers: Sequence[PaperText], positive: bool = False) -> list[int]:
    order = np.argsort(-scores, kind="stable")[:K]
    return [papers[i].id for i in order if not positive or scores[i] > 0]


def our_ranker(index: TopicIndex) -> Ranker:
    return lambda topic: [r.paper_id for r in index.rank([topic], limit=K)]


def evaluate(labels: Labels, rankers: dict[str, Ranker]) -> dict:
    rows: dict[str, dict] = {}
    for topic, grades in labels.grades.items():
        rows[topic] = {"kind": labels.kinds.get(topic, "")}
        for name, rank in rankers.items():
            ranked = rank(topic)
            rows[topic][name] = {"ndcg@10": ndcg_at(ranked, grades), **returned_set(ranked, grades)}
    metrics = ("ndcg@10", "precision", "recall", "f1")
    mean = {
        name: {m: float(np.mean([r[name][m] for r in rows.values()])) for m in metrics}
        for name in rankers
    }
    off = {
        topic: {name: len(rank(topic)) for name, rank in rankers.items()}
        for topic in labels.off_topic
    }
    for name in rankers:
        mean[name]["off-topic papers"] = sum(o[name] for o in off.values())
    return {"labels": labels.name, "topics": rows, "off_topic": off, "mean": mean}


def stored_seed_papers(work: Path, history_days: int) -> tuple[list[PaperText], TopicIndex]:
    """The seed papers as a run reads them from a store that also holds `history_days` days of
    synthetic papers before the first seed day: ingested, then loaded and indexed by the code
    the digests use (`compose.papers_between`, `compose.topic_index`) for the seeds' days."""
    from bench.history import store_history
    from newsletter.digests.compose import papers_between, topic_index
    from newsletter.ingest.intake import ingest_paths
    from newsletter.store.db import Database

    db = Database(f"sqlite:///{work / 'ranking.db'}")
    try:
        ingest_paths(db, [ROOT / "seeds"], SEED_YEAR_END, year=SEED_YEAR_END.year)
        with db.session() as session:
            days = sorted(
                {p.first_seen for p in papers_between(session, date.min, date.max).values()}
            )
        store_history(db, days[0], history_days)
        with db.session() as session:
            stored = papers_between(session, days[0], days[-1])
            index = topic_index(session, stored.values())
    finally:
        db.close()
    return [p.text() for p in stored.values()], index


def encoders() -> dict[str, embed.Encoder]:
    """The installed sentence models by name: MiniLM with the `semantic` extra, MPNet with
    `semantic-large` (whichever is installed is what `newsletter` uses, the larger first)."""
    found = {}
    for name, where in (
        ("MiniLM", models.minilm_dir),
        ("MPNet", lambda: models.mpnet_dir(embed.cache_folder() / "models")),
    ):
        path = where()
        if path is not None:
            found[name] = embed.Encoder(path)
    return found


def rankers_for(papers: Sequence[PaperText]) -> dict[str, Ranker]:
    """bm25, the MiniLM blend and ours by the default install; the blend and ours by the larger
    model beside them when `semantic-large` is installed."""
    found = encoders()
    bm25, bm25_scores = bm25_ranker(papers)
    rankers: dict[str, Ranker] = {"bm25": bm25}
    if "MiniLM" in found:
        rankers["blend"] = blend_ranker(papers, bm25_scores, found["MiniLM"])
    rankers["ours"] = our_ranker(TopicIndex(papers, encoder=found.get("MiniLM")))
    if "MPNet" in found:
        # the plain blend checks the forward pass on real weights: a wrong one retrieves worse
        rankers["blend (MPNet)"] = blend_ranker(papers, bm25_scores, found["MPNet"])
        rankers["ours (MPNet)"] = our_ranker(TopicIndex(papers, encoder=found["MPNet"]))
    return rankers


def history_check(papers: Sequence[PaperText], paths: Sequence[Path], history_days: int) -> str:
    """Whether rankings stay the same with `history_days` days of papers stored before the
    seeds: the labelled and off-topic queries ranked through two stores, one holding only the
    seeds and one holding the history too, by the code the digests use; paper for paper."""
    rankings = []
    for days in (0, history_days):
        with tempfile.TemporaryDirectory() as folder:
            stored, index = stored_seed_papers(Path(folder), days)
        title = {p.id: normalize_title(p.title) for p in stored}
        ranker = our_ranker(index)
        rankings.append(
            {
                topic: [title[pid] for pid in ranker(topic)]
                for path in paths
                for labels in [load_labels(path, papers)]
                for topic in [*labels.grades, *labels.off_topic]
            }
        )
    differ = sum(rankings[0][t] != rankings[1][t] for t in rankings[0])
    verdict = "the same" if not differ else f"DIFFERENT for {differ} queries"
    return (
        f"with {history_days} days of synthetic papers stored before the seeds, the rankings of "
        f"{len(rankings[0])} labelled and off-topic queries through the store are {verdict}"
    )


def per_day(paths: Sequence[Path], encoder: embed.Encoder | None) -> None:
    """Each seed day's new papers ranked as that day's digests rank them (the papers of the
    7-day window, alone and with a reference table of word statistics) beside an index of every
    paper up to that day (how digests were ranked before): what readers are sent, over days."""
    from newsletter.ranking.index import WordStats, paper_tokens

    found: dict[str, dict] = {}
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        parsed = parse_dump(path.read_bytes(), path.name)
        day = date(2026, parsed.month, parsed.day)
        for item in parsed.papers:
            paper = found.setdefault(item.key, {"title": item.title, "abstract": "", "seen": []})
            paper["abstract"] = max(paper["abstract"], item.abstract, key=len)
            paper["seen"].append(item.position)
            paper["day"] = min(paper.get("day", day), day)
    papers = [
        PaperText(n, p["title"], p["abstract"], len(p["seen"]), min(p["seen"]))
        for n, p in enumerate(found.values())
    ]
    day_of = {n: p["day"] for n, p in enumerate(found.values())}
    days = sorted(set(day_of.values()))

    def window(d: date) -> list[PaperText]:
        return [p for p in papers if 0 <= (d - day_of[p.id]).days < 7]

    def others(d: date) -> WordStats:
        # The shipped table is made of these very dumps; measured honestly, a day's reference
        # holds the other days' papers only, as the table holds none of a new day's.
        return WordStats.of(
            [paper_tokens(p.title, p.abstract) for p in papers if day_of[p.id] != d]
        )

    ways = {
        "every paper up to the day": lambda d: TopicIndex(
            [p for p in papers if day_of[p.id] <= d], encoder=encoder
        ),
        "the window alone": lambda d: TopicIndex(window(d), encoder=encoder),
        "the window + other days' table": lambda d: TopicIndex(
            window(d), encoder=encoder, reference=others(d)
        ),
    }
    indexes = {name: {d: make(d) for d in days} for name, make in ways.items()}
    print("\n== per day: each seed day's new papers, as that day's digests rank them ==")
    for path in paths:
        labels = load_labels(path, papers)
        relevant = sum(sum(g > 0 for g in grades.values()) for grades in labels.grades.values())
        for name, by_day in indexes.items():
            sent = hits = off = 0
            for d, index in by_day.items():
                new = [p.id for p in papers if day_of[p.id] == d]
                for topic, grades in labels.grades.items():
                    got = [r.paper_id for r in index.rank([topic], new, limit=K)]
                    sent += len(got)
                    hits += sum(grades.get(pid, 0) > 0 for pid in got)
                off += sum(len(index.rank([q], new, limit=K)) for q in labels.off_topic)
            print(
                f"{labels.name:16} {name:31} sent {sent:4}  precision {hits / max(sent, 1):.3f}  "
                f"recall {hits / max(relevant, 1):.3f}  off-topic papers {off}"
            )


# The loosest paper cuts `bench.tune` tries: with them, a served topic keeps nearly every paper
# near its best, so the gate's figures show what the topic gate alone costs.
LOOSE_CUTS = (0.02, 0.1)


def gate_report(papers: Sequence[PaperText], paths: Sequence[Path], model_name: str) -> None:
    """What the topic gate (a topic is served only when its best paper reaches the topic cut)
    costs: per labelled set, how many labelled topics it serves and how many off-topic queries it
    lets through; ours as shipped, then with a perfect gate (every labelled topic served, no
    off-topic query), with the shipped paper cuts and with the loosest. The best paper's
    probability of a labelled topic the gate shuts, and of an off-topic query, side by side."""
    from dataclasses import replace

    index = TopicIndex(papers, encoder=encoders()[model_name])
    model = index.model
    cuts = {"cut": LOOSE_CUTS[0], "relative_cut": LOOSE_CUTS[1]}
    rankers = (
        index,
        index.with_model(replace(model, **cuts)),
        index.with_model(replace(model, topic_cut=0.0)),
        index.with_model(replace(model, topic_cut=0.0, **cuts)),
    )
    print(
        f"\n== the topic gate ({model_name}): labelled topics it serves, off-topic queries it lets "
        "through =="
    )
    print(
        f"{'':16} {'served':>7} {'let through':>11} | nDCG / F1: ours          "
        f"loose paper cuts  perfect gate    both\n(loose paper cuts: {LOOSE_CUTS[0]}, "
        f"relative {LOOSE_CUTS[1]}; a perfect gate serves every labelled topic, no off-topic query)"
    )
    shut, through = [], []
    for path in paths:
        labels = load_labels(path, papers)
        best = {
            q: float(index.probabilities([q]).max()) for q in [*labels.grades, *labels.off_topic]
        }
        served = [t for t in labels.grades if best[t] >= model.topic_cut]
        let = [q for q in labels.off_topic if best[q] >= model.topic_cut]
        shut += [(best[t], t) for t in labels.grades if t not in served]
        through += [(best[q], q) for q in labels.off_topic]
        figures = []
        for ranker in rankers:
            rank = our_ranker(ranker)
            mean = evaluate(replace(labels, off_topic=[]), {"o": rank})["mean"]["o"]
            figures.append(f"{mean['ndcg@10']:.3f} / {mean['f1']:.2f}")
        print(
            f"{labels.name:16} {len(served):3} of {len(labels.grades):<2} {len(let):4} of "
            f"{len(labels.off_topic):<4} | " + "   ".join(figures)
        )
    print(f"best paper's probability (topic cut {model.topic_cut}):")
    print("  labelled topics shut: " + "; ".join(f"{p:.2f} {t[:40]}" for p, t in sorted(shut)))
    print("  off-topic queries:    " + ", ".join(f"{p:.2f}" for p, _ in sorted(through)))


def print_result(result: dict) -> None:
    names = [n for n in result["mean"]]
    head = "".join(f" | {n:^27}" for n in names)
    print(f"\n== {result['labels']} ==")
    print(f"{'topic':44}{head}")
    print(f"{'':44}" + " | nDCG   P     R     F1   " * len(names))

    def line(label: str, row: dict) -> str:
        cells = "".join(
            f" | {row[n]['ndcg@10']:.3f} {row[n]['precision']:.2f}  {row[n]['recall']:.2f}  "
            f"{row[n]['f1']:.2f} "
            for n in names
        )
        return f"{label[:44]:44}{cells}"

    for topic, row in result["topics"].items():
        print(line(topic, row))
    print(line("MEAN", result["mean"]))
    offs = "".join(
        f" | off-topic papers: {result['mean'][n]['off-topic papers']:<8}" for n in names
    )
    label = f"{len(result['off_topic'])} off-topic queries"
    print(f"{label:44}{offs}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=Path, nargs="+", default=[TUNING, TEST, HOLDOUT, FINAL])
    parser.add_argument("--output", type=Path, default=Path("bench-ranking.json"))
    parser.add_argument(
        "--history",
        type=int,
        default=365,
        metavar="DAYS",
        help="also rank the seeds as stored after DAYS days of synthetic papers (0: not)",
    )
    args = parser.parse_args()
    papers = seed_papers()
    rankers = rankers_for(papers)
    if args.history:
        print(history_check(papers, args.labels, args.history))
    per_day(args.labels, embed.load())
    for name in encoders():
        gate_report(papers, args.labels, name)
    if "blend" not in rankers:
        print(
            "(the `semantic` extra is not installed: the blend is left out, ours uses words only)"
        )
    results = [evaluate(load_labels(path, papers), rankers) for path in args.labels]
    for result in results:
        print_result(result)
    args.output.write_text(
        json.dumps(
            {"date": date.today().isoformat(), "papers": len(papers), "halves": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
