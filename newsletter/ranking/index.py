"""The index of the papers a ranking may choose from: BM25 over their words (bm25s, the English
Snowball stemmer, the title counted twice) and, with the `semantic` extra, their sentence vectors.
A topic is scored once per concept, in two ways:

- words: BM25 in units of the concept's own IDF mass, times the share of that mass the paper
  contains, raised when the concept stands as a phrase in the title or abstract; spellings from
  the reviewed table (`text.SYNONYMS`) count as the concept ("LLM" = "large language model");
- meaning: the cosine between the concept's sentence vector and the paper's, half its whole
  title-and-abstract vector and half its closest sentence (see `embed`).

The word statistics (document frequencies, lengths) are those of the indexed papers alone.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from ..records import PaperText
from . import embed
from .embed import Encoder
from .text import (
    OF,
    american_text,
    clause_tokens,
    concepts,
    contains,
    spellings,
    tokenize,
    topical,
)

TITLE_WEIGHT = 2  # the title is indexed this many times
K1, B = 1.5, 0.75  # BM25's saturation and length normalisation (bm25s's Lucene defaults)
PHRASE_IN_TITLE = 0.6  # bonus factors when the whole concept stands as a phrase
PHRASE_IN_ABSTRACT = 0.25
WHOLE_SHARE = 0.5  # meaning: weight of the whole-paper vector against the closest sentence


@dataclass(frozen=True)
class WordStats:
    """The word statistics of a reference corpus, counted with the indexed papers' own: a day's
    window may hold a few dozen papers, too few for document frequencies to say which words are
    common in the field ("language" is in one paper of a small day and looks telling). A fixed
    table (`background`) adds them without reading any stored history, so scores neither cost
    more nor drift as papers accumulate."""

    documents: int = 0
    length: int = 0  # tokens in all
    df: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def of(documents: Sequence[list[str]]) -> WordStats:
        df: dict[str, int] = {}
        for doc in documents:
            for term in set(doc):
                df[term] = df.get(term, 0) + 1
        return WordStats(len(documents), sum(max(len(d), 1) for d in documents), df)


def paper_tokens(title: str, abstract: str) -> list[str]:
    """A paper as BM25 reads it: its title's words `TITLE_WEIGHT` times, then its abstract's."""
    return tokenize(title) * TITLE_WEIGHT + tokenize(topical(abstract))


@cache
def background() -> WordStats:
    """The shipped reference table (`newsletter/data/word-stats.json`, made from the sample
    dumps by `python -m bench.word_stats`); empty when it is missing."""
    try:
        data = json.loads(STATS.read_text(encoding="utf-8"))
        return WordStats(int(data["documents"]), int(data["length"]), dict(data["df"]))
    except (OSError, ValueError, KeyError, TypeError):
        return WordStats()


STATS = Path(__file__).resolve().parent.parent / "data" / "word-stats.json"


@dataclass(frozen=True)
class TopicScores:
    """One topic against every indexed paper: what each of its concepts found."""

    concepts: list[str]
    words: np.ndarray  # concepts x papers
    coverage: np.ndarray  # concepts x papers: share of the best spelling's IDF mass present
    phrase: np.ndarray  # concepts x papers: 1 where the concept stands whole in title or clause
    spelling_scores: list[np.ndarray]  # per concept: spellings x papers
    spelling_tokens: list[list[list[str]]]  # per concept: its spellings
    meaning: np.ndarray | None  # concepts x papers


class PaperIndex:
    """BM25 (and sentence vectors) over a set of papers; scores topics (not cached here)."""

    def __init__(
        self,
        papers: Sequence[PaperText],
        vectors: Mapping[int, np.ndarray] | None = None,
        encoder: Encoder | None = None,
        reference: WordStats | None = None,
    ):
        """`vectors`: stored sentence vectors by paper id (see `embed`); papers without them are
        embedded here when there is an `encoder`, else ranking goes by words alone.
        `reference`: word statistics counted with the papers' own (see `WordStats`)."""
        self.papers = list(papers)
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        self.titles = [tokenize(p.title) for p in self.papers]
        # what the words index reads of each abstract (`text.topical`: not where the code is)
        self.abstract_texts = [topical(p.abstract) for p in self.papers]
        self.abstracts = [tokenize(text) for text in self.abstract_texts]
        # for phrases: a concept's words must stand together within one clause
        self._clauses = [clause_tokens(text) for text in self.abstract_texts]
        self._title_clauses = [clause_tokens(p.title) for p in self.papers]
        documents = [  # (as `paper_tokens` makes them, from the tokens kept for phrases)
            title * TITLE_WEIGHT + abstract
            for title, abstract in zip(self.titles, self.abstracts, strict=True)
        ]
        self._terms = [set(doc) for doc in documents]
        self.df: dict[str, int] = {}
        for terms in self._terms:
            for term in terms:
                self.df[term] = self.df.get(term, 0) + 1
        reference = reference or WordStats()
        self._reference = reference.df
        self._lengths = np.array([max(len(doc), 1) for doc in documents], dtype=float)
        self._documents = len(documents) + reference.documents
        length = self._lengths.sum() + reference.length
        self._norm = K1 * ((1 - B) + B * self._lengths / (length / max(self._documents, 1)))
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                where, counts = postings.setdefault(term, ([], []))
                where.append(i)
                counts.append(count)
        # Per term, the papers holding it and how often, as arrays once (a run scores thousands
        # of topics against them).
        self._postings = {
            term: (np.array(where), np.array(counts, dtype=float))
            for term, (where, counts) in postings.items()
        }
        self._norms: np.ndarray | None = None  # each paper's TF-IDF length, once asked
        self._queries: dict[tuple[str, ...], np.ndarray] = {}  # concepts' sentence vectors
        self.encoder = encoder
        if self.encoder is not None and self.papers:
            self._load_vectors(vectors or {})

    def _load_vectors(self, vectors: Mapping[int, np.ndarray]) -> None:
        assert self.encoder is not None
        missing = [p for p in self.papers if p.id not in vectors]
        made: dict[int, np.ndarray] = {}
        if missing:
            texts = [embed.paper_texts(p.title, p.abstract) for p in missing]
            flat = self.encoder.encode([t for group in texts for t in group])
            at = 0
            for paper, group in zip(missing, texts, strict=True):
                made[paper.id] = flat[at : at + len(group)]
                at += len(group)
        blocks = [vectors.get(p.id, made.get(p.id)) for p in self.papers]
        self._whole = np.vstack([block[0] for block in blocks])
        self._sentences = np.vstack([block[1:] for block in blocks])
        self._starts = np.cumsum([0] + [len(block) - 1 for block in blocks[:-1]])

    def meaning_to(self, vector: np.ndarray) -> np.ndarray | None:
        """Per paper, the cosine between its whole-paper vector and `vector` (another paper's
        whole vector); None without sentence vectors."""
        if self.encoder is None or not self.papers:
            return None
        return np.clip(self._whole @ vector, -1.0, 1.0)

    def words_to(self, stems: Sequence[str]) -> np.ndarray:
        """Per paper, the cosine between its words and `stems` (another paper's, as
        `paper_tokens` makes them), each word weighted by (1 + log tf) * IDF."""
        weights = {
            term: (1.0 + math.log(count)) * self.idf(term) for term, count in Counter(stems).items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        scores = np.zeros(len(self.papers))
        if norm == 0 or not self.papers:
            return scores
        for term, weight in weights.items():
            if term in self._postings:
                where, tf = self._postings[term]
                scores[where] += weight * (1.0 + np.log(tf)) * self.idf(term)
        return scores / (norm * self._tfidf_norms())

    def _tfidf_norms(self) -> np.ndarray:
        if self._norms is None:
            squares = np.zeros(len(self.papers))
            for term, (where, tf) in self._postings.items():
                squares[where] += ((1.0 + np.log(tf)) * self.idf(term)) ** 2
            self._norms = np.sqrt(np.maximum(squares, 1e-12))
        return self._norms

    def idf(self, term: str) -> float:
        n, df = self._documents, self.df.get(term, 0) + self._reference.get(term, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def share(self, term: str) -> float:
        """The share of papers holding the term: the indexed ones counted with the reference
        table's (a 3-paper day alone says nothing about which words are common)."""
        held = self.df.get(term, 0) + self._reference.get(term, 0)
        return held / max(self._documents, 1)

    def bm25(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 (Lucene's variant, as bm25s scores it) of each paper for these terms."""
        scores = np.zeros(len(self.papers))
        for term in terms:
            if term in self._postings:
                where, tf = self._postings[term]
                scores[where] += self.idf(term) * tf / (self._norm[where] + tf)
        return scores

    def score(self, topic: str) -> TopicScores:
        """What each of the topic's concepts finds in every paper."""
        found = concepts(topic) if self.papers else []
        n = len(self.papers)
        per_concept = [self._words(concept) for concept in found]
        meaning = self.meaning(found) if found else None
        return TopicScores(
            concepts=found,
            words=np.array([w for w, _, _, _ in per_concept]).reshape(len(found), n),
            coverage=np.array([c for _, c, _, _ in per_concept]).reshape(len(found), n),
            spelling_scores=[s for _, _, (s, _), _ in per_concept],
            spelling_tokens=[t for _, _, (_, t), _ in per_concept],
            meaning=meaning,
            phrase=np.array([p for _, _, _, p in per_concept]).reshape(len(found), n),
        )

    def meaning(self, found: list[str], shift: np.ndarray | None = None) -> np.ndarray | None:
        """Concepts x papers: the cosine between each concept's sentence vector and each paper's
        (half the whole paper, half its closest sentence); None without sentence vectors.
        `shift`: added to each concept's vector first (a reader's feedback, see `learn`)."""
        if self.encoder is None or not self.papers:
            return None
        key = tuple(found)
        if key not in self._queries:  # (a reader's feedback asks again for their topics')
            self._queries[key] = self.encoder.encode([american_text(c) for c in found])
        queries = self._queries[key]  # concepts x dims
        if shift is not None:
            queries = queries + shift[None, :]
            queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-9)
        whole = self._whole @ queries.T  # papers x concepts
        closest = np.maximum.reduceat(self._sentences @ queries.T, self._starts, axis=0)
        return (WHOLE_SHARE * whole + (1 - WHOLE_SHARE) * closest).T

    def _words(
        self, concept: str
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, list], np.ndarray]:
        """A concept's words score and coverage per paper (best spelling), and per spelling."""
        n = len(self.papers)
        queries = spellings(concept)
        scores = np.zeros((len(queries), n))
        coverage = np.zeros(n)
        as_phrase = np.zeros(n)
        for row, query in enumerate(queries):
            terms = [t for t in dict.fromkeys(query) if t != OF]
            weights = np.array([self.idf(t) for t in terms])
            if weights.sum() <= 0:
                continue
            present = np.array([[t in doc for t in terms] for doc in self._terms], dtype=float)
            share = present @ weights / weights.sum()
            bm25 = self.bm25(terms) / weights.sum()
            phrase = np.array(
                [
                    PHRASE_IN_TITLE
                    if contains(title, query)
                    else PHRASE_IN_ABSTRACT
                    if len(query) > 1 and contains(abstract, query)
                    else 0.0
                    for title, abstract in zip(self._title_clauses, self._clauses, strict=True)
                ]
            )
            scores[row] = bm25 * share * (1.0 + phrase)
            coverage = np.maximum(coverage, share)
            as_phrase = np.maximum(as_phrase, phrase > 0)
        best = scores.max(axis=0) if len(queries) else np.zeros(n)
        return best, coverage, (scores, queries), as_phrase
