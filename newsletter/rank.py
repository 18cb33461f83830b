"""Score papers against a subscriber's topics (pure: plain values in, ranked records out).

Each topic is a BM25 query (bm25s, English Snowball stemmer) over title and abstract, the title
counted twice. A paper is relevant to a topic only when it carries most of the topic's weight in
words (IDF-weighted coverage) and scores near the best papers for it; those topics are the paper's
"matched" topics, shown in the email as why it was picked. The trending signal (page position,
number of appearances) is blended in with a small weight, so it orders relevant papers and never
lets an off-topic one in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

TITLE_WEIGHT = 2  # the title is indexed this many times
MIN_COVERAGE = 0.6  # share of the topic's IDF mass a paper must contain
MIN_RELATIVE = 0.2  # share of the best paper's BM25 score for the topic
TREND_WEIGHT = 0.15
EXTRA_TOPIC_WEIGHT = 0.25  # each further matched topic adds this share of its relevance

_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PaperText:
    """What ranking needs to know of a paper."""

    id: int
    title: str
    abstract: str
    appearances: int = 1
    best_position: int = 1


@dataclass(frozen=True)
class Ranked:
    paper_id: int
    score: float  # relevance blended with trending, 0..1
    relevance: float
    matched: tuple[str, ...]


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(text: str, keep_all: bool = False) -> list[str]:
    """Lower-cased, stemmed words; plural acronyms fold too (LLMs -> llm). Stop words and
    one-letter words are dropped unless `keep_all` (phrases such as "part 5" need them)."""
    words = _WORD.findall(text.lower())
    if not keep_all:
        words = [w for w in words if len(w) > 1 and w not in _STOPWORDS]
    stems = _stemmer().stemWords(words)
    return [
        stem[:-1]
        if stem == word and len(word) > 3 and word.endswith("s") and word[-2] != "s"
        else stem
        for word, stem in zip(words, stems, strict=True)
    ]


def parse_topics(text: str) -> tuple[str, ...]:
    """Topics from a command-line string such as "quantization, efficient LLM inference"."""
    return tuple(t for t in (" ".join(part.split()) for part in re.split(r"[;,]", text)) if t)


def trending(appearances: int, best_position: int) -> float:
    """0..1: high on the page and seen in many dumps."""
    position = 1.0 / (1.0 + (max(best_position, 1) - 1) / 10.0)
    repeat = 1.0 - 1.0 / max(appearances, 1)
    return 0.6 * position + 0.4 * repeat


class TopicIndex:
    """A BM25 index over a set of papers; topics are scored once and cached."""

    def __init__(self, papers: Sequence[PaperText]):
        self.papers = list(papers)
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        titles = [tokenize(p.title) for p in self.papers]
        documents = [
            title * TITLE_WEIGHT + tokenize(paper.abstract)
            for title, paper in zip(titles, self.papers, strict=True)
        ]
        self._phrases: dict[int, tuple[list[str], list[str]]] = {}  # filled when exclusions ask
        self._terms = [set(doc) for doc in documents]
        self._df: dict[str, int] = {}
        for terms in self._terms:
            for term in terms:
                self._df[term] = self._df.get(term, 0) + 1
        self._bm25 = bm25s.BM25()
        if self.papers:
            self._bm25.index([doc or [""] for doc in documents], show_progress=False)
        self._trend = np.array([trending(p.appearances, p.best_position) for p in self.papers])
        self._cache: dict[str, np.ndarray] = {}

    def _idf(self, term: str) -> float:
        n, df = len(self.papers), self._df.get(term, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def relevance(self, topic: str) -> np.ndarray:
        """Per paper, 0..1 relevance to `topic`; 0 where the paper is not relevant at all."""
        key = topic.casefold()
        if key not in self._cache:
            self._cache[key] = self._score_topic(topic)
        return self._cache[key]

    def _score_topic(self, topic: str) -> np.ndarray:
        terms = list(dict.fromkeys(tokenize(topic)))
        if not self.papers or not terms:
            return np.zeros(len(self.papers))
        weights = np.array([self._idf(t) for t in terms])
        present = np.array([[t in doc for t in terms] for doc in self._terms], dtype=float)
        coverage = present @ weights / weights.sum()
        scores = np.asarray(self._bm25.get_scores(terms), dtype=float)
        best = scores.max()
        if best <= 0:
            return np.zeros(len(self.papers))
        relative = scores / best
        relevant = (coverage >= MIN_COVERAGE) & (relative >= MIN_RELATIVE)
        return np.where(relevant, relative * coverage, 0.0)

    def rank(
        self,
        topics: Sequence[str],
        candidates: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[Ranked]:
        """Relevant papers among `candidates` (ids; default all), best first."""
        if not self.papers or not topics:
            return []
        matrix = np.vstack([self.relevance(topic) for topic in topics])  # topics x papers
        ordered = -np.sort(-matrix, axis=0)
        relevance = ordered[0] + EXTRA_TOPIC_WEIGHT * ordered[1:].sum(axis=0)
        relevance = np.minimum(relevance, 1.0)
        score = (1 - TREND_WEIGHT) * relevance + TREND_WEIGHT * self._trend
        if candidates is None:
            indices = np.flatnonzero(relevance > 0)
        else:
            indices = np.array(
                [self.position[c] for c in candidates if c in self.position], dtype=int
            )
            indices = indices[relevance[indices] > 0]
        # Best score first; ties go to the higher paper on the page, then the lower id.
        order = sorted(
            indices.tolist(),
            key=lambda i: (-score[i], self.papers[i].best_position, self.papers[i].id),
        )
        if limit is not None:
            order = order[:limit]
        return [
            Ranked(
                paper_id=self.papers[i].id,
                score=round(float(score[i]), 4),
                relevance=round(float(relevance[i]), 4),
                matched=tuple(topics[t] for t in np.argsort(-matrix[:, i]) if matrix[t, i] > 0),
            )
            for i in order
        ]

    def matches_phrase(self, paper_id: int, phrase: str) -> bool:
        """Whether the paper's title or abstract holds the phrase (stemmed, in order)."""
        wanted = tokenize(phrase, keep_all=True)
        i = self.position.get(paper_id)
        if not wanted or i is None:
            return False
        if i not in self._phrases:
            paper = self.papers[i]
            self._phrases[i] = (tokenize(paper.title, True), tokenize(paper.abstract, True))
        title, abstract = self._phrases[i]
        return _contains(title, wanted) or _contains(abstract, wanted)


def _contains(tokens: list[str], wanted: list[str]) -> bool:
    width = len(wanted)
    return any(tokens[i : i + width] == wanted for i in range(len(tokens) - width + 1))
