"""DKIM: the finished message signed with the configured key (RFC 6376), or left as it is."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..config import Settings

# Headers the signature covers; RFC 8058 asks for both List-Unsubscribe headers.
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@cache
def _dkim_key(path: Path) -> bytes:
    return path.read_bytes()


def sign_dkim(settings: Settings, raw: bytes) -> bytes:
    """The message with a DKIM-Signature header when DKIM is configured, else unchanged."""
    if not (settings.dkim.selector and settings.dkim.domain and settings.dkim.key_file):
        return raw
    import dkim  # (only where DKIM is configured)

    signature = dkim.sign(
        raw,
        settings.dkim.selector.encode(),
        settings.dkim.domain.encode(),
        _dkim_key(settings.dkim.key_file),
        include_headers=list(DKIM_HEADERS),
    )
    return signature + raw
