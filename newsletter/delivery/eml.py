"""Messages as files: the dry-run's `.eml` files and previews, one per reader and date, written
atomically under a file name made safe from the address."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from urllib.parse import quote

from ..files import write_atomically

# Characters an address may hold that are unsafe or awkward in a file name get %-escaped.
_FILE_SAFE = "@.+-_=!#$&'*^`{|}~"


FILENAME_BYTES = 200  # file systems allow 255 bytes a name; room for the suffix and a temp prefix


def address_filename(address: str, suffix: str) -> str:
    """A safe file name for an address: %-escaped, and cut with a hash of the whole address when
    it would be too long (a valid address can have 254 characters, escaped three times as many)."""
    name = quote(address, safe=_FILE_SAFE)
    if len(name) + len(suffix) > FILENAME_BYTES:
        tag = hashlib.sha256(address.encode("utf-8")).hexdigest()[:16]
        head = name[: FILENAME_BYTES - len(suffix) - len(tag) - 1]
        name = head[: head.rfind("%")] if "%" in head[-2:] else head  # never half an escape
        name = f"{name}~{tag}"
    return name + suffix


class EmlFolder:
    """Where a dry-run puts its messages: `DIR/<date>/<address>.eml`, one file per digest."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path_for(self, day: date, address: str, suffix: str = ".eml") -> Path:
        return self.directory / day.isoformat() / address_filename(address, suffix)

    def write(self, day: date, address: str, message: bytes) -> Path:
        path = self.path_for(day, address)
        write_atomically(path, message)
        return path
