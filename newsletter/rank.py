"""Score papers against a subscriber's topics (pure: plain values in, ranked records out).

Each topic becomes one or more queries: the topic itself, its parts when it coordinates two
things ("convex and bilevel optimization" → "convex optimization", "bilevel optimization"), and
its spellings from a small reviewed table of the field's acronyms ("LLM" ↔ "large language
model"). Each query is scored with BM25 (bm25s, English Snowball stemmer) over title and abstract,
the title counted twice, normalised by the query's own IDF mass so queries are comparable, and
raised when the query stands as a phrase in the title or abstract. A paper is relevant to a topic
only when one query finds most of its words in it (IDF-weighted coverage) and scores high enough
in absolute terms and next to the best paper; those topics are the paper's "matched" topics, shown
in the email as why it was picked. The trending signal (page position, appearances) is blended in
with a small weight, so it orders relevant papers and never lets an off-topic one in.
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
MIN_COVERAGE = 0.5  # share of a query's IDF mass a paper must contain
MIN_SCORE = 0.3  # normalised BM25: about a third of the query's weight, each word once
MIN_RELATIVE = 0.2  # share of the best paper's score for the topic
PHRASE_IN_TITLE = 0.6  # bonus factors when the whole query stands as a phrase
PHRASE_IN_ABSTRACT = 0.25
TREND_WEIGHT = 0.15
EXTRA_TOPIC_WEIGHT = 0.25  # each further matched topic adds this share of its relevance
SAME_TITLE = 0.8  # word overlap (Jaccard) above which two titles name the same work
SAME_ABSTRACT = 0.7

_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD = re.compile(r"\w+(?:-\w+)*")
_COORDINATED = re.compile(r"^(?P<a>[\w-]+)\s+(?:and|or|&|/)\s+(?P<b>[\w-]+)\s+(?P<head>.+)$", re.I)
_PARTS = re.compile(r"\s+(?:and|or|&)\s+|\s*/\s*", re.I)

# Spellings of the same thing in this field, reviewed by hand: each group's members are
# interchangeable in a query. Keep entries unambiguous in ML papers.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("large language model", "llm"),
    ("vision transformer", "vit"),
    ("graph neural network", "gnn"),
    ("convolutional neural network", "cnn", "convnet"),
    ("recurrent neural network", "rnn"),
    ("neural radiance field", "nerf"),
    ("partial differential equation", "pde"),
    ("mixture of experts", "moe"),
    ("kv cache", "key value cache"),
    ("neural architecture search", "nas"),
    ("reinforcement learning", "rl"),
    ("automatic speech recognition", "asr"),
    ("natural language processing", "nlp"),
    ("generative adversarial network", "gan"),
    ("variational autoencoder", "vae"),
    ("retrieval augmented generation", "rag"),
    ("low rank adaptation", "lora"),
    ("graphics processing unit", "gpu"),
    ("tensor processing unit", "tpu"),
    ("post training quantization", "ptq"),
    ("quantization aware training", "qat"),
    ("state space model", "ssm"),
    ("multilayer perceptron", "mlp"),
    ("continual learning", "lifelong learning", "incremental learning"),
    ("hypernetwork", "hypernet"),
    ("diffusion model", "diffusion probabilistic model", "score based generative model"),
    ("knowledge graph", "kg"),
    ("object detection", "object detector"),
)


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


def tokenize(text: str, keep_all: bool = False, joined: bool = True) -> list[str]:
    """Lower-cased, stemmed words; plural acronyms fold too (LLMs -> llm), and a hyphenated word
    gives its parts and, if `joined`, its joined form (bi-level -> bi, level, bilevel). Stop words
    and one-letter words are dropped unless `keep_all` (phrases such as "part 5" need them)."""
    words: list[str] = []
    for match in _WORD.findall(text.lower()):
        parts = match.split("-")
        words.extend(parts)
        if joined and len(parts) > 1:
            words.append("".join(parts))
    if not keep_all:
        words = [w for w in words if len(w) > 1 and w not in _STOPWORDS]
    stems = _stemmer().stemWords(words)
    return [
        stem[:-1]
        if stem == word and len(word) > 3 and word.endswith("s") and word[-2] != "s"
        else stem
        for word, stem in zip(words, stems, strict=True)
    ]


@cache
def _synonym_groups() -> tuple[tuple[tuple[str, ...], ...], ...]:
    return tuple(tuple(tuple(tokenize(member)) for member in group) for group in SYNONYMS)


def expand_topic(topic: str) -> list[list[str]]:
    """The token queries that stand for a topic: itself, its coordinated parts, their synonyms."""
    texts = [topic]
    coordinated = _COORDINATED.match(topic.strip())
    if coordinated:
        texts += [
            f"{coordinated['a']} {coordinated['head']}",
            f"{coordinated['b']} {coordinated['head']}",
        ]
    elif _PARTS.search(topic):
        texts += [part for part in _PARTS.split(topic) if part.strip()]
    queries: list[list[str]] = []
    for text in texts:
        # "bi-level" asks for bi + level, and as a second query for bilevel
        spellings = [tokenize(text, joined=False), tokenize(text.replace("-", ""))]
        for spelling in spellings:
            for tokens in _with_synonyms(spelling):
                if tokens and tokens not in queries:
                    queries.append(tokens)
    return queries


def _with_synonyms(tokens: list[str]) -> list[list[str]]:
    variants = [tokens]
    for group in _synonym_groups():
        for member in group:
            at = _find(tokens, list(member))
            if at < 0:
                continue
            for other in group:
                if other != member:
                    variants.append(tokens[:at] + list(other) + tokens[at + len(member) :])
            break
    return variants


def _find(tokens: list[str], wanted: list[str]) -> int:
    width = len(wanted)
    for i in range(len(tokens) - width + 1):
        if tokens[i : i + width] == wanted:
            return i
    return -1


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
        self._titles = [tokenize(p.title) for p in self.papers]
        self._abstracts = [tokenize(p.abstract) for p in self.papers]
        documents = [
            title * TITLE_WEIGHT + abstract
            for title, abstract in zip(self._titles, self._abstracts, strict=True)
        ]
        self._phrases: dict[int, tuple[list[str], list[str]]] = {}  # filled when exclusions ask
        self._title_sets: dict[int, set[str]] = {}
        self._excluded: dict[str, frozenset[int]] = {}
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
        best = np.zeros(len(self.papers))
        if not self.papers:
            return best
        for query in expand_topic(topic):
            best = np.maximum(best, self._score_query(query))
        top = best.max()
        if top < MIN_SCORE:
            return np.zeros(len(self.papers))
        relevant = (best >= MIN_SCORE) & (best >= MIN_RELATIVE * top)
        return np.where(relevant, best / top, 0.0)

    def _score_query(self, query: list[str]) -> np.ndarray:
        """BM25 of one token query, in units of the query's IDF mass, with a phrase bonus; 0 for
        papers that lack too much of it."""
        terms = list(dict.fromkeys(query))
        weights = np.array([self._idf(t) for t in terms])
        if weights.sum() <= 0:
            return np.zeros(len(self.papers))
        present = np.array([[t in doc for t in terms] for doc in self._terms], dtype=float)
        coverage = present @ weights / weights.sum()
        scores = np.asarray(self._bm25.get_scores(terms), dtype=float) / weights.sum()
        phrase = np.array(
            [
                PHRASE_IN_TITLE
                if _contains(title, query)
                else PHRASE_IN_ABSTRACT
                if len(query) > 1 and _contains(abstract, query)
                else 0.0
                for title, abstract in zip(self._titles, self._abstracts, strict=True)
            ]
        )
        return np.where(coverage >= MIN_COVERAGE, scores * coverage * (1.0 + phrase), 0.0)

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
        order = self._without_duplicates(
            sorted(
                indices.tolist(),
                key=lambda i: (-score[i], self.papers[i].best_position, self.papers[i].id),
            ),
            limit,
        )
        return [
            Ranked(
                paper_id=self.papers[i].id,
                score=round(float(score[i]), 4),
                relevance=round(float(relevance[i]), 4),
                matched=tuple(topics[t] for t in np.argsort(-matrix[:, i]) if matrix[t, i] > 0),
            )
            for i in order
        ]

    def _without_duplicates(self, order: list[int], limit: int | None) -> list[int]:
        """Keep the better of papers that look like the same work under two titles."""
        kept: list[int] = []
        for i in order:
            if limit is not None and len(kept) >= limit:
                break
            if not any(self._same_work(i, j) for j in kept):
                kept.append(i)
        return kept

    def _same_work(self, i: int, j: int) -> bool:
        titles = _jaccard(self._title_words(i), self._title_words(j))
        if titles >= SAME_TITLE:
            return True
        a, b = set(self._abstracts[i]), set(self._abstracts[j])
        return titles >= 0.4 and min(len(a), len(b)) >= 20 and _jaccard(a, b) >= SAME_ABSTRACT

    def _title_words(self, i: int) -> set[str]:
        # Every word counts here, numbers too: "Part 5" and "Part 6" are two works.
        if i not in self._title_sets:
            self._title_sets[i] = set(tokenize(self.papers[i].title, keep_all=True))
        return self._title_sets[i]

    def excluded(self, phrase: str) -> frozenset[int]:
        """Ids of the papers whose title or abstract holds the phrase; worked out once."""
        key = phrase.casefold()
        if key not in self._excluded:
            self._excluded[key] = frozenset(
                p.id for p in self.papers if self.matches_phrase(p.id, phrase)
            )
        return self._excluded[key]

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


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _contains(tokens: list[str], wanted: list[str]) -> bool:
    width = len(wanted)
    return any(tokens[i : i + width] == wanted for i in range(len(tokens) - width + 1))
