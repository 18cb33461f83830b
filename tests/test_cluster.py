"""Several senders on one database (PostgreSQL, and SQLite with its single writer): they share a
date's digests, each subscriber gets exactly one, and a dead sender's batch is taken over."""

from __future__ import annotations

import shutil
import signal
import time
from datetime import date, timedelta

from sqlalchemy import func, select, update

from newsletter.config import load_settings
from newsletter.digests.daily import run_day
from newsletter.store.db import SENDING, SENT, Database, Digest, utcnow

from .conftest import SEEDS, TODAY, write_list
from .smtp_server import FaultyHandler, SmtpServer
from .test_deliver import smtp_env, start_run

MAR_11 = date(2026, 3, 11)
READERS = 150  # more than one claim batch (100)


def prepare(workdir, cli, readers=READERS):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    rows = "\n".join(f"reader{n:03d}@example.org,neural networks" for n in range(readers))
    write_list(workdir / "subscribers", "list.csv", f"email,topics\n{rows}\n")
    assert cli("ingest").code == 0 and cli("subscribers").code == 0


def sender(workdir, env, port):
    return start_run(workdir, env, port, NEWSLETTER_WORKERS="0")


def claimed_by(url, pid):
    database = Database(url)
    with database.session() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Digest)
            .where(Digest.state == SENDING, Digest.claimed_by.like(f"%:{pid}:%"))
        )
    database.close()
    return count


def states(url):
    database = Database(url)
    with database.session() as session:
        found = dict(
            session.execute(select(Digest.state, func.count()).group_by(Digest.state)).all()
        )
    database.close()
    return found


def test_two_senders_share_the_digests_and_nobody_gets_two(env, workdir, cli):
    prepare(workdir, cli)
    first, second = FaultyHandler(delay=0.05), FaultyHandler(delay=0.05)
    with SmtpServer(first) as one, SmtpServer(second) as two:
        senders = [sender(workdir, env, one.port), sender(workdir, env, two.port)]
        outputs = [process.communicate(timeout=180) for process in senders]
    assert [process.returncode for process in senders] == [0, 0], outputs
    together = first.counts() + second.counts()
    assert len(together) == READERS and set(together.values()) == {1}
    shares = [len(first.counts()), len(second.counts())]
    print("split between the two senders:", shares)
    assert min(shares) > 0  # both sent: the second did not wait for the first to finish
    assert states(env["NEWSLETTER_DATABASE_URL"]) == {SENT: READERS}


def test_a_killed_senders_batch_is_taken_over_by_the_other(env, workdir, cli):
    prepare(workdir, cli)
    slow, other = FaultyHandler(delay=0.3), FaultyHandler(delay=0.02)
    with SmtpServer(slow) as one, SmtpServer(other) as two:
        victim = sender(workdir, env, one.port)
        deadline = time.monotonic() + 60
        while len(slow.counts()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(slow.counts()) >= 5, "the first sender never got going"
        survivor = sender(workdir, env, two.port)
        while len(other.counts()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(other.counts()) >= 5, "the second sender never got going"
        assert victim.poll() is None, "the first sender finished before it could be killed"
        victim.send_signal(signal.SIGKILL)  # mid-batch: it holds claimed digests it never sends
        victim.wait()
        killed_at, before = time.monotonic(), len(slow.counts())
        held = claimed_by(env["NEWSLETTER_DATABASE_URL"], victim.pid)
        while claimed_by(env["NEWSLETTER_DATABASE_URL"], victim.pid) and survivor.poll() is None:
            time.sleep(0.05)
        reclaimed = time.monotonic() - killed_at
        out, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err
    together = slow.counts() + other.counts()
    assert len(together) == READERS  # nobody lost
    duplicates = sum(together.values()) - READERS
    print(
        f"victim sent {before}, held {held} claimed, taken over in {reclaimed:.2f} s; "
        f"survivor sent {len(other.counts())}, duplicates {duplicates}"
    )
    assert held > 0
    assert duplicates <= 2  # at most what was in flight on the victim's two connections
    assert states(env["NEWSLETTER_DATABASE_URL"]) == {SENT: READERS}


def composed_and_claimed_elsewhere(db, settings, count, seconds):
    """Compose the date (sending nothing), then make `count` digests look claimed by a live
    sender on another machine for `seconds`: their ids, and when the claims run out."""
    run_day(db, settings, MAR_11, today=TODAY, dry_run=False, stop=_stopped())
    expires = utcnow() + timedelta(seconds=seconds)
    with db.session() as session:
        ids = session.scalars(select(Digest.id).order_by(Digest.id).limit(count)).all()
        session.execute(
            update(Digest)
            .where(Digest.id.in_(ids))
            .values(state=SENDING, claimed_by="elsewhere:4242:feedbeef", claimed_until=expires)
        )
    return ids, expires


def test_claims_of_a_sender_on_another_machine_are_taken_over_when_they_expire(
    env, workdir, cli, db
):
    prepare(workdir, cli, readers=30)
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        settings = load_settings(smtp_env(env, server.port, NEWSLETTER_CLAIM_LEASE="2"))
        ids, expired = composed_and_claimed_elsewhere(db, settings, 10, seconds=2)
        summary = run_day(db, settings, MAR_11, today=TODAY, dry_run=False)
    assert summary.sent == 30 and set(handler.counts().values()) == {1}
    # Each of the ten was sent only once the other machine's claim on it had run out.
    with db.session() as session:
        sent_at = session.scalars(select(Digest.sent_at).where(Digest.id.in_(ids))).all()
    assert len(sent_at) == 10 and min(sent_at) >= expired


def test_claims_that_run_out_between_two_looks_are_still_taken_over(
    env, workdir, cli, db, monkeypatch
):
    """The sender finds nothing free, then looks for live claims of others: if those ran out in
    between, it must take them rather than finish with them unsent."""
    from newsletter.digests import daily

    prepare(workdir, cli, readers=12)
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        settings = load_settings(smtp_env(env, server.port))
        composed_and_claimed_elsewhere(db, settings, 4, seconds=1)
        looked = daily.others_at_work

        def late_look(*args):  # the claims run out just before the second look
            time.sleep(1.2)
            return looked(*args)

        monkeypatch.setattr(daily, "others_at_work", late_look)
        summary = run_day(db, settings, MAR_11, today=TODAY, dry_run=False)
    assert summary.sent == 12 and set(handler.counts().values()) == {1}


def _stopped():
    import threading

    stop = threading.Event()
    stop.set()
    return stop
