"""Storage: the SQLAlchemy 2 engine, sessions and typed models every stage reads and writes.

Papers and their appearances come from the dumps; subscribers come from the lists; a `Digest` is
one subscriber's email for one date and doubles as the durable outbox row (its state moves from
pending to sent, deferred or failed). Nothing here knows about parsing, ranking or SMTP.
"""

from __future__ import annotations

import fcntl
import functools
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from ..errors import NewsletterError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


class DigestState(StrEnum):
    """Where a digest is in the outbox. It is created pending; only a real SMTP send moves it
    on. (Stored as these words: a `StrEnum` is the string it names.)"""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"


PENDING, SENDING, SENT, DEFERRED, FAILED = DigestState
# Digests in these states hold their papers for the subscriber: they are sent or will be.
LIVE_STATES = (PENDING, SENDING, SENT, DEFERRED)


class SubscriberStatus(StrEnum):
    """Whether a subscriber is mailed. Only `store.subscribers.change_status` changes it, always
    with its reason."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    SUSPENDED = "suspended"


ACTIVE, UNSUBSCRIBED, SUSPENDED = SubscriberStatus

MORE, LESS = "more", "less"  # a reader's feedback on a paper (`Feedback.verdict`)

# What a message read from the bounce mailbox was (`BounceRecord.kind`, see `bounces.dsn` and
# `bounces.rules`), and what it did (`BounceRecord.action`: "none", "scored", or the status it
# gave).
BOUNCE, TEMPORARY, COMPLAINT = "bounce", "temporary", "complaint"
SENDER_PROBLEM = "sender problem"  # a bounce saying our mail failed the server's checks of us
NO_ACTION, SCORED = "none", "scored"


T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Dump(Base):
    __tablename__ = "dumps"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(Text)
    dump_date: Mapped[date] = mapped_column(Date, index=True)
    paper_count: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)  # the normalized title: a paper's identity
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    code_url: Mapped[str | None] = mapped_column(Text, default=None)
    first_seen: Mapped[date] = mapped_column(Date, index=True)
    # Known once the paper came from the Daily Papers API: its identity from then on, kept
    # through later edits of its title on the page.
    arxiv_id: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=None)
    authors: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    upvotes: Mapped[int | None] = mapped_column(Integer, default=None)
    ai_summary: Mapped[str | None] = mapped_column(Text, default=None)

    appearances: Mapped[list[Appearance]] = relationship(
        back_populates="paper", order_by="Appearance.seen_on", cascade="all, delete-orphan"
    )


class PaperVector(Base):
    """A paper's sentence vectors (see `ranking.embed`), made at ingest for the text they were
    made of."""

    __tablename__ = "paper_vectors"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(255))
    text_sha256: Mapped[str] = mapped_column(String(64))
    vectors: Mapped[bytes] = mapped_column(LargeBinary)


class Appearance(Base):
    """One paper at one position of one dump: the trending signal."""

    __tablename__ = "appearances"
    __table_args__ = (UniqueConstraint("dump_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    dump_id: Mapped[int] = mapped_column(ForeignKey("dumps.id", ondelete="CASCADE"))
    seen_on: Mapped[date] = mapped_column(Date)
    position: Mapped[int] = mapped_column(Integer)  # 1 = top of the page

    paper: Mapped[Paper] = relationship(back_populates="appearances")
    dump: Mapped[Dump] = relationship()


class TokenCutover(Base):
    """One row: the day this store began making opaque link tokens (see `mail.tokens`)."""

    __tablename__ = "token_cutover"

    id: Mapped[int] = mapped_column(primary_key=True)
    opaque_since: Mapped[date] = mapped_column(Date)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    name: Mapped[str] = mapped_column(Text, default="")
    topics: Mapped[list[str]] = mapped_column(JSON)
    exclude: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_papers: Mapped[int] = mapped_column(Integer, default=10)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    # a day nothing matched: "skip" (no mail) or "trending" (the day's most trending papers)
    on_empty: Mapped[str] = mapped_column(String(16), default="skip", server_default="skip")
    source: Mapped[str] = mapped_column(Text, default="")  # file:line it was last read from
    listed: Mapped[bool] = mapped_column(default=True)  # present in the lists at the last sync
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # Why it is suspended or unsubscribed ("complaint", "bounce 5.1.1", "bounce score",
    # "3 failed deliveries", "unsubscribe"); None while it is active.
    status_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    # Bounces add to the score, which halves every 30 days (`subscribers.sync.BOUNCE_HALF_LIFE`);
    # it is as of bounce_score_at.
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    bounce_score_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Digest(Base):
    """One subscriber's email for one date, and its place in the outbox."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("subscriber_id", "digest_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    digest_date: Mapped[date] = mapped_column(Date, index=True)
    # Papers new from window_start to digest_date, inclusive, were considered.
    window_start: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    smtp_reply: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # A sender working on it (state sending) until then; after that, anyone may take it over.
    claimed_by: Mapped[str | None] = mapped_column(String(255), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    subscriber: Mapped[Subscriber] = relationship()
    papers: Mapped[list[DigestPaper]] = relationship(
        order_by="DigestPaper.rank", cascade="all, delete-orphan"
    )


class DigestPaper(Base):
    __tablename__ = "digest_papers"

    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), primary_key=True, index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    matched: Mapped[list[str]] = mapped_column(JSON)  # the reader's topics it matched
    # What matched, per topic: a JSON list as text, encoded once per distinct list by the
    # caller (a run stores hundreds of thousands of rows that repeat a few thousand lists).
    why: Mapped[str | None] = mapped_column(Text, default=None)

    paper: Mapped[Paper] = relationship()


class Feedback(Base):
    """What a reader said of a paper from a digest's links: "more" or "less" like this. One row
    per reader and paper: saying the other later replaces it."""

    __tablename__ = "feedback"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), primary_key=True, index=True)
    verdict: Mapped[str] = mapped_column(String(8))  # MORE | LESS
    digest_date: Mapped[date] = mapped_column(Date)  # the digest whose link it came from
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RunRecord(Base):
    """One run of the daily job, for `newsletter status`."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_date: Mapped[date] = mapped_column(Date, index=True)
    dry_run: Mapped[bool] = mapped_column(default=False)
    holder: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    outcome: Mapped[str] = mapped_column(String(32), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BounceRecord(Base):
    """One message read from the bounce mailbox, once (`key`), and what it did."""

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # its Message-ID, else a hash
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # its Date (or now)
    read_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # bounce | temporary | complaint | auto-reply | forged | unmatched | unrecognised
    kind: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[str | None] = mapped_column(String(16), default=None)  # e.g. 5.1.1
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id"), default=None, index=True
    )
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id"), default=None)
    action: Mapped[str] = mapped_column(String(16), default="none")  # scored | suspended | ...
    detail: Mapped[str] = mapped_column(Text, default="")


class FetchRecord(Base):
    """One download of a day's Daily Papers list, for `newsletter status`."""

    __tablename__ = "fetches"

    id: Mapped[int] = mapped_column(primary_key=True)
    fetch_date: Mapped[date] = mapped_column(Date, index=True)  # the day whose list was asked
    fetched_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | failed
    papers: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class RunLease(Base):
    """Held by the one process running a date; other processes see it and stand back. It expires
    unless renewed, so a process that died does not block the date for long."""

    __tablename__ = "run_leases"

    run_date: Mapped[date] = mapped_column(Date, primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class ComposedDate(Base):
    """A date's digests were selected and stored by `holder`, for the subscribers and papers the
    fingerprint stands for: later senders of that date go straight to sending."""

    __tablename__ = "compositions"

    run_date: Mapped[date] = mapped_column(Date, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255))
    holder: Mapped[str] = mapped_column(String(255))
    composed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # skipped, not due


class Database:
    """An engine plus its session factory; `session()` is one transaction. Opening a database
    brings its schema up to date first (`newsletter.migrations`)."""

    def __init__(self, url: str, *, upgrade: bool = True, busy_timeout: float = 30.0):
        self.url = url
        try:
            _make_sqlite_folder(url)
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        except (ArgumentError, OSError) as error:
            raise DatabaseUnavailable(unavailable(url, error)) from None
        except ImportError as error:  # mysql://, say: a back-end whose driver is not installed
            raise DatabaseUnavailable(
                unavailable(url, error)
                + " (the database's driver is not installed: SQLite and PostgreSQL are supported)"
            ) from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout))
        if upgrade:
            try:
                _upgrade_when_free(self.engine)
            except (DatabaseError, OSError) as error:
                self.engine.dispose()
                if not environmental(error):
                    raise
                raise DatabaseUnavailable(unavailable(url, error)) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error: all or nothing."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


class DatabaseUnavailable(NewsletterError):
    """The database cannot be opened, written or reached: the environment, not a bug."""


def environmental(error: BaseException) -> bool:
    """Whether a database error comes from the environment (unreachable, locked, read-only,
    damaged, full) rather than from our SQL: a constraint or syntax error is a bug."""
    return isinstance(error, OperationalError | OSError) or type(error) is DatabaseError


def unavailable(url: str, error: BaseException) -> str:
    """One line naming the database (its password hidden) and what is wrong with it."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "NEWSLETTER_DATABASE_URL"
    if isinstance(error, DBAPIError) and error.orig is not None:
        reason = str(error.orig)
    elif isinstance(error, OSError):
        reason = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    else:
        reason = str(error)
    reason = " ".join(reason.split("\n")[0].split()) or type(error).__name__
    hint = ""
    lowered = reason.lower()
    if "file is not a database" in lowered or "malformed" in lowered:
        hint = " (the file is damaged or not a SQLite database: restore it from a backup)"
    elif "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        hint = " (it is read-only here: check the file's and its folder's permissions)"
    elif "connection refused" in lowered or "could not connect" in lowered:
        hint = " (is the database server running and reachable?)"
    return f"database {shown}: {reason}{hint}"


INSERT_BATCH = 5000  # rows per bulk INSERT
# Values per `IN (...)`: SQLite allows 32,766 bound variables in a statement, PostgreSQL 65,535.
QUERY_CHUNK = 500


def chunked(values: Iterable[T], size: int = QUERY_CHUNK) -> Iterator[list[T]]:
    """`values` in lists of at most `size`, for queries that bind each one."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_in_batches(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Core bulk INSERTs, part of the session's transaction: at 100,000 rows this takes seconds
    where one ORM object per row takes minutes."""
    for start in range(0, len(rows), INSERT_BATCH):
        session.execute(insert(table), rows[start : start + INSERT_BATCH])


# --- Schema migrations --------------------------------------------------------------------------

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema `create_all` made before there were migrations
_MIGRATION_LOCK = 72_120_001  # a PostgreSQL advisory lock: one process migrates at a time


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# The newest migration's revision. Written here, so that opening a database that is up to date
# needs no Alembic (a sixth of a command's start-up); a test checks it is the migrations' head.
HEAD_REVISION = "0009"


def head_revision() -> str:
    return HEAD_REVISION


def current_revision(engine_or_connection: Engine | Connection) -> str | None:
    """The revision the database was last migrated to; None before its first migration."""
    if isinstance(engine_or_connection, Engine):
        with engine_or_connection.connect() as connection:
            return current_revision(connection)
    if not inspect(engine_or_connection).has_table("alembic_version"):
        return None
    return engine_or_connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade_when_free(engine: Engine, tries: int = 4) -> None:
    """`upgrade_schema`, tried again when SQLite answers "database is locked" at once: a new
    file's first connections race to switch it to WAL and to read its revision, and SQLite does
    not wait (its busy handler is skipped) where a waiting reader could deadlock a writer."""
    for attempt in range(tries):
        try:
            upgrade_schema(engine)
            return
        except OperationalError as error:
            locked = "database is locked" in str(error).lower()
            if not locked or engine.dialect.name != "sqlite" or attempt == tries - 1:
                raise
            engine.dispose()
            time.sleep(0.1 * 2**attempt)


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision: (revision before, revision now). A database made
    before migrations existed is recognised and taken from the baseline; a database already up to
    date costs one query."""
    head = head_revision()
    before = current_revision(engine)
    if before == head:
        return before, head
    with _sqlite_migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        # Under the lock: another process may have migrated while we waited.
        found = current_revision(connection)
        if found != head:
            from alembic import command

            config = _alembic_config(connection)
            if found is None and inspect(connection).has_table("digests"):
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
    return before, head


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """One process migrates a SQLite file at a time (PostgreSQL has its advisory lock): two first
    runs started together would otherwise both create the schema. The lock is an flock on a file
    beside the database, never on the database file itself: closing another descriptor of that
    file would drop SQLite's own POSIX locks."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_sqlite_folder(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(busy_timeout: float, connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # First: switching a new file to WAL takes a lock that a second process opening it at the
    # same moment must wait for, not fail on.
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL loses no committed transaction when the process dies (only on power
    # loss), and saves an fsync per recorded delivery.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
