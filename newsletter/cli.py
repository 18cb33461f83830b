"""The `newsletter` command line: a thin layer where each command calls one library function.

User mistakes (`NewsletterError`, bad options) print one line on stderr and exit non-zero; a real
bug keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from .config import Settings, load_settings
from .db import ACTIVE, Database, Dump, Subscriber, upgrade_schema
from .errors import NewsletterError, SubscriberListError
from .ingest import ingest_paths
from .rank import TopicIndex, parse_topics
from .run import preview, run_day
from .runs import status as run_status
from .schedule import next_run, run_forever
from .select import load_papers
from .subscribers import load_lists, sync_subscribers
from .subscribers import resubscribe as resubscribe_address
from .subscribers import unsubscribe as unsubscribe_address
from .web import serve as serve_unsubscribe

# Piped output (cron mail, files, tests) gets wide tables instead of 80 folded columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


class App:
    """What every command needs: the settings, read once, and the database, opened on demand."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings.database_url)
        return self._db

    @property
    def today(self) -> date:
        return datetime.now(self.settings.tz).date()

    def resolve_date(self, value: str | None) -> date:
        """A --date value: YYYY-MM-DD, 'today' (the default) or 'latest' (the newest dump)."""
        if value is None or value == "today":
            return self.today
        if value == "latest":
            if self.settings.seeds_dir.is_dir():  # the newest dump may not be ingested yet
                ingest_paths(self.db, [self.settings.seeds_dir], self.today)
            with self.db.session() as session:
                latest = session.scalar(select(func.max(Dump.dump_date)))
            if latest is None:
                raise NewsletterError(
                    "--date latest: no dump is stored yet (run `newsletter ingest`)"
                )
            return latest
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise NewsletterError(
                f"--date {value!r}: expected YYYY-MM-DD, 'today' or 'latest'"
            ) from None


pass_app = click.make_pass_decorator(App)
DATE_HELP = "YYYY-MM-DD, 'today' or 'latest' (the newest dump's date)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """papers-digest: a daily email digest of trending research papers."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("bm25s", "apscheduler.executors", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    ctx.obj = App(load_settings())


@cli.group()
def db() -> None:
    """The database schema (SQLite or PostgreSQL)."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Bring the schema to the newest revision (every command also does it when it is behind)."""
    database = Database(app.settings.database_url, upgrade=False)
    try:
        before, after = upgrade_schema(database.engine)
    finally:
        database.close()
    if before == after:
        out.print(f"database schema up to date (revision {after})", highlight=False)
    else:
        out.print(f"database schema upgraded from {before or 'empty'} to {after}", highlight=False)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--year", type=click.IntRange(1990, 2200), help="The dumps' year (default: inferred)."
)
@pass_app
def ingest(app: App, paths: tuple[Path, ...], year: int | None) -> None:
    """Ingest dump files or folders (default: the seeds folder)."""
    report = ingest_paths(app.db, list(paths) or [app.settings.seeds_dir], app.today, year)
    for dump in report.stored:
        out.print(
            f"{dump.name}: {dump.dump_date.isoformat()}, {dump.papers} papers, "
            f"{dump.new_papers} new"
        )
    for error in report.errors:
        err.print(error, markup=False, highlight=False)
    out.print(report.summary)
    if report.errors:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_app
def subscribers(app: App, paths: tuple[Path, ...]) -> None:
    """Validate and sync the subscriber lists (default: the subscribers folder), print a table."""
    report = sync_subscribers(app.db, load_lists(list(paths) or [app.settings.subscribers_dir]))
    table = Table("email", "name", "frequency", "max", "topics", "exclude", "status")
    with app.db.session() as session:
        for s in session.scalars(select(Subscriber).order_by(Subscriber.email)):
            status = s.status if s.listed or s.status != ACTIVE else "not listed"
            table.add_row(
                s.email,
                s.name,
                s.frequency,
                str(s.max_papers),
                "; ".join(s.topics),
                "; ".join(s.exclude or ()),
                status,
            )
    out.print(table)
    out.print(report.summary)


@cli.command()
@click.option("--date", "day", help=DATE_HELP)
@click.option("--dry-run", is_flag=True, help="Write .eml files instead of sending.")
@click.option(
    "--outbox", type=click.Path(path_type=Path), help="Dry-run folder (default: outbox/)."
)
@pass_app
def run(app: App, day: str | None, dry_run: bool, outbox: Path | None) -> None:
    """The daily job: ingest, sync, select, rank, render, deliver; prints a summary."""
    summary = run_day(
        app.db,
        app.settings,
        app.resolve_date(day),
        today=app.today,
        dry_run=dry_run,
        outbox_dir=outbox,
        console=err,
    )
    for warning in summary.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if summary.outbox is not None and summary.written:
        out.print(f"wrote {summary.written} .eml file(s) to {summary.outbox}/", highlight=False)
    out.print(summary.line(), highlight=False)
    if summary.unreachable:
        raise NewsletterError(f"{summary.unreachable}; {summary.pending} digest(s) left pending")


@cli.command()
@click.option("--date", "day", help=f"Only papers new on this date: {DATE_HELP}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def papers(app: App, day: str | None, as_json: bool) -> None:
    """List stored papers (only those new on --date if given)."""
    with app.db.session() as session:
        new_on = app.resolve_date(day) if day else None
        stored = load_papers(session, new_on=new_on)
    if new_on is not None:
        stored.sort(key=lambda p: (p.best_position, p.id))
    rows = [
        {
            "title": p.title,
            "first_seen": p.first_seen.isoformat(),
            "appearances": p.appearances,
            "code_url": p.code_url,
        }
        for p in stored
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("first seen", "seen", "title", "code")
    for row in rows:
        table.add_row(
            row["first_seen"], str(row["appearances"]), row["title"], row["code_url"] or ""
        )
    out.print(table)
    out.print(f"{len(rows)} paper(s)")


@cli.command()
@click.option("--topics", required=True, help='Comma-separated topics, e.g. "quantization, LLM".')
@click.option("--date", "day", help=f"Only papers new on this date: {DATE_HELP}.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def rank(app: App, topics: str, day: str | None, limit: int, as_json: bool) -> None:
    """Rank stored papers for the topics (all dates unless --date), best first."""
    wanted = parse_topics(topics)
    if not wanted:
        raise NewsletterError("--topics: give at least one topic")
    with app.db.session() as session:
        stored = {p.id: p for p in load_papers(session)}
        new_on = app.resolve_date(day) if day else None
    index = TopicIndex([p.text() for p in stored.values()])
    candidates = [p.id for p in stored.values() if new_on is None or p.first_seen == new_on]
    ranked = index.rank(wanted, candidates, limit=limit)
    rows: list[dict[str, Any]] = [
        {"title": stored[r.paper_id].title, "score": r.score, "matched": list(r.matched)}
        for r in ranked
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("#", "score", "title", "matched")
    for number, row in enumerate(rows, start=1):
        table.add_row(str(number), f"{row['score']:.3f}", row["title"], ", ".join(row["matched"]))
    out.print(table)


@cli.command(name="preview")
@click.argument("email")
@click.option("--date", "day", help=DATE_HELP)
@click.option("--outbox", type=click.Path(path_type=Path), help="Folder (default: outbox/).")
@pass_app
def preview_command(app: App, email: str, day: str | None, outbox: Path | None) -> None:
    """Render a subscriber's digest to an .html file and print its path."""
    path = preview(
        app.db,
        app.settings,
        email,
        app.resolve_date(day),
        today=app.today,
        directory=outbox or app.settings.outbox_dir,
    )
    click.echo(str(path))


@cli.command()
@click.option("--dry-run", is_flag=True, help="Write .eml files instead of sending.")
@click.option(
    "--outbox", type=click.Path(path_type=Path), help="Dry-run folder (default: outbox/)."
)
@pass_app
def schedule(app: App, dry_run: bool, outbox: Path | None) -> None:
    """Run the daily job at NEWSLETTER_SEND_AT in NEWSLETTER_TIMEZONE, in the foreground."""
    if not dry_run:
        app.settings.require_secret()
    run_forever(app.db, app.settings, dry_run=dry_run, outbox_dir=outbox)


@cli.command(name="status")
@click.option("--last", type=click.IntRange(1, 1000), default=10, show_default=True)
@pass_app
def status_command(app: App, last: int) -> None:
    """Last runs, unsent and failed digests, suspended subscribers, the next scheduled run."""
    state = run_status(app.db, last)
    table = Table("date", "mode", "started (UTC)", "finished (UTC)", "outcome", "counts")
    for r in state.runs:
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (r.counts or {}).items() if v)
        table.add_row(
            r.run_date.isoformat(),
            "dry-run" if r.dry_run else "run",
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            f"{r.finished_at:%Y-%m-%d %H:%M:%S}" if r.finished_at else "-",
            r.outcome,
            counts,
        )
    out.print(table if state.runs else "no runs yet")
    digests = state.digests
    out.print(
        f"digests: {digests['pending']} pending, {digests['deferred']} deferred, "
        f"{digests['failed']} failed",
        highlight=False,
    )
    suspended = ", ".join(state.suspended) or "none"
    out.print(f"suspended subscribers: {suspended}", highlight=False)
    fire = next_run(app.settings)
    out.print(f"next scheduled run: {fire:%Y-%m-%d %H:%M} {app.settings.timezone}", highlight=False)


@cli.command()
@click.argument("email")
@pass_app
def unsubscribe(app: App, email: str) -> None:
    """Unsubscribe an address; it stays unsubscribed even while a list still names it."""
    already = unsubscribe_address(app.db, email)
    click.echo(f"{email.strip().lower()} {'was already' if already else 'is now'} unsubscribed")


@cli.command()
@click.argument("email")
@pass_app
def resubscribe(app: App, email: str) -> None:
    """Subscribe an unsubscribed or suspended address again, at its owner's request."""
    address = email.strip().lower()
    if not resubscribe_address(app.db, address):
        raise NewsletterError(f"{address} is not unsubscribed or suspended")
    click.echo(f"{address} is subscribed again (while a list names it)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """Serve the unsubscribe links: GET shows a confirmation page, POST unsubscribes (RFC 8058)."""
    if app.settings.uses_development_secret:
        err.print("warning: NEWSLETTER_SECRET_KEY is not set: only development links will work")
    serve_unsubscribe(app.db, app.settings, host, port)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="newsletter", standalone_mode=False)
    except SubscriberListError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    except NewsletterError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        hint = " (see --help)" if isinstance(error, click.UsageError) else ""
        click.echo(f"error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
