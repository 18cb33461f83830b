"""Delivery: where finished messages go. In dry-run, one `.eml` file per digest.

Delivery knows nothing of templates or ranking: it gets a recipient and the message bytes.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path
from urllib.parse import quote

# Characters an address may hold that are unsafe or awkward in a file name get %-escaped.
_FILE_SAFE = "@.+-_=!#$&'*^`{|}~"


def address_filename(address: str, suffix: str) -> str:
    return quote(address, safe=_FILE_SAFE) + suffix


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename: a reader never sees half a message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class OutboxWriter:
    """The dry-run outbox: `DIR/<date>/<address>.eml`."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path_for(self, day: date, address: str, suffix: str = ".eml") -> Path:
        return self.directory / day.isoformat() / address_filename(address, suffix)

    def write(self, day: date, address: str, message: bytes) -> Path:
        path = self.path_for(day, address)
        write_atomically(path, message)
        return path
