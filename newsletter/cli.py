"""The `newsletter` command line: a thin layer where each command calls one library function.

User mistakes (`NewsletterError`, bad options) print one line on stderr and exit non-zero; a real
bug keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.exc import DatabaseError

from .bounces.mailboxes import fetch_imap, read_paths
from .bounces.rules import ALREADY as ALREADY_READ
from .bounces.rules import BounceReport
from .config import Settings, load_settings
from .digests.compose import rank_records
from .digests.daily import LATEST, preview, run_day
from .digests.for_reader import rank_for
from .digests.plan import paper_records
from .errors import NewsletterError, SubscriberListError
from .ingest.dumps import DAYS_AHEAD
from .ingest.fetch import MAX_DAYS, fetch_days
from .ingest.intake import IngestReport, ingest_paths
from .ranking import embed
from .ranking.rank import parse_topics
from .schedule import next_run, run_forever
from .store.db import ACTIVE, NO_ACTION, Database, environmental, unavailable, upgrade_schema
from .store.papers import latest_dump_date
from .store.runs import Status
from .store.runs import status as run_status
from .store.subscribers import ALREADY, UNKNOWN, subscriber_overview, subscriber_records
from .subscribers.addresses import normalize_address
from .subscribers.lists import load_lists
from .subscribers.sync import resubscribe as resubscribe_address
from .subscribers.sync import sync_subscribers
from .subscribers.sync import unsubscribe as unsubscribe_address

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
        """A --date value: YYYY-MM-DD, 'today' (the default) or 'latest' (the newest stored
        dump; `run` ingests the seeds folder before it looks: see `run_day`)."""
        if value is None or value == "today":
            return self.today
        if value == LATEST:
            return latest_dump_date(self.db, self.latest_allowed)
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise NewsletterError(
                f"--date {value!r}: expected YYYY-MM-DD, 'today' or 'latest'"
            ) from None
        if not EARLIEST_DATE <= day <= self.latest_allowed:
            raise NewsletterError(
                f"--date {value}: expected a date from {EARLIEST_DATE.isoformat()} to "
                f"{self.latest_allowed.isoformat()}"
            )
        return day

    @property
    def latest_allowed(self) -> date:
        """The furthest date a dump or a run can have: the page's day runs ahead of ours."""
        return self.today + timedelta(days=DAYS_AHEAD)


EARLIEST_DATE = date(1990, 1, 1)  # before any paper page; far from date.min's overflow
pass_app = click.make_pass_decorator(App)
DATE_HELP = "YYYY-MM-DD, 'today' or 'latest' (the newest dump's date)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """papers-digest: a daily email digest of trending research papers."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # force: a command's log goes to the standard error of this command (a second command in
    # one process, as the tests run them, gets a handler of its own)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for noisy in ("bm25s", "apscheduler.executors", "uvicorn.access", "alembic", "httpx"):
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
    _print_ingest(report)
    if report.errors:
        sys.exit(1)


def _print_ingest(report: IngestReport) -> None:
    for dump in report.stored:
        out.print(
            f"{dump.name}: {dump.dump_date.isoformat()}, {dump.papers} papers, "
            f"{dump.new_papers} new",
            highlight=False,
        )
    for error in report.errors:
        err.print(error, markup=False, highlight=False)
    out.print(report.summary, highlight=False)


@cli.command()
@click.option("--date", "day", help="The last day to fetch: YYYY-MM-DD or 'today' (default).")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    default=1,
    show_default=True,
    help="How many days, ending with --date (e.g. 7 to backfill a week).",
)
@pass_app
def fetch(app: App, day: str | None, days: int) -> None:
    """Download Daily Papers lists from NEWSLETTER_PAPERS_API into the seeds folder; ingest."""
    if day == LATEST:
        raise NewsletterError("--date latest: fetch takes YYYY-MM-DD or 'today'")
    report = fetch_days(app.db, app.settings, app.resolve_date(day), days, today=app.today)
    for done in report.days:
        (err if done.error else out).print(done.line, markup=False, highlight=False)
    if report.ingest is not None:
        _print_ingest(report.ingest)
    if report.failed or (report.ingest is not None and report.ingest.errors):
        sys.exit(1)


TABLE_ROWS = 200  # a longer list is summarised: printing 500,000 rows takes minutes


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--allow-drop", is_flag=True, help="Sync even if more than half of the readers would go."
)
@click.option("--json", "as_json", is_flag=True, help="Print every subscriber as JSON.")
@pass_app
def subscribers(app: App, paths: tuple[Path, ...], allow_drop: bool, as_json: bool) -> None:
    """Validate and sync the subscriber lists (default: the subscribers folder), print a table."""
    rows = load_lists(list(paths) or [app.settings.subscribers_dir])
    report = sync_subscribers(app.db, rows, scope=list(paths) or None, allow_drop=allow_drop)
    if as_json:
        click.echo(json.dumps(subscriber_records(app.db), ensure_ascii=False, indent=2))
        return
    overview = subscriber_overview(app.db, TABLE_ROWS)
    table = Table("email", "name", "frequency", "max", "topics", "exclude", "status")
    for s in overview.shown:
        status = s["status"] if s["listed"] or s["status"] != ACTIVE else "not listed"
        row = [s["email"], s["name"], s["frequency"], str(s["max_papers"])]
        table.add_row(*row, "; ".join(s["topics"]), "; ".join(s["exclude"]), status)
    total, by_status = overview.total, overview.by_status
    out.print(table)
    if total > TABLE_ROWS:
        out.print(f"... and {total - TABLE_ROWS:,} more (--json lists them all)", highlight=False)
    counts = ", ".join(f"{n:,} {status}" for status, n in sorted(by_status.items()))
    out.print(f"{total:,} subscriber(s): {counts or 'none'}", highlight=False)
    out.print(report.summary)


@contextmanager
def progress_bar(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A bar per phase of a run (writing, sending) on a terminal; nothing when piped."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def report(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    with bar:
        yield report


@cli.command()
@click.option("--date", "day", help=DATE_HELP)
@click.option("--dry-run", is_flag=True, help="Write .eml files instead of sending.")
@click.option(
    "--outbox", type=click.Path(path_type=Path), help="Dry-run folder (default: outbox/)."
)
@pass_app
def run(app: App, day: str | None, dry_run: bool, outbox: Path | None) -> None:
    """The daily job: ingest, sync, select, rank, render, deliver; prints a summary."""
    with progress_bar(err) as progress:
        summary = run_day(
            app.db,
            app.settings,
            LATEST if day == LATEST else app.resolve_date(day),
            today=app.today,
            dry_run=dry_run,
            outbox_dir=outbox,
            progress=progress,
        )
    for warning in summary.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if summary.outbox is not None and summary.written:
        out.print(f"wrote {summary.written} .eml file(s) to {summary.outbox}/", highlight=False)
    out.print(summary.line(), highlight=False)
    if summary.unreachable:
        raise NewsletterError(f"{summary.unreachable}; {summary.pending} digest(s) left pending")
    if summary.bad_rows:  # delivered to the readers of the last good lists; cron mails this
        raise NewsletterError(
            f"the subscriber lists were refused: {summary.bad_rows[0]}"
            + (f" (and {len(summary.bad_rows) - 1} more)" if len(summary.bad_rows) > 1 else "")
        )


@cli.command()
@click.option("--date", "day", help=f"Only papers new on this date: {DATE_HELP}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def papers(app: App, day: str | None, as_json: bool) -> None:
    """List stored papers (only those new on --date if given)."""
    rows = paper_records(app.db, app.resolve_date(day) if day else None)
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
@click.option("--topics", help='Comma-separated topics, e.g. "quantization, LLM".')
@click.option(
    "--for", "reader", metavar="EMAIL", help="A subscriber: what their digest of the date holds."
)
@click.option("--date", "day", help=f"Only papers new on this date: {DATE_HELP}.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    help="At most this many (default 10; with --for, the reader's max_papers).",
)
@click.option("--all", "near_misses", is_flag=True, help="With --for: the near-misses too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def rank(
    app: App,
    topics: str | None,
    reader: str | None,
    day: str | None,
    limit: int | None,
    near_misses: bool,
    as_json: bool,
) -> None:
    """Rank stored papers for the topics (all dates unless --date), best first; or show what a
    subscriber's digest of a date holds (--for), through the digest's own code."""
    if (topics is None) == (reader is None):
        raise NewsletterError("rank: give --topics or --for EMAIL (one of them)")
    if near_misses and reader is None:
        raise NewsletterError("rank: --all goes with --for EMAIL")
    if reader is not None:
        rows = rank_for(app.db, reader, app.resolve_date(day), limit, near_misses)
    else:
        wanted = parse_topics(topics or "")
        if not wanted:
            raise NewsletterError("--topics: give at least one topic")
        rows = rank_records(app.db, wanted, app.resolve_date(day) if day else None, limit or 10)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("#", "score", "title", "why")
    for number, row in enumerate(rows, start=1):
        why = "; ".join(row["why"])
        if "kept_out" in row:
            why = f"not in the digest: {row['kept_out']} (p {row['probability']:.3f})"
        table.add_row(str(number), f"{row['score']:.3f}", row["title"], why)
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
        app.settings.require_sending()
    run_forever(app.db, app.settings, dry_run=dry_run, outbox_dir=outbox)


@cli.command(name="status")
@click.option("--last", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status_command(app: App, last: int, as_json: bool) -> None:
    """Last runs, unsent and failed digests, suspended subscribers, the next scheduled run."""
    state = run_status(app.db, last)
    fire = next_run(app.settings)
    if as_json:
        report = _status_report(state, fire)
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
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
    if state.fetches:
        fetches = Table("fetched day", "last fetch (UTC)", "outcome")
        for f in state.fetches:
            outcome = f"{f.papers} paper(s)" if f.outcome == "ok" else f"failed: {f.error}"
            fetches.add_row(f.fetch_date.isoformat(), f"{f.fetched_at:%Y-%m-%d %H:%M:%S}", outcome)
        out.print(fetches)
    b = state.bounces
    out.print(
        f"last {b['days']} days: {b['bounces']} bounce(s), {b['complaints']} complaint(s), "
        f"{b['suspended']} suspended by bounces, {b['ignored']} about nobody (auto-replies, "
        f"forged, unmatched), {b['sender']} sender problem(s) (our mail failed a server's "
        "DMARC, SPF, DKIM or reverse-DNS checks: no reader is charged)",
        highlight=False,
    )
    suspended = (
        ", ".join(f"{e} ({r})" if (r := state.reasons.get(e)) else e for e in state.suspended)
        or "none"
    )
    out.print(f"suspended subscribers: {suspended}", highlight=False)
    ranking = _ranking_report(state)
    stored = ", ".join(f"{n} by {m}" for m, n in ranking["vectors"].items()) or "none"
    out.print(
        f"ranking: {ranking['model'] or 'words only (no sentence model installed)'}; "
        f"papers with sentence vectors: {stored}",
        highlight=False,
    )
    out.print(f"next scheduled run: {fire:%Y-%m-%d %H:%M} {app.settings.timezone}", highlight=False)


def _ranking_report(state: Status) -> dict[str, Any]:
    """The sentence model that ranks (the installed one: all-mpnet-base-v2 before
    all-MiniLM-L6-v2) and how many stored papers have vectors by each model."""
    encoder = embed.load()
    return {"model": encoder.name if encoder else None, "vectors": state.vectors}


def _status_report(state: Status, fire: datetime) -> dict[str, Any]:
    """`newsletter status --json` (the README's Commands)."""
    return {
        "runs": [
            {
                "date": r.run_date.isoformat(),
                "dry_run": r.dry_run,
                "started_at": r.started_at.isoformat() + "Z",
                "finished_at": r.finished_at.isoformat() + "Z" if r.finished_at else None,
                "outcome": r.outcome,
                "counts": r.counts or {},
            }
            for r in state.runs
        ],
        "digests": state.digests,
        "suspended": state.suspended,
        "fetches": [
            {
                "date": f.fetch_date.isoformat(),
                "fetched_at": f.fetched_at.isoformat() + "Z",
                "outcome": f.outcome,
                "papers": f.papers,
                "error": f.error,
            }
            for f in state.fetches
        ],
        "bounces": state.bounces,
        "ranking": _ranking_report(state),
        "next_run": fire.isoformat(),
    }


@cli.group()
def bounces() -> None:
    """Read bounces and complaints: suspend dead addresses, unsubscribe complainers."""


@bounces.command("read")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_app
def bounces_read(app: App, paths: tuple[Path, ...]) -> None:
    """Read bounce mail from .eml files, Maildir folders or mbox files."""
    _print_bounces(read_paths(app.db, app.settings, list(paths)))


@bounces.command("fetch")
@pass_app
def bounces_fetch(app: App) -> None:
    """Read the unread messages of the IMAP mailbox at NEWSLETTER_BOUNCE_IMAP_URL."""
    _print_bounces(fetch_imap(app.db, app.settings))


def _print_bounces(report: BounceReport) -> None:
    for handled in report.handled:
        if handled.action not in (ALREADY_READ, NO_ACTION):
            out.print(handled.line, markup=False, highlight=False)
    for error in report.errors:
        err.print(error, markup=False, highlight=False)
    out.print(report.summary, highlight=False)
    if report.errors:
        sys.exit(1)


@cli.command()
@click.argument("email")
@pass_app
def unsubscribe(app: App, email: str) -> None:
    """Unsubscribe an address; it stays unsubscribed even while a list still names it."""
    address = normalize_address(email)
    outcome = unsubscribe_address(app.db, address)
    if outcome == UNKNOWN:
        click.echo(
            f"{address} is not a known subscriber: recorded as unsubscribed, so no list will "
            "subscribe it"
        )
    else:
        click.echo(f"{address} {'was already' if outcome == ALREADY else 'is now'} unsubscribed")


@cli.command()
@click.argument("email")
@pass_app
def resubscribe(app: App, email: str) -> None:
    """Subscribe an unsubscribed or suspended address again, at its owner's request."""
    address = normalize_address(email)
    if not resubscribe_address(app.db, address):
        raise NewsletterError(f"{address} is not unsubscribed or suspended")
    click.echo(f"{address} is subscribed again (while a list names it)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """Serve the unsubscribe links: GET shows a confirmation page, POST unsubscribes (RFC 8058)."""
    app.settings.require_secret("the unsubscribe endpoint")
    app.db.close()  # brings the schema up to date; the endpoint opens its own
    from .web import serve as serve_endpoint  # (Starlette and uvicorn: only here)

    serve_endpoint(app.settings, host, port)


def _database_url() -> str:
    try:
        return load_settings().database_url
    except NewsletterError:
        return "NEWSLETTER_DATABASE_URL"


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
    except DatabaseError as error:  # the database went away or filled up mid-command
        if not environmental(error):
            raise  # a bug: keep the traceback
        click.echo(f"error: {unavailable(_database_url(), error)}", err=True)
        sys.exit(1)
    except OSError as error:
        if error.filename is None:
            raise
        click.echo(f"error: {error.filename}: {error.strerror or error}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        hint = " (see --help)" if isinstance(error, click.UsageError) else ""
        click.echo(f"error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
