"""Relevance of papers to a reader's topics: words (BM25) and meaning (sentence vectors)."""
