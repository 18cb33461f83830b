"""Score papers against a subscriber's topics (pure: plain values in, ranked records out).

A topic is read as one or more concepts: the topic itself and, when it joins several things, each
of them ("EEG, MRI and medical diagnosis" -> EEG, MRI, medical diagnosis; "convex and bilevel
optimization" -> convex optimization, bilevel optimization; see `text`). A paper is compared with
each concept by words (BM25) and by meaning (see `index`); a logistic model turns the best
concept's scores into the probability that a reader of the topic wants the paper, and a paper is
relevant to the topic when that probability reaches the model's cut (see `model`). A reader's
papers are shared among their topics, ordered with a small weight for trending (see `select`),
and each pick carries why: the topic and what matched (see `explain`).

`TopicIndex` puts the four pieces together over one set of papers and remembers each topic's
scores and each explanation, so that thousands of readers who share topics cost one ranking.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..records import PaperText, Ranked
from . import embed
from .embed import Encoder
from .explain import Explainer
from .index import PaperIndex, TopicScores, WordStats
from .learn import (
    LEARNER,
    MORE_LIKE,
    Closeness,
    Learner,
    ReaderFeedback,
    adjusted,
    liked,
    moved,
    shift,
)
from .model import RelevanceModel, features, fitted_for, order
from .select import ABSTRACT_MENTIONS, Selection
from .text import parse_topics, tokenize

ABOUT = 0.5  # the probability from which a paper is about an `exclude` phrase (see `excluded`)

__all__ = ["TopicIndex", "RelevanceModel", "parse_topics", "tokenize"]


@dataclass(frozen=True)
class _Judged:
    """A topic's scores and, from them, each paper's relevance under the index's model."""

    scores: TopicScores
    probability: np.ndarray  # before any cut
    relevance: np.ndarray  # the probability, 0 below the model's cut
    order: np.ndarray  # how high a relevant paper is listed (see `model.order`)


class TopicIndex:
    """Ranking over one set of papers; topics are scored once and remembered."""

    def __init__(
        self,
        papers: Sequence[PaperText],
        vectors: Mapping[int, np.ndarray] | None = None,
        encoder: Encoder | None | bool = True,
        model: RelevanceModel | None = None,
        reference: WordStats | None = None,
    ):
        """`vectors`: stored sentence vectors by paper id (see `embed`); papers without them are
        embedded here. `encoder`: True for the shared one if the extra is installed, None or
        False for words only. `model`: the relevance model (default: the fitted one for the
        kind of index). `reference`: word statistics counted with the papers' own (a digest's
        index takes the shipped `index.background()`)."""
        if encoder is True:
            encoder = embed.load()
        self.index = PaperIndex(papers, vectors, encoder or None, reference)
        self.model = model or fitted_for(self.index.encoder)
        self.selection = Selection(
            self.index.papers, self.index.abstracts, self.index.abstract_texts
        )
        self.explainer = Explainer(self.index)
        self._judged: dict[str, _Judged] = {}
        self._why: dict[tuple[str, int], str] = {}
        self._excluded: dict[str, frozenset[int]] = {}
        self._closeness: dict[int, np.ndarray] = {}  # by marked paper id (readers share them)

    @property
    def papers(self) -> list[PaperText]:
        return self.index.papers

    @property
    def position(self) -> dict[int, int]:
        return self.index.position

    @property
    def semantic(self) -> bool:
        return self.index.encoder is not None

    def with_model(self, model: RelevanceModel) -> TopicIndex:
        """The same papers ranked with another relevance model (for tuning): the index is
        shared, the topics are judged again."""
        other = copy.copy(self)
        other.model, other._judged, other._why, other._excluded = model, {}, {}, {}
        other._closeness = {}
        return other

    def features(self, topic: str) -> dict[str, np.ndarray]:
        """Per paper, what the relevance model reads (the best concept's scores)."""
        return features(self._judge(topic).scores)

    def relevance(self, topic: str) -> np.ndarray:
        """Per paper, the probability a reader of `topic` wants it; 0 below the model's cut."""
        return self._judge(topic).relevance

    def _judge(self, topic: str) -> _Judged:
        key = " ".join(topic.casefold().split())
        if key not in self._judged:
            self._judged[key] = self._judged_from(self.index.score(topic))
        return self._judged[key]

    def _judge_moved(self, topic: str, moved_by: np.ndarray) -> _Judged:
        """A topic judged from its sentence vector moved by a reader's feedback (not kept: it
        is that reader's alone)."""
        scores = self._judge(topic).scores  # (its words do not move)
        if not scores.concepts or scores.meaning is None:
            return self._judge(topic)
        moved_meaning = self.index.meaning(scores.concepts, moved_by)
        return self._judged_from(replace(scores, meaning=moved_meaning))

    def _judged_from(self, scores: TopicScores) -> _Judged:
        probability = self.model.probability_of(scores)
        return _Judged(scores, probability, self.model.relevance(probability), order(scores))

    def probabilities(
        self,
        topics: Sequence[str],
        feedback: ReaderFeedback | None = None,
        learner: Learner = LEARNER,
    ) -> np.ndarray:
        """Per topic (and, with feedback, a last row for closeness to what the reader liked)
        and paper, the probability the reader wants it, before any cut."""
        return self._rows(topics, feedback, learner)[0]

    def _rows(
        self, topics: Sequence[str], feedback: ReaderFeedback | None, learner: Learner
    ) -> tuple[np.ndarray, np.ndarray, Closeness | None]:
        """(probabilities, listing orders, closeness): per row and paper; one row per topic,
        and with feedback one more for closeness to the papers the reader marked "more"."""
        judged = [self._judge(t) for t in topics]
        if not feedback:
            return (
                np.vstack([j.probability for j in judged]),
                np.vstack([j.order for j in judged]),
                None,
            )
        close = Closeness.of(self.index, feedback, learner.pool, self._closeness)
        moved_by = shift(feedback, learner)
        if moved_by is not None:  # Rocchio: each topic judged again from its moved vector
            judged = [self._judge_moved(t, moved_by) for t in topics]
        probability = [adjusted(j.probability, close, learner) for j in judged]
        listing = [moved(j.order, close, learner) for j in judged]
        return (
            np.vstack([*probability, liked(close, learner)]),
            np.vstack([*listing, close.more]),
            close,
        )

    def rank(
        self,
        topics: Sequence[str],
        candidates: Iterable[int] | None = None,
        limit: int | None = None,
        relevance: Mapping[str, np.ndarray] | None = None,
        feedback: ReaderFeedback | None = None,
        learner: Learner = LEARNER,
    ) -> list[Ranked]:
        """Relevant papers among `candidates` (ids; default all), best first, each topic with
        relevant papers getting its share of `limit`. `relevance` replaces the model's
        probabilities per topic (for tuning the cuts on held-out probabilities). `feedback`:
        what the reader marked "more" and "fewer" like this (see `learn`)."""
        if not self.papers or not topics:
            return []
        candidates = list(candidates) if candidates is not None else None
        close = None
        if feedback:
            probability, listing, close = self._rows(topics, feedback, learner)
            matrix = self.model.relevance(probability)
            matrix[-1] = probability[-1]  # (closeness to a liked paper has its own cut)
        else:
            given = relevance or {}
            matrix = np.vstack([given[t] if t in given else self.relevance(t) for t in topics])
            listing = np.vstack([self._judge(t).order for t in topics])
        chosen, matrix, score = self.selection.choose(
            matrix, listing, self.model, candidates, limit
        )
        relevance_of = matrix.max(axis=0)
        # With feedback: the papers the topics alone would not have brought, and the feedback did
        lifted = np.zeros(len(self.papers), dtype=bool)
        if close is not None:
            plain = np.vstack([self.relevance(t) for t in topics])
            orders = np.vstack([self._judge(t).order for t in topics])
            _, served, _ = self.selection.choose(plain, orders, self.model, candidates, 0)
            lifted = served.max(axis=0) == 0
        ranked = []
        for i in chosen:
            best = [int(t) for t in np.argsort(-matrix[:, i], kind="stable") if matrix[t, i] > 0]
            if lifted[i] and len(topics) not in best:
                best.append(len(topics))  # (say that the feedback brought it)
            paper_id = self.papers[i].id
            ranked.append(
                Ranked(
                    paper_id=paper_id,
                    score=round(float(score[i]), 4),
                    relevance=round(float(relevance_of[i]), 4),
                    matched=tuple(topics[t] for t in best if t < len(topics)),
                    why=tuple(
                        self.why(topics[t], paper_id) if t < len(topics) else _liked_why(close, i)
                        for t in best
                    ),
                )
            )
        return ranked

    def why(self, topic: str, paper_id: int) -> str:
        """What made a paper relevant to a topic (see `explain`), in the reader's spelling of
        the topic; worked out once per topic and paper."""
        key = (topic, paper_id)
        if key not in self._why:
            self._why[key] = self.explainer.explain(topic, paper_id, self._judge(topic).scores)
        return self._why[key]

    def excluded(self, phrase: str) -> frozenset[int]:
        """Ids of the papers about an `exclude` phrase: holding it in the title, saying it twice
        in the abstract (see `select`), or saying it once and likely wanted by a reader of the
        phrase as a topic (the model's probability at least `ABOUT`); worked out once."""
        if phrase not in self._excluded:
            probability = self.relevance(phrase)
            relevant = {self.papers[i].id for i in np.flatnonzero(probability >= ABOUT)}
            self._excluded[phrase] = self.selection.mentioning(phrase, ABSTRACT_MENTIONS) | (
                self.selection.mentioning(phrase) & relevant
            )
        return self._excluded[phrase]


def _liked_why(close: Closeness | None, i: int) -> str:
    assert close is not None
    return MORE_LIKE.format(title=" ".join(close.titles[int(close.nearest[i])].split()))
