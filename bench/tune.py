"""Fit the relevance models of `newsletter.rank` on the tuning half of the labelled topics.

    python -m bench.tune [--labels bench/ranking-tune.json]

For every (topic, seed paper) pair of the tuning half, and every off-topic query, the features
the ranker reads are computed; a logistic regression (Newton's method, a little L2) predicts
"relevant" (grade 1 or 2). The two cuts (a paper's, and the one a topic's best paper must reach) are
those that give the best mean of nDCG@10 and F1 of the returned lists with at most one off-topic
paper in all. It prints the models to paste into rank.py
(SEMANTIC and LEXICAL) and their figures on the tuning half. Only the tuning half is read here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from newsletter import embed
from newsletter.rank import RelevanceModel, TopicIndex

from .ranking import TUNING, K, evaluate, load_labels, our_ranker, seed_papers

FEATURES = {
    "semantic": ("meaning", "meaning_gap", "words"),
    "lexical": ("words", "words_gap"),
}
CUTS = [round(float(c), 2) for c in np.arange(0.05, 0.65, 0.05)]
L2 = 1e-2
MAX_OFF_TOPIC = 1


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50) -> np.ndarray:
    """Bias and weights maximising the penalised log-likelihood."""
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    penalty = l2 * np.eye(len(w))
    penalty[0, 0] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def tune(index: TopicIndex, kind: str, labels_path: Path) -> tuple[RelevanceModel, dict]:
    labels = load_labels(labels_path, index.papers)
    names = FEATURES[kind]
    rows, targets = [], []
    for topic in [*labels.grades, *labels.off_topic]:
        features = index.features(topic)
        grades = labels.grades.get(topic, {})
        rows.append(np.stack([features[n] for n in names], axis=1))
        targets.append(np.array([1.0 if grades.get(p.id, 0) > 0 else 0.0 for p in index.papers]))
    w = fit_logistic(np.vstack(rows), np.concatenate(targets))
    weights = tuple((n, round(float(v), 3)) for n, v in zip(names, w[1:], strict=True))
    best: tuple[float, RelevanceModel, dict] | None = None
    for topic_cut in CUTS:
        for cut in (c for c in CUTS if c <= topic_cut):
            index.model = RelevanceModel(round(float(w[0]), 3), weights, cut, topic_cut)
            index._cache.clear()
            mean = evaluate(labels, {"ours": our_ranker(index)})["mean"]["ours"]
            goal = (mean["ndcg@10"] + mean["f1"]) / 2
            print(
                f"  {kind} cut {cut:.2f} topic {topic_cut:.2f}: nDCG@10 {mean['ndcg@10']:.3f}  "
                f"P {mean['precision']:.3f}  R@{K} {mean['recall']:.3f}  F1 {mean['f1']:.3f}  "
                f"off-topic {mean['off-topic papers']}"
            )
            if mean["off-topic papers"] <= MAX_OFF_TOPIC and (best is None or goal > best[0]):
                best = (goal, index.model, mean)
    if best is None:
        raise SystemExit(f"no cut keeps off-topic papers at {MAX_OFF_TOPIC} or fewer")
    return best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=Path, default=TUNING)
    args = parser.parse_args()
    papers = seed_papers()
    encoder = embed.load()
    chosen = {}
    if encoder is None:
        print("the `semantic` extra is not installed: only the words-only model is fitted")
    else:
        chosen["SEMANTIC"] = tune(TopicIndex(papers, encoder=encoder), "semantic", args.labels)
    chosen["LEXICAL"] = tune(TopicIndex(papers, encoder=None), "lexical", args.labels)
    print()
    for name, (model, mean) in chosen.items():
        print(f"{name} = {model!r}")
        print(f"    # on {args.labels.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))


if __name__ == "__main__":
    main()
