"""Leases: the per-date lease under which one process at a time selects a date's digests (the
others wait, then share the sending), the heartbeat that keeps a lease, and who holds one.

The lease is a row in the database itself, not a lock file: taking it is an INSERT that only one
process can win (the date is the primary key), or an UPDATE of a lease that has expired. The holder
renews it while it works; a holder that died loses it after `LEASE_SECONDS`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from .db import (
    Database,
    RunLease,
    utcnow,
)

LEASE_SECONDS = 120


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def died_here(holder: str) -> bool:
    """Whether the holder was a process on this machine that no longer runs (killed, crashed)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseHeld(Exception):
    """Another process holds the date's lease."""

    def __init__(self, holder: str, expires_at: object):
        self.holder = holder
        super().__init__(f"another run holds the lease ({holder}, until {expires_at} UTC)")


@dataclass
class Lease:
    db: Database
    day: date
    holder: str
    seconds: int = LEASE_SECONDS

    def renew(self) -> None:
        with self.db.session() as session:
            session.execute(
                update(RunLease)
                .where(RunLease.run_date == self.day, RunLease.holder == self.holder)
                .values(expires_at=utcnow() + timedelta(seconds=self.seconds))
            )

    def release(self) -> None:
        with self.db.session() as session:
            session.execute(
                delete(RunLease).where(
                    RunLease.run_date == self.day, RunLease.holder == self.holder
                )
            )


def acquire(db: Database, day: date, holder: str, seconds: int = LEASE_SECONDS) -> Lease:
    """Take the date's lease, or raise `LeaseHeld`."""
    expires = utcnow() + timedelta(seconds=seconds)
    try:
        with db.session() as session:
            session.add(RunLease(run_date=day, holder=holder, expires_at=expires))
        return Lease(db, day, holder, seconds)
    except IntegrityError:
        pass
    with db.session() as session:  # taken: take it over only if it expired or its holder died
        current = session.get(RunLease, day)
        dead = current is not None and died_here(current.holder)
        stale = RunLease.holder == current.holder if dead else RunLease.expires_at < utcnow()
        taken = session.execute(
            update(RunLease)
            .where(RunLease.run_date == day, stale)
            .values(holder=holder, expires_at=expires)
        ).rowcount
        if taken:
            return Lease(db, day, holder, seconds)
    raise LeaseHeld(current.holder if current else "?", current.expires_at if current else "?")


class Heartbeat:
    """Calls `renew` every `interval` seconds from a background thread while a run works: a
    lease, or a sender's claims, stay its own only as long as it is alive."""

    def __init__(self, renew: Callable[[], None], interval: float):
        self.renew = renew
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.renew()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_lease(
    db: Database, day: date, holder: str, stop: threading.Event | None, poll: float = 0.5
) -> Lease | None:
    """The date's lease, once whoever holds it lets go (or dies); None if asked to stop first."""
    while True:
        try:
            return acquire(db, day, holder)
        except LeaseHeld:
            if stop is None:
                time.sleep(poll)
            elif stop.wait(poll):
                return None
