"""Which relevant papers a reader gets and in which order (pure): a topic is served only when its
best paper reaches the model's topic cut; the reader's topics take turns, each its best paper not
yet taken, so one broad topic does not crowd out the others; trending orders relevant papers with
a small weight and never lets an irrelevant one in; two papers that look like the same work under
two titles are one pick; a paper about an `exclude` phrase is left out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..records import PaperText
from .model import TREND_WEIGHT, RelevanceModel, trending
from .text import contains, tokenize

SAME_TITLE = 0.8  # word overlap (Jaccard) above which two titles name the same work
SAME_ABSTRACT = 0.7  # ... or above which two abstracts do, when their titles overlap this much:
SIMILAR_TITLE = 0.4
ABSTRACT_WORDS = 20  # (abstracts shorter than this are not compared)
# An `exclude` phrase drops a paper that is about it: in its title, said this many times in its
# abstract, or said once by a paper relevant to the phrase as a topic (see
# `rank.TopicIndex.excluded`); a paper using the word once in passing ("we survey techniques")
# stays, and where its code is counts for nothing ("The code is released at …").
ABSTRACT_MENTIONS = 2


class Selection:
    """Choosing among one set of papers; what it works out of them is kept between readers."""

    def __init__(
        self,
        papers: Sequence[PaperText],
        abstracts: Sequence[list[str]],
        texts: Sequence[str],
    ):
        """`abstracts`: each paper's abstract as stems (the index has them); `texts`: each
        abstract as the index reads it (`text.topical`: its sentences on where the code is cut
        to their links), which `exclude` phrases are matched in."""
        self.papers = list(papers)
        self._texts = texts
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        self._abstracts = abstracts
        self.trend = np.array(
            [trending(p.appearances, p.best_position, p.upvotes) for p in self.papers]
        )
        self._same: dict[tuple[int, int], bool] = {}
        self._title_sets: dict[int, set[str]] = {}
        self._phrases: dict[int, tuple[list[str], list[str]]] = {}
        self._mentioning: dict[tuple[str, int], frozenset[int]] = {}

    def choose(
        self,
        matrix: np.ndarray,
        listing: np.ndarray,
        model: RelevanceModel,
        candidates: Iterable[int] | None,
        limit: int | None,
    ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """From a topics x papers relevance matrix, which alone decides who gets a paper, and a
        topics x papers matrix of how high each is listed (`model.order`), which trending joins
        with a small weight: the chosen papers' positions, best first; the relevance matrix as
        served (topics below their cut emptied); and each paper's score as listed."""
        if candidates is None:
            indices = np.arange(len(self.papers))
        else:
            indices = np.array(
                [self.position[c] for c in candidates if c in self.position], dtype=int
            )
        if len(indices):
            best = matrix[:, indices].max(axis=1, keepdims=True)
            served = best >= model.topic_cut
            matrix = np.where(served & (matrix >= model.relative_cut * best), matrix, 0.0)
        relevance = matrix.max(axis=0)
        indices = indices[relevance[indices] > 0]
        listed = np.where(matrix > 0, listing, 0.0)
        score = (1 - TREND_WEIGHT) * listed.max(axis=0) + TREND_WEIGHT * self.trend
        if len(matrix) == 1 or limit is None:
            order = self._without_duplicates(self._best_first(indices.tolist(), score), limit)
        else:
            order = self._shared(matrix, listed, indices, limit)
            order.sort(key=self._order_key(score))
        return order, matrix, score

    def _order_key(self, score: np.ndarray) -> Callable[[int], tuple[float, int, int]]:
        # Best score first; ties go to the higher paper on the page, then the lower id.
        return lambda i: (-score[i], self.papers[i].best_position, self.papers[i].id)

    def _best_first(self, indices: list[int], score: np.ndarray) -> list[int]:
        return sorted(indices, key=self._order_key(score))

    def _shared(
        self, matrix: np.ndarray, listed: np.ndarray, indices: np.ndarray, limit: int
    ) -> list[int]:
        """Up to `limit` papers, the topics taking turns, each its best paper not yet taken."""
        queues = []
        for row, listing in zip(matrix, listed, strict=True):
            own = indices[row[indices] > 0].tolist()
            queues.append(
                self._best_first(own, (1 - TREND_WEIGHT) * listing + TREND_WEIGHT * self.trend)
            )
        kept: list[int] = []
        taken: set[int] = set()
        while len(kept) < limit and any(queues):
            for queue in queues:
                while queue:
                    i = queue.pop(0)
                    if i in taken:
                        continue
                    taken.add(i)
                    if not any(self._same_work(i, j) for j in kept):
                        kept.append(i)
                        break
                if len(kept) >= limit:
                    break
        return kept

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
        pair = (i, j) if i < j else (j, i)
        if pair not in self._same:
            self._same[pair] = self._looks_alike(i, j)
        return self._same[pair]

    def _looks_alike(self, i: int, j: int) -> bool:
        titles = _jaccard(self._title_words(i), self._title_words(j))
        if titles >= SAME_TITLE:
            return True
        a, b = set(self._abstracts[i]), set(self._abstracts[j])
        return (
            titles >= SIMILAR_TITLE
            and min(len(a), len(b)) >= ABSTRACT_WORDS
            and _jaccard(a, b) >= SAME_ABSTRACT
        )

    def _title_words(self, i: int) -> set[str]:
        # Every word counts here, numbers too: "Part 5" and "Part 6" are two works.
        if i not in self._title_sets:
            self._title_sets[i] = set(tokenize(self.papers[i].title, keep_all=True))
        return self._title_sets[i]

    def mentioning(self, phrase: str, times: int = 1) -> frozenset[int]:
        """Ids of the papers whose title holds the phrase, or whose abstract says it at least
        `times` times (stemmed, in order); worked out once."""
        key = (phrase.casefold(), times)
        if key not in self._mentioning:
            wanted = tokenize(phrase, keep_all=True)
            self._mentioning[key] = frozenset(
                p.id
                for i, p in enumerate(self.papers)
                if wanted and self._mentions(i, wanted, times)
            )
        return self._mentioning[key]

    def _mentions(self, i: int, wanted: list[str], times: int) -> bool:
        if i not in self._phrases:
            paper = self.papers[i]
            self._phrases[i] = (tokenize(paper.title, True), tokenize(self._texts[i], True))
        title, abstract = self._phrases[i]
        return contains(title, wanted) or occurrences(abstract, wanted) >= times


def occurrences(stems: list[str], wanted: list[str]) -> int:
    """How many times `wanted` stands as a run in `stems`."""
    width = len(wanted)
    return sum(stems[i : i + width] == wanted for i in range(len(stems) - width + 1))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0
