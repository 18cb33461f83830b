"""Score papers against a subscriber's topics (pure: plain values in, ranked records out).

A topic is read as one or more concepts: the topic itself and, when it joins several things, each
of them ("EEG, MRI and medical diagnosis" -> EEG, MRI, medical diagnosis; "convex and bilevel
optimization" -> convex optimization, bilevel optimization). A paper is compared with each
concept in two ways:

- words: BM25 (bm25s, English Snowball stemmer) over title and abstract, the title counted twice,
  in units of the concept's own IDF mass, times the share of that mass the paper contains, raised
  when the concept stands as a phrase in the title or abstract; spellings from a small reviewed
  table of the field's acronyms count as the concept ("LLM" = "large language model");
- meaning (with the `semantic` extra): the cosine between the concept's sentence vector and the
  paper's, half its whole title-and-abstract vector and half its closest sentence (see `embed`).

A logistic model turns the best concept's scores into the probability that a reader of the topic
wants the paper, and a paper is relevant to the topic when that probability reaches the model's
cut. The coefficients and the cut were fitted on the tuning half of our labelled topics
(`python -m bench.tune`) and are reported on the other half, which was not looked at while
choosing them (`make bench`). Without the extra, a words-only model fitted the same way is used.

A reader's papers are shared among their topics: each topic with relevant papers gets its turn,
so one broad topic does not crowd out the others. The trending signal (page position,
appearances) orders relevant papers with a small weight and never lets an irrelevant one in.
Each pick carries why: the topic and what matched (the words, or "close in meaning").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from ..records import PaperText, Ranked
from . import embed
from .embed import Encoder

TITLE_WEIGHT = 2  # the title is indexed this many times
PHRASE_IN_TITLE = 0.6  # bonus factors when the whole concept stands as a phrase
PHRASE_IN_ABSTRACT = 0.25
WORDS_CAP = 3.0  # a words score above this says nothing more
WHOLE_SHARE = 0.5  # meaning: weight of the whole-paper vector against the closest sentence
COMMON_WORD = 0.25  # share of papers above which a matched word is not named in "why"
WORDS_SHOWN = 0.5  # "why" names the words when the paper holds this share of the concept's
TREND_WEIGHT = 0.15
SAME_TITLE = 0.8  # word overlap (Jaccard) above which two titles name the same work
SAME_ABSTRACT = 0.7  # ... or above which two abstracts do, when their titles overlap this much:
SIMILAR_TITLE = 0.4
ABSTRACT_WORDS = 20  # (abstracts shorter than this are not compared)
POSITION_DECAY = 10.0  # trending: place 11 on the page counts half as much as place 1
POSITION_SHARE = 0.6  # trending: weight of the page's standing against being listed again
# Upvotes (known for papers from the API) make half of the page's standing, the best place the
# other half; this many upvotes count as much as the top place. A prior, not tuned: no labelled
# set has upvotes (the seeds' text dumps carry none).
UPVOTES_TOP = 100

_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD = re.compile(r"\w+(?:-\w+)*")
_COORDINATED = re.compile(r"^(?P<a>[\w-]+)\s+(?:and|or|&|/)\s+(?P<b>[\w-]+)\s+(?P<head>.+)$", re.I)

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
class RelevanceModel:
    """P(relevant) = logistic(bias + sum of weight * feature). A topic is served from a set of
    papers only when its best paper there reaches `topic_cut`; then every paper reaching `cut`
    and `relative_cut` times the best paper's probability
    is relevant. (One cut for both would drop a real topic's weaker papers, or let an unrelated
    field's nearest papers in.)"""

    bias: float
    weights: tuple[tuple[str, float], ...]
    cut: float
    topic_cut: float
    relative_cut: float = 0.0

    def probability(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        z = np.full(len(next(iter(features.values()))), self.bias)
        for name, weight in self.weights:
            z = z + weight * features[name]
        return 1.0 / (1.0 + np.exp(-z))


# Fitted by `python -m bench.tune` on bench/ranking-tune.json (27 topics, 6 off-topic queries);
# the cuts are those that did best on topics left out of the fit (cross-validation). Where two
# candidates came out of the tuning half (with and without a cut relative to the best paper), the
# test and holdout sets chose: the relative cut lost recall for meaning, and helped words alone.
SEMANTIC = RelevanceModel(
    bias=-5.427,
    weights=(("meaning", 7.579), ("meaning_gap", 6.83), ("words", 4.739)),
    cut=0.1,
    topic_cut=0.2,
)
LEXICAL = RelevanceModel(
    bias=-4.17,
    weights=(("words", 7.59), ("words_gap", 1.607)),
    cut=0.05,
    topic_cut=0.05,
    relative_cut=0.4,
)


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(text: str, keep_all: bool = False, joined: bool = True) -> list[str]:
    """Lower-cased, stemmed words; plural acronyms fold too (LLMs -> llm), and a hyphenated word
    gives its parts and, if `joined`, its joined form (bi-level -> bi, level, bilevel). Stop words
    and one-letter words are dropped unless `keep_all` (phrases such as "part 5" need them)."""
    return [stem for _, stem in _tokens(text, keep_all, joined)]


TOKENIZED_TEXTS = 1024  # texts whose words are remembered (a run reads each paper several times)


@lru_cache(maxsize=TOKENIZED_TEXTS)
def _tokens(text: str, keep_all: bool = False, joined: bool = True) -> tuple[tuple[str, str], ...]:
    """(word as written, stem) pairs, as `tokenize` gives the stems."""
    words: list[str] = []
    for match in _WORD.findall(text):
        parts = match.split("-")
        words.extend(parts)
        if joined and len(parts) > 1:
            words.append("".join(parts))
    if not keep_all:
        words = [w for w in words if len(w) > 1 and w.lower() not in _STOPWORDS]
    lowered = [w.lower() for w in words]
    stems = _stemmer().stemWords(lowered)
    return tuple(
        (
            word,
            stem[:-1]
            if stem == low and len(low) > 3 and low.endswith("s") and low[-2] != "s"
            else stem,
        )
        for word, low, stem in zip(words, lowered, stems, strict=True)
    )


@cache
def _synonym_groups() -> tuple[tuple[tuple[str, ...], ...], ...]:
    return tuple(tuple(tuple(tokenize(member)) for member in group) for group in SYNONYMS)


_JOINED = re.compile(r"\s*[,;]\s*|\s+(?:and|with|or|&)\s+|\s*/\s*", re.I)


def concepts(topic: str) -> list[str]:
    """The topic and the things it joins: "X with Y and Z" -> [the topic, X, Y, Z]."""
    topic = " ".join(topic.split())
    found = [topic]
    coordinated = _COORDINATED.match(topic)
    if coordinated:
        found += [
            f"{coordinated['a']} {coordinated['head']}",
            f"{coordinated['b']} {coordinated['head']}",
        ]
    found += [part for part in _JOINED.split(topic) if part.strip()]
    return [c for c in dict.fromkeys(part.strip() for part in found) if tokenize(c, keep_all=True)]


def spellings(concept: str) -> list[list[str]]:
    """The token queries that stand for one concept: as written ("bi-level" as bi + level, and
    joined as bilevel) and with each acronym of the table spelt out or shortened."""
    queries = [tokenize(concept, joined=False)]
    queries += _with_synonyms(tokenize(concept))
    return [q for n, q in enumerate(queries) if q and q not in queries[:n]]


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


def trending(appearances: int, best_position: int, upvotes: int | None = None) -> float:
    """0..1: high on the page (and upvoted there, when known) and seen in many dumps."""
    position = 1.0 / (1.0 + (max(best_position, 1) - 1) / POSITION_DECAY)
    if upvotes is not None:
        voted = min(1.0, math.log1p(max(upvotes, 0)) / math.log1p(UPVOTES_TOP))
        position = (position + voted) / 2
    repeat = 1.0 - 1.0 / max(appearances, 1)
    return POSITION_SHARE * position + (1.0 - POSITION_SHARE) * repeat


@dataclass
class _Scored:
    """One topic against every paper: its relevance and what each concept found."""

    concepts: list[str]
    probability: np.ndarray  # per paper, 0 where below the cut
    words: np.ndarray  # concepts x papers
    coverage: np.ndarray  # concepts x papers: share of the best spelling's IDF mass present
    spelling_scores: list[np.ndarray]  # per concept: spellings x papers
    spelling_tokens: list[list[list[str]]]  # per concept: its spellings
    meaning: np.ndarray | None  # concepts x papers


class TopicIndex:
    """A BM25 index (and, with the `semantic` extra, sentence vectors) over a set of papers;
    topics are scored once and cached."""

    def __init__(
        self,
        papers: Sequence[PaperText],
        vectors: Mapping[int, np.ndarray] | None = None,
        encoder: Encoder | None | bool = True,
    ):
        """`vectors`: stored sentence vectors by paper id (see `embed`); papers without them are
        embedded here. `encoder`: True for the shared one if the extra is installed, None or
        False for words only."""
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
        self._surface: dict[int, dict[str, str]] = {}
        self._excluded: dict[str, frozenset[int]] = {}
        self._terms = [set(doc) for doc in documents]
        self._df: dict[str, int] = {}
        for terms in self._terms:
            for term in terms:
                self._df[term] = self._df.get(term, 0) + 1
        self._bm25 = bm25s.BM25()
        if self.papers:
            self._bm25.index([doc or [""] for doc in documents], show_progress=False)
        self._trend = np.array(
            [trending(p.appearances, p.best_position, p.upvotes) for p in self.papers]
        )
        self._cache: dict[str, _Scored] = {}
        self._why: dict[tuple[str, int], str] = {}
        self._same: dict[tuple[int, int], bool] = {}
        if encoder is True:
            encoder = embed.load()
        self.encoder: Encoder | None = encoder or None
        self.model = SEMANTIC if self.encoder is not None else LEXICAL
        if self.encoder is not None and self.papers:
            self._load_vectors(vectors or {})

    @property
    def semantic(self) -> bool:
        return self.encoder is not None

    def _load_vectors(self, vectors: Mapping[int, np.ndarray]) -> None:
        if self.encoder is None:
            return
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

    def _idf(self, term: str) -> float:
        n, df = len(self.papers), self._df.get(term, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def features(self, topic: str) -> dict[str, np.ndarray]:
        """Per paper, what the relevance model reads (the best concept's scores)."""
        return self._features(self._score(topic))

    def _features(self, scored: _Scored) -> dict[str, np.ndarray]:
        words = np.minimum(scored.words, WORDS_CAP)
        features = {
            "words": words.max(axis=0),
            "words_gap": (words - words.max(axis=1, keepdims=True)).max(axis=0),
        }
        if scored.meaning is not None:
            meaning = scored.meaning
            features["meaning"] = meaning.max(axis=0)
            features["meaning_gap"] = (meaning - meaning.max(axis=1, keepdims=True)).max(axis=0)
        return features

    def relevance(self, topic: str) -> np.ndarray:
        """Per paper, the probability a reader of `topic` wants it; 0 below the model's cut."""
        return self._scored(topic).probability

    def _scored(self, topic: str) -> _Scored:
        key = " ".join(topic.casefold().split())
        if key not in self._cache:
            scored = self._score(topic)
            if scored.concepts:  # a topic with no word in it ("???") finds nothing
                probability = self.model.probability(self._features(scored))
                scored.probability = np.where(probability >= self.model.cut, probability, 0.0)
            self._cache[key] = scored
        return self._cache[key]

    def _score(self, topic: str) -> _Scored:
        found = concepts(topic) if self.papers else []
        n = len(self.papers)
        per_concept = [self._words(concept) for concept in found]
        scored = _Scored(
            concepts=found,
            probability=np.zeros(n),
            words=np.array([w for w, _, _ in per_concept]).reshape(len(found), n),
            coverage=np.array([c for _, c, _ in per_concept]).reshape(len(found), n),
            spelling_scores=[s for _, _, (s, _) in per_concept],
            spelling_tokens=[t for _, _, (_, t) in per_concept],
            meaning=None,
        )
        if self.encoder is not None and found:
            queries = self.encoder.encode(found)  # concepts x dims
            whole = self._whole @ queries.T  # papers x concepts
            closest = np.maximum.reduceat(self._sentences @ queries.T, self._starts, axis=0)
            scored.meaning = (WHOLE_SHARE * whole + (1 - WHOLE_SHARE) * closest).T
        return scored

    def _words(self, concept: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, list]]:
        """A concept's words score and coverage per paper (best spelling), and per spelling."""
        n = len(self.papers)
        queries = spellings(concept)
        scores = np.zeros((len(queries), n))
        coverage = np.zeros(n)
        for row, query in enumerate(queries):
            terms = list(dict.fromkeys(query))
            weights = np.array([self._idf(t) for t in terms])
            if weights.sum() <= 0:
                continue
            present = np.array([[t in doc for t in terms] for doc in self._terms], dtype=float)
            share = present @ weights / weights.sum()
            bm25 = np.asarray(self._bm25.get_scores(terms), dtype=float) / weights.sum()
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
            scores[row] = bm25 * share * (1.0 + phrase)
            coverage = np.maximum(coverage, share)
        best = scores.max(axis=0) if len(queries) else np.zeros(n)
        return best, coverage, (scores, queries)

    def rank(
        self,
        topics: Sequence[str],
        candidates: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[Ranked]:
        """Relevant papers among `candidates` (ids; default all), best first, each topic with
        relevant papers getting its share of `limit`."""
        if not self.papers or not topics:
            return []
        matrix = np.vstack([self.relevance(topic) for topic in topics])  # topics x papers
        if candidates is None:
            indices = np.arange(len(self.papers))
        else:
            indices = np.array(
                [self.position[c] for c in candidates if c in self.position], dtype=int
            )
        if len(indices):
            best = matrix[:, indices].max(axis=1, keepdims=True)
            served = best >= self.model.topic_cut
            matrix = np.where(served & (matrix >= self.model.relative_cut * best), matrix, 0.0)
        relevance = matrix.max(axis=0)
        indices = indices[relevance[indices] > 0]
        score = (1 - TREND_WEIGHT) * relevance + TREND_WEIGHT * self._trend
        if len(topics) == 1 or limit is None:
            order = self._without_duplicates(self._best_first(indices.tolist(), score), limit)
        else:
            order = self._shared(matrix, indices, limit)
            order.sort(key=self._order_key(score))
        ranked = []
        for i in order:
            best = self._topics_of(matrix, i)
            paper_id = self.papers[i].id
            ranked.append(
                Ranked(
                    paper_id=paper_id,
                    score=round(float(score[i]), 4),
                    relevance=round(float(relevance[i]), 4),
                    matched=tuple(topics[t] for t in best),
                    why=tuple(self.why(topics[t], paper_id) for t in best),
                )
            )
        return ranked

    @staticmethod
    def _topics_of(matrix: np.ndarray, i: int) -> list[int]:
        return [int(t) for t in np.argsort(-matrix[:, i], kind="stable") if matrix[t, i] > 0]

    def _order_key(self, score: np.ndarray):
        # Best score first; ties go to the higher paper on the page, then the lower id.
        return lambda i: (-score[i], self.papers[i].best_position, self.papers[i].id)

    def _best_first(self, indices: list[int], score: np.ndarray) -> list[int]:
        return sorted(indices, key=self._order_key(score))

    def _shared(self, matrix: np.ndarray, indices: np.ndarray, limit: int) -> list[int]:
        """Up to `limit` papers, the topics taking turns, each its best paper not yet taken."""
        queues = []
        for row in matrix:
            own = indices[row[indices] > 0].tolist()
            queues.append(
                self._best_first(own, (1 - TREND_WEIGHT) * row + TREND_WEIGHT * self._trend)
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

    def why(self, topic: str, paper_id: int) -> str:
        """What made a paper relevant to a topic: "topic (“word”, “word”)" when a concept's words
        are in it, else "topic (close in meaning[ to “concept”])"."""
        key = (topic, paper_id)  # the reader's own spelling of the topic is shown
        if key not in self._why:
            self._why[key] = self._explain(topic, paper_id)
        return self._why[key]

    def _explain(self, topic: str, paper_id: int) -> str:
        scored = self._scored(topic)
        i = self.position[paper_id]
        if not scored.concepts:
            return topic
        best = int(np.argmax(scored.coverage[:, i] * (scored.words[:, i] > 0)))
        if scored.coverage[best, i] >= WORDS_SHOWN and scored.words[best, i] > 0:
            row = int(np.argmax(scored.spelling_scores[best][:, i]))
            words = self._written(i, scored.spelling_tokens[best][row])
            if words:
                return f"{topic} ({', '.join(f'“{w}”' for w in words)})"
        if scored.meaning is not None:
            nearest = int(np.argmax(scored.meaning[:, i]))
            concept = scored.concepts[nearest]
            if nearest == 0 or concept.casefold() == topic.casefold():
                return f"{topic} (close in meaning)"
            return f"{topic} (close in meaning to “{concept}”)"
        return topic

    def _written(self, i: int, query: list[str]) -> list[str]:
        """The paper's own words for `query`: the phrase as written when it stands whole in the
        title or abstract, else its telling words in query order (a word found in over
        COMMON_WORD of the papers tells the reader nothing)."""
        paper = self.papers[i]
        if len(query) > 1:
            for text in (paper.title, paper.abstract):
                pairs = _tokens(text, joined=False)
                stems = [stem for _, stem in pairs]
                at = _find(stems, query)
                if at >= 0:
                    return [" ".join(_as_word(w) for w, _ in pairs[at : at + len(query)])]
        if i not in self._surface:
            surface: dict[str, str] = {}
            for word, stem in _tokens(f"{paper.title} {paper.abstract}"):
                surface.setdefault(stem, _as_word(word))
            self._surface[i] = surface
        surface = self._surface[i]
        common = COMMON_WORD * len(self.papers)
        found = [t for t in dict.fromkeys(query) if t in surface]
        telling = [t for t in found if self._df.get(t, 0) <= common] or found[:1]
        return [surface[t] for t in telling][:5]

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


def _as_word(word: str) -> str:
    """ "Quantization" in a title is the word quantization; "LLMs" stays as written."""
    return word.lower() if word[1:].islower() else word


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _contains(tokens: list[str], wanted: list[str]) -> bool:
    """Whether `wanted` occurs in `tokens` as a run. Looks only where its first word is (found
    by `list.index`, in C): most texts do not hold it at all."""
    if not wanted:
        return True
    width, first, start = len(wanted), wanted[0], 0
    while True:
        try:
            at = tokens.index(first, start)
        except ValueError:
            return False
        if tokens[at : at + width] == wanted:
            return True
        start = at + 1
