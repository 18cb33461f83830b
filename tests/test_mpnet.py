"""all-mpnet-base-v2 on numpy (the `semantic-large` extra): its forward pass against a layer worked
out by hand, the invariances it must keep, and the five-part package joined, unpacked and
checked. The real 400 MB model is measured in `make bench` (retrieval on the labelled topics);
here a small MPNet with random weights runs the same code."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from newsletter.ranking import embed, models

HIDDEN, HEADS, LAYERS, INTERMEDIATE, BUCKETS = 8, 2, 2, 16, 32


def test_relative_positions_fall_into_the_buckets_mpnet_was_trained_with():
    # key minus query: keys after the query take buckets 16-31, before it 0-15; distances
    # under 8 have their own bucket, longer ones share on a log scale up to 128
    relative = np.array([0, -1, 1, -7, 7, -8, 8, -15, -16, -31, -32, -127, -128, -5000, 5000])
    expected = [0, 1, 17, 7, 23, 8, 24, 9, 10, 11, 12, 15, 15, 15, 31]
    # by hand: 8 + int(log(d / 8) / log(16) * 8), at most 15 (d = 15: 9.8 -> 9; 16 -> 10; 31 ->
    # 11.9 -> 11; 32 -> 12; 127 -> 15.97 -> 15)
    assert embed.position_bucket(relative).tolist() == expected


def _tiny_mpnet(folder: Path, seed: int = 0) -> Path:
    """An MPNet of the real layout and code paths, small and with random weights; the MiniLM
    package's tokenizer (BERT's uncased vocabulary, as MPNet's) gives it token ids."""
    rng = np.random.default_rng(seed)
    vocab = 30522
    w = {
        "embeddings.word_embeddings.weight": rng.normal(0, 1, (vocab, HIDDEN)),
        "embeddings.position_embeddings.weight": rng.normal(0, 1, (514, HIDDEN)),
        "embeddings.LayerNorm.weight": rng.normal(1, 0.1, HIDDEN),
        "embeddings.LayerNorm.bias": rng.normal(0, 0.1, HIDDEN),
        "encoder.relative_attention_bias.weight": rng.normal(0, 1, (BUCKETS, HEADS)),
    }
    for n in range(LAYERS):
        p = f"encoder.layer.{n}."
        for name in ("q", "k", "v", "o"):
            w[p + f"attention.attn.{name}.weight"] = rng.normal(0, 0.4, (HIDDEN, HIDDEN))
            w[p + f"attention.attn.{name}.bias"] = rng.normal(0, 0.1, HIDDEN)
        w[p + "attention.LayerNorm.weight"] = rng.normal(1, 0.1, HIDDEN)
        w[p + "attention.LayerNorm.bias"] = rng.normal(0, 0.1, HIDDEN)
        w[p + "intermediate.dense.weight"] = rng.normal(0, 0.4, (INTERMEDIATE, HIDDEN))
        w[p + "intermediate.dense.bias"] = rng.normal(0, 0.1, INTERMEDIATE)
        w[p + "output.dense.weight"] = rng.normal(0, 0.4, (HIDDEN, INTERMEDIATE))
        w[p + "output.dense.bias"] = rng.normal(0, 0.1, HIDDEN)
        w[p + "output.LayerNorm.weight"] = rng.normal(1, 0.1, HIDDEN)
        w[p + "output.LayerNorm.bias"] = rng.normal(0, 0.1, HIDDEN)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}, folder / "model.safetensors"
    )
    config = {
        "model_type": "mpnet",
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "intermediate_size": INTERMEDIATE,
        "layer_norm_eps": 1e-5,
        "relative_attention_num_buckets": BUCKETS,
    }
    (folder / "config.json").write_text(json.dumps(config))
    minilm = models.minilm_dir()
    assert minilm is not None, "the `semantic` extra is not installed (make test installs it)"
    (folder / "tokenizer.json").write_bytes((minilm / "tokenizer.json").read_bytes())
    return folder


def _by_hand(folder: Path, ids: list[int]) -> np.ndarray:
    """MPNet as its paper and Hugging Face's modeling_mpnet.py describe it, one token and one
    head at a time in float64, with the bucket worked out per pair by the formula."""
    from safetensors.numpy import load_file

    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}

    def norm(x, name):
        return (x - x.mean()) / math.sqrt(x.var() + 1e-5) * w[name + ".weight"] + w[name + ".bias"]

    def bucket(query, key):
        n = query - key  # -(key - query)
        half, exact = BUCKETS // 2, BUCKETS // 4
        base = half if n < 0 else 0
        n = abs(n)
        if n < exact:
            return base + n
        return base + min(half - 1, exact + int(math.log(n / exact) / math.log(128 / exact) * 8))

    def linear(x, name):
        return w[name + ".weight"] @ x + w[name + ".bias"]

    tokens = len(ids)
    x = [
        norm(
            w["embeddings.word_embeddings.weight"][t]
            + w["embeddings.position_embeddings.weight"][i + 2],
            "embeddings.LayerNorm",
        )
        for i, t in enumerate(ids)
    ]
    head = HIDDEN // HEADS
    for n in range(LAYERS):
        p = f"encoder.layer.{n}.attention."
        q = [linear(v, p + "attn.q") for v in x]
        k = [linear(v, p + "attn.k") for v in x]
        v_ = [linear(v, p + "attn.v") for v in x]
        out = []
        for i in range(tokens):
            context = np.zeros(HIDDEN)
            for h in range(HEADS):
                part = slice(h * head, (h + 1) * head)
                scores = [
                    q[i][part] @ k[j][part] / math.sqrt(head)
                    + w["encoder.relative_attention_bias.weight"][bucket(i, j), h]
                    for j in range(tokens)
                ]
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                total = sum(weights)
                for j in range(tokens):
                    context[part] += weights[j] / total * v_[j][part]
            attended = norm(linear(context, p + "attn.o") + x[i], p + "LayerNorm")
            inner = linear(attended, f"encoder.layer.{n}.intermediate.dense")
            inner = 0.5 * inner * (1 + np.vectorize(math.erf)(inner / math.sqrt(2)))  # exact GELU
            out.append(
                norm(
                    linear(inner, f"encoder.layer.{n}.output.dense") + attended,
                    f"encoder.layer.{n}.output.LayerNorm",
                )
            )
        x = out
    pooled = np.mean(x, axis=0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> embed.Encoder:
    return embed.Encoder(_tiny_mpnet(tmp_path_factory.mktemp("mpnet")))


def test_the_forward_pass_is_the_one_worked_out_by_hand(tiny):
    assert tiny.mpnet and tiny.dimensions == HIDDEN and tiny.name.startswith("all-mpnet-base-v2/")
    for text in ["quantization of large language models", "a", "Graph neural networks, again!"]:
        ids = tiny.tokenizer.encode(text).ids
        made = tiny._compute([text])[0]
        # the tanh form of GELU against the exact one: close, not equal
        assert np.abs(made - _by_hand(tiny.model_dir, ids)).max() < 2e-3, text


def test_padding_batching_and_order_behave(tiny):
    texts = ["sparse attention", "a much longer sentence about sparse attention for long sequences"]
    alone = np.vstack([tiny._compute([t]) for t in texts])
    together = tiny._compute(texts)  # the short one padded with <pad> (id 1) to the long one
    assert np.abs(alone - together).max() < 1e-5
    assert np.linalg.norm(together, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    # positions count: the same words in another order are another text (mean pooling of a
    # model blind to position would give the same vector)
    swapped = tiny._compute(["attention sparse"])[0]
    assert np.abs(swapped - alone[0]).max() > 1e-3


def _split_zip(folder: Path, files: dict[str, bytes], parts: int) -> list[Path]:
    archive = folder / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in files.items():
            out.writestr(f"all-mpnet-base-v2/{name}", data)
    data = archive.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for n in range(parts):
        path = folder / f"all-mpnet-base-v2.zip.{n + 1:03}"
        path.write_bytes(data[n * size : (n + 1) * size])
        paths.append(path)
    return paths


def test_the_five_parts_are_joined_unpacked_and_checked(tmp_path, monkeypatch):
    weights = np.random.default_rng(1).bytes(300_000)
    files = {"model.safetensors": weights, "tokenizer.json": b"{}", "config.json": b"{}"}
    parts = _split_zip(tmp_path, files, 5)
    monkeypatch.setattr(models, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    target = tmp_path / "cache" / "mpnet"
    models.unpack_mpnet(parts, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files

    monkeypatch.setattr(models, "MPNET_SHA256", "0" * 64)
    other = tmp_path / "cache" / "other"
    with pytest.raises(models.ModelError, match="sha256 is .* not the published 0000"):
        models.unpack_mpnet(parts, other)
    assert not other.exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["mpnet"]  # nothing half-made


def test_a_joined_file_reads_and_seeks_across_its_parts(tmp_path):
    data = bytes(range(256)) * 40
    paths = []
    for n, (start, end) in enumerate([(0, 1000), (1000, 1001), (1001, 7000), (7000, len(data))]):
        path = tmp_path / f"part{n}"
        path.write_bytes(data[start:end])
        paths.append(path)
    with models.JoinedFile(paths) as joined:
        assert joined.read() == data
        joined.seek(995)
        assert joined.read(10) == data[995:1005]
        joined.seek(-20, 2)
        assert joined.read() == data[-20:]
        assert joined.read(5) == b""


def test_the_larger_model_is_used_when_installed(tmp_path, monkeypatch):
    folder = _tiny_mpnet(tmp_path / "unpacked")
    monkeypatch.setattr(models, "mpnet_dir", lambda cache: folder)
    embed.load.cache_clear()
    try:
        encoder = embed.load()
        assert encoder is not None and encoder.mpnet
        from newsletter.ranking.model import SEMANTIC_LARGE
        from newsletter.ranking.rank import TopicIndex
        from newsletter.records import PaperText

        index = TopicIndex([PaperText(1, "Sparse attention", "We study sparse attention.", 1, 1)])
        assert index.model is SEMANTIC_LARGE
    finally:
        embed.load.cache_clear()
