"""What a reader's "More like this" and "Fewer like this" change in their next digests (pure).

A paper's closeness to a marked paper is half the cosine of their sentence vectors and half the
cosine of their words (TF-IDF), words alone without sentence vectors; closeness to several marked
papers is their mean (or the nearest one's, `pool`). Then, for each paper of the day:

- Rocchio: each topic's sentence vector moves towards the mean vector of the papers marked
  "more" (`more`) and away from those marked "fewer" (`less`) before the papers are compared
  with it;
- closeness to the papers marked "more" beyond `floor` raises the paper's probability for each
  of the reader's topics (on the logit, `lift`), closeness to those marked "fewer" lowers it
  (`push`): a "fewer" pushes that kind of paper below the cut, not only the one marked, and a
  "more" can bring a paper no word of the topics matched (the email says "close to ‘<title>’ you
  marked more like this" for a paper the topics alone would not have brought);
- a paper at least `near` close to a paper marked "more" may be relevant on that ground alone;
- the listing order moves by `listing` times the difference of the two closenesses.

A reader with no feedback is ranked exactly as before: nothing here runs. The constants are
chosen with simulated readers (`python -m bench.feedback --tune`, see the README's "Feedback").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .index import PaperIndex, paper_tokens

MORE_LIKE = "close to ‘{title}’ you marked more like this"
MEANING_SHARE = 0.5  # closeness: the sentence vectors' cosine against the words'


@dataclass(frozen=True)
class Marked:
    """A paper a reader marked, as the learner reads it."""

    paper_id: int
    title: str
    abstract: str
    vector: np.ndarray | None  # its whole-paper sentence vector (None without the extra)


@dataclass(frozen=True)
class ReaderFeedback:
    more: tuple[Marked, ...] = ()
    less: tuple[Marked, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.more or self.less)

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """What the feedback is, for sharing a ranking between readers who gave the same."""
        return (
            tuple(sorted(m.paper_id for m in self.more)),
            tuple(sorted(m.paper_id for m in self.less)),
        )


@dataclass(frozen=True)
class Learner:
    more: float  # Rocchio's beta: weight of the mean vector of the papers marked "more"
    less: float  # Rocchio's gamma: weight of the mean vector of those marked "fewer"
    floor: float  # closeness from which a marked paper says something about another
    lift: float  # logit added per unit of closeness to a "more" beyond `floor`
    push: float  # logit taken per unit of closeness to a "fewer" beyond `floor`
    near: float  # closeness to a "more" from which a paper is relevant on that ground alone
    listing: float  # how far the closenesses move the listing order (0..1 scale)
    # the most the feedback moves a topic's logit either way (the topic's own evidence stays)
    cap: float = math.inf
    # how the closenesses to several marked papers pool: the nearest one ("max"), or their mean
    # ("mean": Rocchio's centroid, in closeness)
    pool: str = "max"


# Chosen by `python -m bench.feedback --tune --all-sets` on the simulated readers of all 56
# measurable labelled topics: the family (closeness effects off, mild, strong, lift only, lift and
# order, with caps; nearest or mean pooling) whose choice did best on topics left out
# (leave-one-topic-out: +0.066 residual nDCG@10, 6 of 56 topics worse by more than 0.05), then
# its constants; the whole choice, each topic left out of all of it, gains +0.042 (8 of 56
# worse). Feedback moves which papers pass the cut, not their order among themselves
# ("lift only"); no paper comes on closeness alone (`near` above 1): "strong" did worse on topics
# left out.
LEARNER = Learner(
    more=0.0, less=0.5, floor=0.15, lift=16.0, push=8.0, near=1.01, listing=0.0, pool="mean"
)


@dataclass(frozen=True)
class Closeness:
    """Per indexed paper: how close it is to the papers marked "more" and to those marked "fewer"
    (pooled as the learner says; 0 without any), and which "more" paper is nearest (-1: none)."""

    more: np.ndarray
    less: np.ndarray
    nearest: np.ndarray
    titles: tuple[str, ...]  # of the papers marked "more", as `nearest` counts them

    @staticmethod
    def of(
        index: PaperIndex,
        feedback: ReaderFeedback,
        pool: str = "max",
        known: dict[int, np.ndarray] | None = None,
    ) -> Closeness:
        """`known`: closeness rows worked out before, by marked paper id (filled in here)."""
        n = len(index.papers)
        known = {} if known is None else known
        more, nearest = _nearest(index, feedback.more, n, pool, known)
        less, _ = _nearest(index, feedback.less, n, pool, known)
        return Closeness(more, less, nearest, tuple(m.title for m in feedback.more))


def _nearest(
    index: PaperIndex, marked: tuple[Marked, ...], n: int, pool: str, known: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    if not marked:
        return np.zeros(n), np.full(n, -1)
    for m in marked:
        if m.paper_id not in known:
            known[m.paper_id] = closeness(index, m)
    rows = np.vstack([known[m.paper_id] for m in marked])
    pooled = rows.mean(axis=0) if pool == "mean" else rows.max(axis=0)
    return pooled, rows.argmax(axis=0)


def closeness(index: PaperIndex, marked: Marked) -> np.ndarray:
    """Per indexed paper, 0..1: how close it is to `marked` in meaning and in words."""
    words = index.words_to(paper_tokens(marked.title, marked.abstract))
    meaning = index.meaning_to(marked.vector) if marked.vector is not None else None
    if meaning is None:
        return np.clip(words, 0.0, 1.0)
    return np.clip(MEANING_SHARE * meaning + (1 - MEANING_SHARE) * words, 0.0, 1.0)


def shift(feedback: ReaderFeedback, learner: Learner) -> np.ndarray | None:
    """Rocchio's move of a topic's sentence vector: `more` times the mean vector of the papers
    marked "more", less `less` times that of the papers marked "fewer" (the topic's own vector
    counting once); None without sentence vectors or weights."""
    liked = [m.vector for m in feedback.more if m.vector is not None]
    disliked = [m.vector for m in feedback.less if m.vector is not None]
    if not (liked and learner.more) and not (disliked and learner.less):
        return None
    vector = np.zeros(len((liked or disliked)[0]), dtype=np.float32)
    if liked:
        vector += learner.more * np.mean(liked, axis=0)
    if disliked:
        vector -= learner.less * np.mean(disliked, axis=0)
    return vector


def adjusted(probability: np.ndarray, close: Closeness, learner: Learner) -> np.ndarray:
    """A topic's probabilities (before any cut) moved by the reader's feedback."""
    eps = 1e-9
    p = np.clip(probability, eps, 1 - eps)
    change = learner.lift * np.maximum(close.more - learner.floor, 0.0)
    change = change - learner.push * np.maximum(close.less - learner.floor, 0.0)
    logit = np.log(p / (1 - p)) + np.clip(change, -learner.cap, learner.cap)
    return 1.0 / (1.0 + np.exp(-logit))


def liked(close: Closeness, learner: Learner) -> np.ndarray:
    """Per paper, 0..1: relevance on the ground of being close to a paper marked "more" (0 below
    `near`, or when it is closer to a paper marked "fewer")."""
    room = max(1.0 - learner.near, 1e-9)
    value = 0.5 + 0.5 * np.clip((close.more - learner.near) / room, 0.0, 1.0)
    keep = (close.more >= learner.near) & (close.more > close.less)
    return np.where(keep, value, 0.0)


def moved(order: np.ndarray, close: Closeness, learner: Learner) -> np.ndarray:
    """A topic's listing order moved by the feedback."""
    return order + learner.listing * (close.more - close.less)
