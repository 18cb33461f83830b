"""Words of topics and papers: stems, the concepts a topic joins, the field's spellings of one
thing (a small reviewed table of acronyms), and phrases found in order (pure)."""

from __future__ import annotations

import re
from functools import cache, lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD = re.compile(r"\w+(?:-\w+)*")
_COORDINATED = re.compile(r"^(?P<a>[\w-]+)\s+(?:and|or|&|/)\s+(?P<b>[\w-]+)\s+(?P<head>.+)$", re.I)
_JOINED = re.compile(r"\s*[,;]\s*|\s+(?:and|with|or|&)\s+|\s*/\s*", re.I)
_LISTED = re.compile(r"[,;/&]|\s(?:and|or)\s", re.I)
_WITH = re.compile(r"\s+with\s+", re.I)

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
    # The field's acronyms, each unambiguous in ML papers (SSL, DP, MPC, BO, VI and the like
    # stand for two things each and are left out).
    ("implicit neural representation", "inr"),
    ("human pose estimation", "hpe"),
    ("fully homomorphic encryption", "fhe"),
    ("knowledge distillation", "kd"),
    ("in context learning", "icl"),
    ("multi task learning", "mtl"),
    ("tiny machine learning", "tinyml"),
    ("chain of thought", "cot"),
    ("reinforcement learning from human feedback", "rlhf"),
    ("direct preference optimization", "dpo"),
    ("supervised fine tuning", "sft"),
    ("parameter efficient fine tuning", "peft"),
    ("diffusion transformer", "dit"),
    ("gaussian splatting", "3dgs"),
    ("simultaneous localization and mapping", "slam"),
    ("optical character recognition", "ocr"),
    ("named entity recognition", "ner"),
    ("visual question answering", "vqa"),
    ("text to speech", "tts"),
    ("neural machine translation", "nmt"),
    ("graph convolutional network", "gcn"),
    ("graph attention network", "gat"),
    ("message passing neural network", "mpnn"),
    ("physics informed neural network", "pinn"),
    ("fourier neural operator", "fno"),
    ("ordinary differential equation", "ode"),
    ("stochastic differential equation", "sde"),
    ("markov chain monte carlo", "mcmc"),
    ("neural tangent kernel", "ntk"),
    ("stochastic gradient descent", "sgd"),
    ("singular value decomposition", "svd"),
    ("principal component analysis", "pca"),
    ("vision language model", "vlm"),
    ("multimodal large language model", "mllm"),
    ("spiking neural network", "snn"),
    ("deep neural network", "dnn"),
    ("field programmable gate array", "fpga"),
    ("high performance computing", "hpc"),
    ("federated learning", "fl"),
    ("electroencephalography", "eeg"),
    ("magnetic resonance imaging", "mri"),
    ("automated machine learning", "automl"),
    ("hyperparameter optimization", "hpo"),
    ("out of distribution", "ood"),
    ("internet of things", "iot"),
    ("signed distance function", "sdf"),
    ("deep reinforcement learning", "drl"),
    ("long short term memory", "lstm"),
    ("gated recurrent unit", "gru"),
    ("multi agent reinforcement learning", "marl"),
)

# British spellings of the field's words, read as the American ones (on both sides: a reader's
# "quantisation" finds the papers on quantization, and a paper's "optimise" matches
# "optimization"). Reviewed by hand: -ise is rewritten only on these stems, where it cannot be
# another word ("precise", "noise", "promise" and "expertise" are left alone).
_IZE_STEMS = frozenset(
    (
        "quantis",
        "optimis",
        "normalis",
        "regularis",
        "generalis",
        "tokenis",
        "visualis",
        "parametris",
        "parameteris",
        "initialis",
        "characteris",
        "minimis",
        "maximis",
        "summaris",
        "categoris",
        "specialis",
        "randomis",
        "vectoris",
        "utilis",
        "recognis",
        "organis",
        "prioritis",
        "customis",
        "serialis",
        "discretis",
        "binaris",
        "memoris",
        "personalis",
        "standardis",
        "stabilis",
        "factoris",
        "linearis",
        "localis",
        "realis",
        "penalis",
        "marginalis",
        "contextualis",
        "synchronis",
        "amortis",
        "digitis",
        "lemmatis",
        "modularis",
        "neutralis",
        "rasteris",
        "harmonis",
    )
)
_IZE_ENDINGS = ("e", "ed", "es", "ing", "er", "ers", "ation", "ations", "able")
_SPELLINGS = {
    **{
        f"{w}our{e}": f"{w}or{e}"
        for w in ("behavi", "col", "neighb", "fav", "lab", "flav", "harb")
        for e in ("", "s", "al", "ed", "ing", "hood", "hoods")
    },
    **{
        f"{w}l{e}": f"{w}{e}"  # modelling -> modeling, labelled -> labeled
        for w in (
            "model",
            "label",
            "signal",
            "channel",
            "travel",
            "cancel",
            "fuel",
            "tunnel",
            "level",
        )
        for e in ("ing", "ed", "er", "ers")
    },
    **{
        f"{w}tre{e}": f"{w}ter{a}"
        for w in ("cen", "me", "fib", "thea")
        for e, a in (("", ""), ("s", "s"), ("d", "ed"))
    },
    "analyse": "analyze",
    "analysed": "analyzed",
    "analysing": "analyzing",
    "catalyse": "catalyze",
    "catalysed": "catalyzed",
    "paralyse": "paralyze",
    "catalogue": "catalog",
    "catalogues": "catalogs",
    "grey": "gray",
    "programme": "program",
    "programmes": "programs",
    "defence": "defense",
    "licence": "license",
}
_ISATION = re.compile(r"isation(s|al|ally)?$")


# Words the stemmer folds into one stem though the field means two things by them, given stems of
# their own (reviewed by hand): "distributed training" is not about a probability distribution,
# and "generalization" is not the word "general".
_SENSES = {
    **dict.fromkeys(("distribution", "distributions", "distributional"), "distribution"),
    **dict.fromkeys(
        (
            "generalization",
            "generalizations",
            "generalize",
            "generalizes",
            "generalized",
            "generalizing",
            "generalizable",
            "generalizability",
        ),
        "generaliz",
    ),
}


@lru_cache(maxsize=65536)  # (on every word of every paper: words repeat)
def american(word: str) -> str:
    """A lower-cased word in American spelling, where the British one is a known variant."""
    if word in _SPELLINGS:
        return _SPELLINGS[word]
    if _ISATION.search(word) and len(word) > 8:  # (no other English word ends so)
        return _ISATION.sub(lambda m: "ization" + (m[1] or ""), word)
    for ending in _IZE_ENDINGS:
        stem = word[: -len(ending)]
        if word.endswith(ending) and stem in _IZE_STEMS:
            return stem[:-1] + "z" + ending
    return word


def american_text(text: str) -> str:
    """`text` with each word in American spelling and each acronym of the table spelt out beside
    it, "HPE" -> "human pose estimation (HPE)" (what the sentence model reads of a topic: a
    small model knows few of the field's acronyms)."""
    american_words = _WORD_RUN.sub(lambda m: _as_case(m[0], american(m[0].lower())), text)
    return _ACRONYM_RUN.sub(_spelt_out, american_words)


def _spelt_out(match: re.Match[str]) -> str:
    acronym, plural = match[1], match[2]
    long = _acronyms().get(acronym.lower())
    if long is None or sum(c.isupper() for c in acronym) < 2:  # "cot", "slam": English words
        return match[0]
    return f"{long}{plural} ({acronym}{plural})"


@cache
def _acronyms() -> dict[str, str]:
    """Acronym -> its first spelt-out form, for the table's groups that have one."""
    found: dict[str, str] = {}
    for group in SYNONYMS:
        long = next((m for m in group if " " in m), None)
        for member in group:
            if long and " " not in member and len(member) <= 6:
                found.setdefault(member, long)
    return found


_ACRONYM_RUN = re.compile(r"\b([A-Za-z0-9]+?)(s?)\b")


def _as_case(written: str, word: str) -> str:
    if word == written.lower():
        return written
    return word.capitalize() if written[:1].isupper() else word


_WORD_RUN = re.compile(r"[^\W\d_]+")


TOKENIZED_TEXTS = 1024  # texts whose words are remembered (a run reads each paper several times)


@cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(
    text: str, keep_all: bool = False, joined: bool = True, mark_of: bool = False
) -> list[str]:
    """Lower-cased, stemmed words; plural acronyms fold too (LLMs -> llm), and a hyphenated word
    gives its parts and, if `joined`, its joined form (bi-level -> bi, level, bilevel). Stop words
    and one-letter words are dropped unless `keep_all` (phrases such as "part 5" need them);
    with `mark_of`, "of" stays as the mark `OF` (for phrases: "graphs of neural networks" is not
    "graph neural networks", "mixture of experts" is itself)."""
    return [stem for _, stem in tokens(text, keep_all, joined, mark_of)]


OF = "\x01of"  # "of" kept in a phrase (see `tokenize`); no word stems to it


@lru_cache(maxsize=TOKENIZED_TEXTS)
def tokens(
    text: str, keep_all: bool = False, joined: bool = True, mark_of: bool = False
) -> tuple[tuple[str, str], ...]:
    """(word as written, stem) pairs, as `tokenize` gives the stems."""
    words: list[str] = []
    for match in _WORD.findall(text):
        parts = match.split("-")
        words.extend(parts)
        if joined and len(parts) > 1:
            words.append("".join(parts))
    if not keep_all:
        words = [
            w
            for w in words
            if len(w) > 1 and (w.lower() not in _STOPWORDS or (mark_of and w.lower() == "of"))
        ]
    lowered = [american(w.lower()) for w in words]
    stemmed = _stemmer().stemWords(lowered)
    stems = [_SENSES.get(low, stem) for low, stem in zip(lowered, stemmed, strict=True)]
    return tuple(
        (
            word,
            OF
            if mark_of and low == "of"
            else stem[:-1]
            if stem == low and len(low) > 3 and low.endswith("s") and low[-2] != "s"
            else stem,
        )
        for word, low, stem in zip(words, lowered, stems, strict=True)
    )


@cache
def _synonym_groups() -> tuple[tuple[tuple[str, ...], ...], ...]:
    return tuple(
        tuple(tuple(tokenize(member, mark_of=True)) for member in group) for group in SYNONYMS
    )


def concepts(topic: str) -> list[str]:
    """The topic and the things it joins: "X with Y and Z" -> [the topic, X, Y, Z]. A single
    thing after "with" qualifies what comes before it ("code generation with large language
    models", "audio-visual segmentation with transformers"): that topic is one concept, or every
    paper about the qualifier alone would be relevant to it."""
    topic = " ".join(topic.split())
    found = [topic]
    qualified = _WITH.split(topic, maxsplit=1)
    if len(qualified) == 2 and not _LISTED.search(qualified[1]):
        return found
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
    joined as bilevel) and with each acronym of the table spelt out or shortened; an "of" in
    them is the mark `OF` (a phrase's, not a word to count)."""
    queries = [tokenize(concept, joined=False, mark_of=True)]
    queries += _with_synonyms(tokenize(concept, mark_of=True))
    return [q for n, q in enumerate(queries) if q and q not in queries[:n]]


def _with_synonyms(stems: list[str]) -> list[list[str]]:
    variants = [stems]
    for group in _synonym_groups():
        for member in group:
            at = find(stems, list(member))
            if at < 0:
                continue
            for other in group:
                if other != member:
                    variants.append(stems[:at] + list(other) + stems[at + len(member) :])
            break
    return variants


def find(stems: list[str], wanted: list[str]) -> int:
    """Where `wanted` starts in `stems` as a run; -1 when it does not occur."""
    width = len(wanted)
    for i in range(len(stems) - width + 1):
        if stems[i : i + width] == wanted:
            return i
    return -1


CLAUSE_BREAK = "\x00"  # between clauses in `clause_tokens`: no phrase runs across it
CLAUSE_END = re.compile(r"[.!?;:](?:\s+|$)")


def clause_tokens(text: str) -> list[str]:
    """`tokenize`d clause by clause, with a break between clauses: "computation graphs. Neural
    networks" holds no "graph neural network"."""
    found: list[str] = []
    for clause in CLAUSE_END.split(text):
        if found:
            found.append(CLAUSE_BREAK)
        found.extend(tokenize(clause, mark_of=True))
    return found


def contains(stems: list[str], wanted: list[str]) -> bool:
    """Whether `wanted` occurs in `stems` as a run. Looks only where its first word is (found
    by `list.index`, in C): most texts do not hold it at all."""
    if not wanted:
        return True
    width, first, start = len(wanted), wanted[0], 0
    while True:
        try:
            at = stems.index(first, start)
        except ValueError:
            return False
        if stems[at : at + width] == wanted:
            return True
        start = at + 1


def parse_topics(text: str) -> tuple[str, ...]:
    """Topics from a command-line string such as "quantization, efficient LLM inference"."""
    return tuple(t for t in (" ".join(part.split()) for part in re.split(r"[;,]", text)) if t)


# A sentence that says where the work's code is (a link, "code will be released"): most abstracts
# end with one, and its words say nothing of what the paper is about. Only its links are kept (a
# repository's name often names the topic): without the rest, "our code is available at github"
# does not make a paper on LLM training one about "language models for code".
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_AVAILABILITY = re.compile(
    r"https?:|www\.|\bgit(?:hub|lab|ee)\b|\b(?:code|codes|implementation)\b[^.]{0,60}?"
    r"\b(?:available|release[sd]?|open[- ]?sourced?|publicly|accessible|can be found)\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"(?:https?:\s*//|www\.)\S+|\S+\.(?:com|org|io|net)/\S*", re.IGNORECASE)


def topical(abstract: str) -> str:
    """The abstract with its sentences on where the code is cut to their links (what the words
    index reads)."""
    if not _AVAILABILITY.search(abstract):
        return abstract
    return " ".join(
        " ".join(_LINK.findall(sentence)) if _AVAILABILITY.search(sentence) else sentence
        for sentence in _SENTENCE_END.split(abstract)
    )
