"""Why a paper was picked for a topic, in the reader's words: the phrase or the telling words of
the concept the paper holds, as the paper writes them, or "close in meaning" (pure)."""

from __future__ import annotations

import numpy as np

from .index import PaperIndex, TopicScores
from .text import CLAUSE_END, OF, find, tokens

COMMON_WORD = 0.25  # share of papers above which a matched word is not named in "why"
WORDS_SHOWN = 0.5  # "why" names the words when the paper holds this share of the concept's


class Explainer:
    """Explanations over one index; each paper's words as written are looked up once."""

    def __init__(self, index: PaperIndex):
        self.index = index
        self._surface: dict[int, dict[str, str]] = {}

    def explain(self, topic: str, paper_id: int, scores: TopicScores) -> str:
        """ "topic (“word”, “word”)" when a concept's words are in the paper, else "topic (close
        in meaning[ to “concept”])"."""
        i = self.index.position[paper_id]
        if not scores.concepts:
            return topic
        best = int(np.argmax(scores.coverage[:, i] * (scores.words[:, i] > 0)))
        if scores.coverage[best, i] >= WORDS_SHOWN and scores.words[best, i] > 0:
            row = int(np.argmax(scores.spelling_scores[best][:, i]))
            words = self._written(i, scores.spelling_tokens[best][row])
            if words:
                return f"{topic} ({', '.join(f'“{w}”' for w in words)})"
        if scores.meaning is not None:
            nearest = int(np.argmax(scores.meaning[:, i]))
            concept = scores.concepts[nearest]
            if nearest == 0 or concept.casefold() == topic.casefold():
                return f"{topic} (close in meaning)"
            return f"{topic} (close in meaning to “{concept}”)"
        return topic

    def _written(self, i: int, query: list[str]) -> list[str]:
        """The paper's own words for `query`: the phrase as written when it stands whole in the
        title or abstract, else its telling words in query order (a word found in over
        COMMON_WORD of the papers tells the reader nothing: with only such words, nothing)."""
        paper, abstract = self.index.papers[i], self.index.abstract_texts[i]  # (as indexed)
        if len(query) > 1:
            for text in (paper.title, *CLAUSE_END.split(abstract)):
                pairs = tokens(text, joined=False, mark_of=True)
                stems = [stem for _, stem in pairs]
                at = find(stems, query)
                if at >= 0:
                    return [" ".join(_as_word(w) for w, _ in pairs[at : at + len(query)])]
        if i not in self._surface:
            surface: dict[str, str] = {}
            for word, stem in tokens(f"{paper.title} {abstract}"):
                surface.setdefault(stem, _as_word(word))
            self._surface[i] = surface
        surface = self._surface[i]
        found = [t for t in dict.fromkeys(query) if t in surface and t != OF]
        telling = [t for t in found if self.index.share(t) <= COMMON_WORD]
        return [surface[t] for t in telling][:5]  # (none: the words do not say why)


def _as_word(word: str) -> str:
    """ "Quantization" in a title is the word quantization; "LLMs" stays as written."""
    return word.lower() if word[1:].islower() else word
