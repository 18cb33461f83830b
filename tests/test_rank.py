"""Ranking on the seed papers: relevant before irrelevant, a threshold, truthful matched topics."""

from __future__ import annotations

import pytest

from newsletter.rank import PaperText, TopicIndex, parse_topics, tokenize
from newsletter.select import load_papers


@pytest.fixture
def index(seeded_db):
    with seeded_db.session() as session:
        papers = load_papers(session)
    index = TopicIndex([p.text() for p in papers])
    index.titles = {p.id: p.title for p in papers}  # type: ignore[attr-defined]
    return index


def ranked_titles(index, *topics, limit=10):
    return [index.titles[r.paper_id] for r in index.rank(list(topics), limit=limit)]


@pytest.mark.parametrize(
    "topic, relevant, irrelevant",
    [
        (
            "vision transformers",
            "EfficientViT: Memory Efficient Vision Transformer",
            "Subword Dictionary Learning and Segmentation Techniques",
        ),
        (
            "graph neural networks",
            "Equivariant Polynomials for Graph Neural Networks",
            "Real-Time Neural Appearance Models",
        ),
        (
            "hypernetworks",
            "Magnitude Invariant Parametrizations Improve Hypernetwork Learning",
            "Stitchable Neural Networks",
        ),
        (
            "speech recognition",
            "Subword Dictionary Learning and Segmentation Techniques for Automatic",
            "Gated Linear Attention Transformers",
        ),
    ],
)
def test_a_clearly_relevant_paper_outranks_an_irrelevant_one(index, topic, relevant, irrelevant):
    titles = ranked_titles(index, topic, limit=None)
    position = next(i for i, t in enumerate(titles) if t.startswith(relevant))
    assert position < 5
    assert not any(t.startswith(irrelevant) for t in titles[: position + 1])


def test_an_off_topic_query_returns_nothing(index):
    assert ranked_titles(index, "medieval tapestry restoration") == []
    assert ranked_titles(index, "the of and") == []


def test_matched_topics_are_the_ones_that_matched(index):
    for ranked in index.rank(["hypernetworks", "medieval tapestry restoration"]):
        assert ranked.matched == ("hypernetworks",)
    both = index.rank(["graph neural networks", "GPU"], limit=None)
    assert {t for r in both for t in r.matched} == {"graph neural networks", "GPU"}
    assert all(r.matched for r in both)


def test_trending_breaks_ties_between_equally_relevant_papers():
    text = "We study graph neural networks. " * 5
    papers = [
        PaperText(
            1,
            "Graph Neural Networks for Chemistry",
            text + "Molecules, atoms, bonds.",
            appearances=1,
            best_position=30,
        ),
        PaperText(
            2,
            "Graph Neural Networks at Scale",
            text + "Billions of edges on clusters.",
            appearances=3,
            best_position=2,
        ),
        PaperText(3, "Cooking Recipes", "Pasta and sauces. " * 5, appearances=9, best_position=1),
    ]
    ranked = TopicIndex(papers).rank(["graph neural networks"])
    assert [r.paper_id for r in ranked] == [2, 1]  # the popular off-topic paper stays out


def test_tokens_fold_stems_and_plural_acronyms():
    assert tokenize("LLMs and Transformers") == tokenize("LLM transformer")
    assert parse_topics(" quantization,  efficient LLM inference ;KV cache,") == (
        "quantization",
        "efficient LLM inference",
        "KV cache",
    )


def test_acronyms_and_their_spelled_out_forms_find_the_same_papers(index):
    llm = set(ranked_titles(index, "LLM quantization", limit=None))
    spelled = set(ranked_titles(index, "large language model quantization", limit=None))
    assert "Accurate Block Quantization in LLMs with Outliers" in spelled
    assert any("Large Language Models" in t for t in llm)
    assert len(llm & spelled) >= 3


def test_coordinated_topics_match_either_part(index):
    titles = ranked_titles(index, "convex and bilevel optimization")
    assert any(t.startswith("Constrained Bi-Level Optimization") for t in titles)  # hyphenated
    assert any("Bilevel Optimization" in t for t in titles)


def test_the_same_work_under_two_titles_appears_once():
    abstract = "We propose sparse attention kernels for long sequences on accelerators. " * 4
    papers = [
        PaperText(1, "FlashSparse: Sparse Attention Kernels", abstract, best_position=3),
        PaperText(
            2, "FlashSparse: Fast Sparse Attention Kernels", abstract + "v2", best_position=1
        ),
        PaperText(
            3,
            "Dense Attention Baselines Revisited",
            "Sparse attention kernels versus dense ones, measured carefully. " * 4,
        ),
    ]
    ranked = [r.paper_id for r in TopicIndex(papers).rank(["sparse attention kernels"])]
    assert ranked.count(1) + ranked.count(2) == 1 and 3 in ranked


def test_the_ranking_harness_runs_and_beats_plain_bm25():
    from bench.ranking import evaluate

    result = evaluate()
    assert set(result["topics"]) and result["papers"] == 182
    assert result["mean"]["ours"]["ndcg@10"] > result["mean"]["bm25"]["ndcg@10"]
