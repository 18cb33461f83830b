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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from ..records import PaperText
from . import embed
from .embed import Encoder
from .text import concepts, contains, spellings, tokenize

TITLE_WEIGHT = 2  # the title is indexed this many times
PHRASE_IN_TITLE = 0.6  # bonus factors when the whole concept stands as a phrase
PHRASE_IN_ABSTRACT = 0.25
WHOLE_SHARE = 0.5  # meaning: weight of the whole-paper vector against the closest sentence


@dataclass(frozen=True)
class TopicScores:
    """One topic against every indexed paper: what each of its concepts found."""

    concepts: list[str]
    words: np.ndarray  # concepts x papers
    coverage: np.ndarray  # concepts x papers: share of the best spelling's IDF mass present
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
    ):
        """`vectors`: stored sentence vectors by paper id (see `embed`); papers without them are
        embedded here when there is an `encoder`, else ranking goes by words alone."""
        self.papers = list(papers)
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        self.titles = [tokenize(p.title) for p in self.papers]
        self.abstracts = [tokenize(p.abstract) for p in self.papers]
        documents = [
            title * TITLE_WEIGHT + abstract
            for title, abstract in zip(self.titles, self.abstracts, strict=True)
        ]
        self._terms = [set(doc) for doc in documents]
        self.df: dict[str, int] = {}
        for terms in self._terms:
            for term in terms:
                self.df[term] = self.df.get(term, 0) + 1
        self._bm25 = bm25s.BM25()
        if self.papers:
            self._bm25.index([doc or [""] for doc in documents], show_progress=False)
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

    def idf(self, term: str) -> float:
        n, df = len(self.papers), self.df.get(term, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def score(self, topic: str) -> TopicScores:
        """What each of the topic's concepts finds in every paper."""
        found = concepts(topic) if self.papers else []
        n = len(self.papers)
        per_concept = [self._words(concept) for concept in found]
        meaning = None
        if self.encoder is not None and found:
            queries = self.encoder.encode(found)  # concepts x dims
            whole = self._whole @ queries.T  # papers x concepts
            closest = np.maximum.reduceat(self._sentences @ queries.T, self._starts, axis=0)
            meaning = (WHOLE_SHARE * whole + (1 - WHOLE_SHARE) * closest).T
        return TopicScores(
            concepts=found,
            words=np.array([w for w, _, _ in per_concept]).reshape(len(found), n),
            coverage=np.array([c for _, c, _ in per_concept]).reshape(len(found), n),
            spelling_scores=[s for _, _, (s, _) in per_concept],
            spelling_tokens=[t for _, _, (_, t) in per_concept],
            meaning=meaning,
        )

    def _words(self, concept: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, list]]:
        """A concept's words score and coverage per paper (best spelling), and per spelling."""
        n = len(self.papers)
        queries = spellings(concept)
        scores = np.zeros((len(queries), n))
        coverage = np.zeros(n)
        for row, query in enumerate(queries):
            terms = list(dict.fromkeys(query))
            weights = np.array([self.idf(t) for t in terms])
            if weights.sum() <= 0:
                continue
            present = np.array([[t in doc for t in terms] for doc in self._terms], dtype=float)
            share = present @ weights / weights.sum()
            bm25 = np.asarray(self._bm25.get_scores(terms), dtype=float) / weights.sum()
            phrase = np.array(
                [
                    PHRASE_IN_TITLE
                    if contains(title, query)
                    else PHRASE_IN_ABSTRACT
                    if len(query) > 1 and contains(abstract, query)
                    else 0.0
                    for title, abstract in zip(self.titles, self.abstracts, strict=True)
                ]
            )
            scores[row] = bm25 * share * (1.0 + phrase)
            coverage = np.maximum(coverage, share)
        best = scores.max(axis=0) if len(queries) else np.zeros(n)
        return best, coverage, (scores, queries)
