"""Text helpers shared by the list reader and the message builder (no heavy imports: the
worker processes that build messages load this, not the database or the list parser)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line separators
# Halves of UTF-16 pairs standing alone ("\ud800" in JSON): no UTF-8 text can hold them.
SURROGATES = re.compile(r"[\ud800-\udfff]")


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a space where there is one near the end, with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ", limit // 2)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"


def clean_name(value: Any) -> str:
    """A display name with no control characters: a newline in a name can never add a header."""
    if value is None:
        return ""
    return " ".join(CONTROL.sub(" ", str(value)).split())[:200]


def normalize_title(title: str) -> str:
    """A paper's identity: case, accents' composition, punctuation and spacing do not count."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.findall(r"\w+", text))


# An http(s) URL of the characters RFC 3986 allows (and percent escapes); no braces, backslashes,
# carets, pipes or backticks.
WELL_FORMED_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::\d+)?(?:[/?#][A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*)?"
)
