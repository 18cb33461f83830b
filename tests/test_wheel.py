"""The package as a user installs it from a wheel, far from the checkout: `pip install` of the built
wheel into a fresh virtual environment, then the demo's commands in a folder of their own. The
templates and the shipped seed vectors must travel in the wheel; nothing may be read from the
checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, SEEDS, parse_eml

SOURCES = ("pyproject.toml", "README.md", "newsletter", "templates")


def build_wheel(into: Path) -> Path:
    """The wheel of a copy of the checkout (a build writes beside its sources; the checkout is
    shared with the other tests)."""
    source = into / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(into / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (into / "dist").glob("papers_digest-*.whl")
    return wheel


def fresh_venv(at: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed and no trace of the checkout. Its
    dependencies are this environment's, seen through a path file (a folder named by a `.pth`
    line is not itself searched for `.pth` files, so the editable install's finder stays out)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(at)], check=True)
    python = at / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
        + ["--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return at / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(where)
    return wheel, fresh_venv(where / "venv", wheel)


def test_the_wheel_carries_the_templates_and_the_seed_vectors(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "newsletter/templates/digest.html",
        "newsletter/templates/digest.txt",
        "newsletter/data/seed-vectors.npz",
        "newsletter/store/migrations/versions/0001_initial.py",
    } <= names


def test_an_installed_wheel_writes_a_digest_far_from_the_checkout(installed, tmp_path):
    _, bin_dir = installed
    for name in ("seeds", "subscribers"):
        (tmp_path / name).mkdir()
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, tmp_path / "seeds")
    (tmp_path / "subscribers" / "list.csv").write_text(
        "email,name,topics\nada@example.org,Ada,quantization\n", encoding="utf-8"
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(tmp_path / "cache")),
        "NEWSLETTER_FROM": "Trending Papers <papers@digest.example>",
        "NEWSLETTER_BASE_URL": "https://digest.example",
    }

    def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "newsletter"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import newsletter; print(newsletter.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(bin_dir.parent) in where
    assert newsletter("ingest", "seeds").returncode == 0
    assert newsletter("subscribers", "subscribers").returncode == 0
    run = newsletter("run", "--dry-run", "--date", "2026-03-11")
    assert run.returncode == 0, run.stderr
    assert "1 digest(s) written" in run.stdout
    (eml,) = (tmp_path / "outbox" / "2026-03-11").glob("*.eml")
    message = parse_eml(eml)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "quantization" in text.lower() and "<table" in html and "Unsubscribe" in html
