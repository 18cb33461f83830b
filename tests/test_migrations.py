"""Schema migrations on both back-ends: an empty database gets exactly the models' schema, and a
database of the previous release (made before there were migrations) keeps its data."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from newsletter.store.db import Base, Database, _alembic_config, current_revision, head_revision


def test_an_empty_database_is_migrated_to_exactly_the_models(database_url, cli):
    first, again = cli("db", "upgrade"), cli("db", "upgrade")
    assert first.code == 0 and again.code == 0
    assert f"upgraded from empty to {head_revision()}" in first.stdout
    assert f"up to date (revision {head_revision()})" in again.stdout
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []  # the migrations build what the models describe, nothing else


def test_a_database_of_the_previous_release_is_upgraded_with_its_data(database_url, cli):
    # The previous release made its tables with create_all: the baseline revision, unstamped.
    engine = create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(
            text(
                "INSERT INTO subscribers (email, name, topics, exclude, max_papers, frequency,"
                " source, listed, status, created_at, updated_at) VALUES ('ada@example.org', 'Ada',"
                " '[\"graphs\"]', '[]', 10, 'daily', 'l.csv', :yes, 'active', :now, :now)"
            ),
            {"yes": True, "now": "2026-03-01 07:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO digests (subscriber_id, digest_date, window_start, state, message_id,"
                " subject, attempts, created_at, updated_at) VALUES (1, '2026-03-10', '2026-03-10',"
                " 'pending', '<d1@x>', '', 0, :now, :now)"
            ),
            {"now": "2026-03-10 07:00:00"},
        )
        # Papers with appearances: a migration may not copy a table others refer to (SQLite).
        connection.execute(
            text(
                "INSERT INTO dumps (sha256, filename, dump_date, paper_count, ingested_at)"
                " VALUES ('ab', 'a.txt', '2026-03-10', 1, :now)"
            ),
            {"now": "2026-03-10 07:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO papers (key, title, abstract, first_seen)"
                " VALUES ('a paper', 'A Paper', '', '2026-03-10')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO appearances (paper_id, dump_id, seen_on, position)"
                " VALUES (1, 1, '2026-03-10', 1)"
            )
        )
    assert current_revision(engine) is None and inspect(engine).has_table("digests")
    engine.dispose()

    result = cli("papers")  # any command brings the schema up to date first
    assert result.code == 0, result.stderr
    database = Database(database_url)
    assert current_revision(database.engine) == head_revision()
    columns = {c["name"] for c in inspect(database.engine).get_columns("digests")}
    assert {"claimed_by", "claimed_until"} <= columns
    with database.session() as session:
        kept = session.execute(text("SELECT state, message_id, claimed_by FROM digests")).all()
        paper = session.execute(text("SELECT title, arxiv_id, upvotes FROM papers")).all()
        score = session.execute(text("SELECT bounce_score FROM subscribers")).scalar_one()
    database.close()
    assert [tuple(row) for row in kept] == [("pending", "<d1@x>", None)]
    assert [tuple(row) for row in paper] == [("A Paper", None, None)] and score == 0


OPEN_DATABASE = """
import os
from newsletter.store.db import Database
with Database(os.environ["NEWSLETTER_DATABASE_URL"]).session() as session:
    session.execute(__import__("sqlalchemy").text("SELECT count(*) FROM papers")).scalar_one()
"""


def test_first_runs_at_once_on_a_new_sqlite_file_all_work(workdir):
    import os
    import subprocess
    import sys

    # Lost about one time in three before (the migration), one in thirty (switching to WAL).
    for attempt in range(3):
        url = f"sqlite:///{workdir / f'race{attempt}.db'}"
        started = [
            subprocess.Popen(  # what every command does first: open the database
                [sys.executable, "-c", OPEN_DATABASE],
                cwd=workdir,
                env={**os.environ, "NEWSLETTER_DATABASE_URL": url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for process in started:
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
        engine = create_engine(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()


def test_the_head_written_in_db_py_is_the_migrations_head(tmp_path):
    """Opening a database compares its revision with `HEAD_REVISION` without Alembic; that must
    be what Alembic itself says, and the revision read the same way Alembic reads it."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from newsletter.store.db import HEAD_REVISION

    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == HEAD_REVISION
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as connection:
        theirs = MigrationContext.configure(connection).get_current_revision()
    assert current_revision(database.engine) == theirs == HEAD_REVISION
    database.close()
