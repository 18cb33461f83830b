"""Shared fixtures: settings on a temporary SQLite file, the real seed dumps, small dump builders,
and a way to drive the command line as a user does."""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.ingest.intake import ingest_paths
from newsletter.store.db import Database

from .pg import PostgresServer, binaries

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
TODAY = date(2026, 11, 24)  # ingest day used for year inference in tests
SECRET = "a-test-secret-of-more-than-32-bytes-0123456789"  # a real send needs 32 bytes or more


def pytest_configure(config: pytest.Config) -> None:
    # Sentence vectors of the seed papers are made once (about 20 s) and then found in this
    # cache by every test's database, in this process and in the CLI's subprocesses.
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    folder = cache.mkdir("xdg-cache") if cache is not None else tempfile.mkdtemp()
    os.environ["XDG_CACHE_HOME"] = str(folder)
    # The test SMTP servers (aiosmtpd) run in this process, as do the commands the tests run:
    # their chatter must not reach a command's standard error.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in ("seeds", "subscribers", "outbox"):
        (tmp_path / name).mkdir()
    return tmp_path


# Tests that run on both back-ends: everything that reads or writes the database in a way the two
# could differ (claims, bulk inserts, JSON, dates, leases, migrations). Whole modules, and tests
# marked `both_backends` elsewhere; the rest (SMTP faults, TLS, rendering) use SQLite.
BOTH_BACKENDS = {
    "test_ingest",
    "test_subscribers",
    "test_select",
    "test_cluster",
    "test_migrations",
}


# Modules whose tests take seconds each (several processes): collected first, so that on several
# workers (pytest-xdist) the long ones start early and the short ones fill in after them.
LONG_FIRST = ("test_cluster", "test_scale", "test_schedule", "test_migrations")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.module.__name__.rpartition(".")[2] not in LONG_FIRST)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    marked = metafunc.definition.get_closest_marker("both_backends") is not None
    if "backend" in metafunc.fixturenames and (module in BOTH_BACKENDS or marked):
        metafunc.parametrize("backend", ["sqlite", "postgresql"])


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for the session (see tests/pg.py)."""
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed (`make test` installs Debian's postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def database_url(backend: str, workdir: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty database on the test's back-end."""
    if backend == "postgresql":
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{workdir / 'newsletter.db'}"


@pytest.fixture
def env(workdir: Path, database_url: str) -> dict[str, str]:
    """Environment for a user's shell in `workdir`, with its own database."""
    return {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SEEDS_DIR": str(workdir / "seeds"),
        "NEWSLETTER_SUBSCRIBERS_DIR": str(workdir / "subscribers"),
        "NEWSLETTER_OUTBOX_DIR": str(workdir / "outbox"),
        "NEWSLETTER_FROM": "Trending Papers <papers@digest.example>",
        "NEWSLETTER_BASE_URL": "https://digest.example",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
def db(settings: Settings):
    database = Database(settings.database_url)
    yield database
    database.close()


@pytest.fixture
def demo(workdir: Path) -> Path:
    """The work folder with what `make demo` uses: the seed dumps and the example lists."""
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    for listed in (ROOT / "subscribers").iterdir():
        shutil.copy(listed, workdir / "subscribers")
    return workdir


@pytest.fixture
def seeded_db(db: Database) -> Database:
    report = ingest_paths(db, [SEEDS], TODAY)
    assert not report.errors
    return db


def seed_bytes(name_prefix: str) -> bytes:
    return next(SEEDS.glob(f"{name_prefix}_*.txt")).read_bytes()


def make_dump(date_line: str, papers: list[tuple[str, str]], header: bool = True) -> str:
    """A dump in the page's format with the given (title, abstract) pairs."""
    head = (
        [
            "new",
            "Get trending papers in your email inbox!",
            "Subscribe",
            "Daily Papers",
            "byAK and the research community",
        ]
        if header
        else []
    )
    parts = [*head, date_line]
    for title, abstract in papers:
        parts.append(title)
        if abstract:
            parts.append(abstract)
    return "\n\n".join(parts) + "\n"


def abstract_about(*words: str, sentences: int = 4, unique: str = "") -> str:
    """A plausible abstract that mentions the given words; `unique` adds words of its own so that
    two such abstracts do not look like the same work."""
    text = " ".join(words)
    extra = (
        [f"Findings specific to {' '.join(f'{unique}{k}' for k in range(20))}."] if unique else []
    )
    body = [
        *extra,
        f"We study {text} in depth and propose a new method for it.",
        f"Our approach to {text} is simple, fast and easy to reproduce on common hardware.",
        "Experiments on several benchmarks show consistent improvements over strong baselines.",
        "We release our implementation to support further research in this direction.",
    ]
    return " ".join(body[:sentences])


def write_list(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def parse_eml(path: Path) -> EmailMessage:
    with path.open("rb") as file:
        return email.message_from_binary_file(file, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    """`newsletter ARGS` as a user's shell runs it, in this process (click's `CliRunner`
    isolation: its own environment without our NEWSLETTER_* variables, working directory,
    standard streams and exit status), the same `main` as the installed command."""
    clear: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NEWSLETTER_")}
    with (
        contextlib.chdir(cwd),
        CliRunner().isolation(env={**clear, **env}) as (stdout, stderr, _),
    ):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        finally:
            logging.getLogger().handlers.clear()  # bound to this command's stderr
        out = stdout.getvalue().decode("utf-8", "replace")
        errors = stderr.getvalue().decode("utf-8", "replace")
    return CliResult(code, out, errors)


def run_process(args: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    """`python -m newsletter ARGS` in a subprocess: where a process of its own is the point."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(env: dict[str, str], workdir: Path):
    def invoke(*args: str, extra_env: dict[str, str] | None = None) -> CliResult:
        return run_cli(list(args), {**env, **(extra_env or {})}, workdir)

    return invoke


def reader_of_link(db: Database, key: str, token: str) -> str | None:
    """The address an unsubscribe link's token names, as `newsletter serve` reads it."""
    from newsletter.mail.tokens import unsubscribed_by

    with db.session() as session:
        subscriber = unsubscribed_by(session, key, token, date.today())
        return subscriber.email if subscriber is not None else None
