"""Synthetic subscribers for the benchmarks: N readers over the seed papers, with topics drawn from
a realistic mix. Most readers pick one of a few hundred popular topic sets (Zipf-distributed, as on
a real list where many people type the same interests); one in twenty has a set of their own.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

TOPICS = [
    "language models",
    "large language models",
    "diffusion models",
    "vision transformers",
    "reinforcement learning",
    "graph neural networks",
    "quantization",
    "efficient LLM inference",
    "KV cache",
    "neural architecture search",
    "continual learning",
    "catastrophic forgetting",
    "speech recognition",
    "image classification",
    "object detection",
    "image generation",
    "video generation",
    "3D rendering",
    "neural radiance fields",
    "robotics",
    "multimodal models",
    "retrieval augmented generation",
    "code generation",
    "mixture of experts",
    "distributed training",
    "pruning",
    "knowledge distillation",
    "federated learning",
    "self-supervised learning",
    "contrastive learning",
    "adversarial robustness",
    "interpretability",
    "optimization",
    "bilevel optimization",
    "bayesian inference",
    "time series forecasting",
    "recommender systems",
    "protein structure",
    "medical imaging",
    "hypernetworks",
    "neural collapse",
    "instruction tuning",
    "reasoning",
    "agents",
    "tokenization",
    "attention mechanisms",
    "state space models",
    "sparse training",
]
POPULAR_SETS = 400
OWN_SET_SHARE = 0.05


def topic_sets(rng: random.Random, count: int) -> list[list[str]]:
    return [rng.sample(TOPICS, rng.choice((1, 2, 2, 3, 3, 3, 4))) for _ in range(count)]


def write_list(path: Path, subscribers: int, seed: int = 7) -> int:
    """Write a CSV list of `subscribers` readers to `path`; the number of distinct topic sets."""
    rng = random.Random(seed)
    popular = topic_sets(rng, POPULAR_SETS)
    weights = [1 / rank for rank in range(1, POPULAR_SETS + 1)]
    distinct: set[tuple[str, ...]] = set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["email", "name", "topics", "exclude", "max_papers", "frequency"])
        for n in range(subscribers):
            if rng.random() < OWN_SET_SHARE:
                topics = topic_sets(rng, 1)[0]
            else:
                topics = rng.choices(popular, weights)[0]
            distinct.add(tuple(topics))
            out.writerow(
                [
                    f"reader{n}@example.org",
                    f"Reader {n}",
                    ";".join(topics),
                    "survey" if rng.random() < 0.1 else "",
                    rng.choice(("", "", "", "5", "8")),
                    "weekly" if rng.random() < 0.1 else "daily",
                ]
            )
    return len(distinct)


# --- Papers: years of history for the benchmarks -------------------------------------------------

_FILLER = [
    "we",
    "propose",
    "method",
    "results",
    "show",
    "approach",
    "model",
    "data",
    "training",
    "performance",
    "benchmark",
    "novel",
    "framework",
    "efficient",
    "learning",
    "task",
    "tasks",
    "evaluate",
    "experiments",
    "improve",
    "baseline",
    "accuracy",
    "representation",
    "large",
    "scale",
    "network",
    "networks",
    "dataset",
    "datasets",
    "analysis",
    "study",
    "problem",
    "existing",
    "methods",
    "demonstrate",
    "state",
    "art",
    "outperforms",
    "significant",
    "cost",
    "memory",
    "inference",
]
PAPERS_PER_DAY = 50  # about what the Daily Papers page lists on a weekday


def synthetic_paper(rng: random.Random, serial: int) -> tuple[str, str]:
    """A title and an abstract about one or two of the topics, in the field's words."""
    about = rng.sample(TOPICS, rng.choice((1, 2)))
    words = [w for topic in about for w in topic.split()]
    title = f"{' and '.join(t.title() for t in about)}: {' '.join(rng.sample(_FILLER, 3))} {serial}"
    sentences = []
    for _ in range(rng.randint(4, 7)):
        picked = rng.sample(_FILLER, 8) + rng.sample(words, min(2, len(words)))
        rng.shuffle(picked)
        sentences.append(" ".join(picked).capitalize() + ".")
    return title, " ".join(sentences)
