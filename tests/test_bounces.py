"""Bounces and complaints: VERP envelope senders, what each format of bounce does to the reader it
names, and what changes nothing (forged tokens, auto-replies, strangers, bad input)."""

from __future__ import annotations

import email
import json
import mailbox
import shutil
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.config import load_settings
from newsletter.digests.daily import run_day
from newsletter.mail.tokens import read_verp_token, verp_token
from newsletter.store.db import SENT, Database, Digest, Subscriber
from newsletter.store.subscribers import current_score

from . import bounce_samples as samples
from .conftest import ROOT, SECRET, SEEDS, TODAY, parse_eml
from .smtp_server import FaultyHandler, SmtpServer

AUG_8 = date(2026, 8, 8)
BOUNCES = "bounces@digest.example"


def bounce_env(env, port=25, **extra):
    return {
        **env,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
        **extra,
    }


@pytest.fixture
def benv(env):
    return bounce_env(env)


@pytest.fixture(scope="module")
def sent_once(tmp_path_factory):
    """The demo's digests of Aug 8 sent for real, once per module: the database file it leaves,
    and reader → (envelope sender, Message-ID)."""
    folder = tmp_path_factory.mktemp("sent")
    for name in ("seeds", "subscribers"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("*.json"))
    env = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'newsletter.db'}",
        "NEWSLETTER_SEEDS_DIR": str(folder / "seeds"),
        "NEWSLETTER_SUBSCRIBERS_DIR": str(folder / "subscribers"),
        "NEWSLETTER_FROM": "Trending Papers <papers@digest.example>",
        "NEWSLETTER_BASE_URL": "https://digest.example",
    }
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        settings = load_settings(bounce_env(env, server.port))
        database = Database(settings.database_url)
        summary = run_day(database, settings, AUG_8, today=TODAY, dry_run=False)
        database.close()
    assert summary.sent >= 3
    deliveries = {
        rcpt: (handler.senders[rcpt], email.message_from_bytes(data)["Message-ID"])
        for rcpt, data in handler.received
    }
    return folder / "newsletter.db", deliveries


@pytest.fixture
def sent(sent_once, demo, database_url):
    """This test's database is a copy of that run's (listed before `db`, so it is made first)."""
    template, deliveries = sent_once
    shutil.copy(template, database_url.removeprefix("sqlite:///"))
    return deliveries


def reader(db, address):
    with db.session() as session:
        return session.scalar(select(Subscriber).where(Subscriber.email == address))


def read(cli, benv, workdir, name, data, *more):
    path = workdir / name
    path.write_bytes(data)
    return cli("bounces", "read", str(path), *more, extra_env=benv)


def test_each_message_has_its_own_signed_envelope_sender(sent, db):
    senders = {rcpt: verp for rcpt, (verp, _) in sent.items()}
    assert len(set(senders.values())) == len(senders)  # one per digest
    for rcpt, verp in senders.items():
        local, _, domain = verp.rpartition("@")
        assert domain == "digest.example" and local.startswith("bounces+")
        assert len(local) <= 64
        named = read_verp_token(SECRET, local.partition("+")[2])
        assert named == (reader(db, rcpt).id, AUG_8)
        assert read_verp_token("another-secret-of-at-least-32-bytes-xx", local[8:]) is None


def test_the_from_header_keeps_the_list_address_and_dry_run_files_show_the_envelope(
    cli, benv, demo
):
    result = cli("run", "--date", "2026-08-08", "--dry-run", extra_env=benv)
    assert result.code == 0, result.stderr
    message = parse_eml(demo / "outbox" / "2026-08-08" / "ada@example.org.eml")
    assert message["From"] == "Trending Papers <papers@digest.example>"
    path = message["Return-Path"].strip("<>")
    assert path.startswith("bounces+") and path.endswith("@digest.example")
    assert read_verp_token(SECRET, path[8:].partition("@")[0])[1] == AUG_8


@pytest.mark.parametrize("sample", [samples.exim, samples.qmail])
def test_an_address_that_does_not_exist_is_suspended_at_once(sample, sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    result = read(cli, benv, workdir, "b.eml", sample("ada@example.org", message_id, verp))
    assert result.code == 0, result.stderr
    assert "ada@example.org: suspended (5.1.1)" in result.stdout
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.status_reason) == ("suspended", "bounce 5.1.1")
    others = {r.email: r.status for r in _readers(db) if r.email != "ada@example.org"}
    assert set(others.values()) == {"active"}  # nobody else is touched


def _readers(db):
    with db.session() as session:
        return list(session.scalars(select(Subscriber)))


def test_other_permanent_and_temporary_bounces_add_to_the_score_once_per_digest(
    sent, db, cli, benv, workdir
):
    verp, message_id = sent["grace.hopper@example.org"]
    exchange = samples.exchange("grace.hopper@example.org", message_id, verp)
    assert read(cli, benv, workdir, "x.eml", exchange).code == 0
    grace = reader(db, "grace.hopper@example.org")
    assert grace.status == "active" and grace.bounce_score == pytest.approx(1.0)
    delayed = samples.dsn("grace.hopper@example.org", message_id, verp)
    result = read(cli, benv, workdir, "d.eml", delayed)
    assert result.code == 0 and "1 temporary" in result.stdout
    assert reader(db, "grace.hopper@example.org").bounce_score == pytest.approx(1.0)  # same digest

    verp, message_id = sent["fei.li@example.com"]
    read(cli, benv, workdir, "t.eml", samples.dsn("fei.li@example.com", message_id, verp))
    alan = reader(db, "fei.li@example.com")
    assert alan.status == "active" and alan.bounce_score == pytest.approx(0.25)
    listed = json.loads(cli("subscribers", "--json", extra_env=benv).stdout)
    scores = {row["email"]: (row["status"], row["bounce_score"]) for row in listed}
    assert scores["fei.li@example.com"][0] == "active"
    # The bounce says Aug 8, before the digest went out (this test sent it just now): a Date
    # cannot move a bounce before its send, so nothing has decayed yet.
    assert scores["fei.li@example.com"][1] == pytest.approx(0.25, abs=0.005)


def test_a_complaint_unsubscribes_for_good_and_resubscribe_clears_it(sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    result = read(cli, benv, workdir, "arf.eml", samples.arf("ada@example.org", message_id, verp))
    assert result.code == 0 and "ada@example.org: unsubscribed" in result.stdout
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.status_reason) == ("unsubscribed", "complaint")
    # The lists still name her: the next sync does not bring her back.
    assert cli("subscribers", extra_env=benv).code == 0
    assert reader(db, "ada@example.org").status == "unsubscribed"
    assert cli("resubscribe", "ada@example.org", extra_env=benv).code == 0
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.status_reason, ada.bounce_score) == ("active", None, 0)


def test_a_feedback_report_that_is_not_a_complaint_changes_nothing(sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    note = samples.arf("ada@example.org", message_id, verp, feedback="not-spam")
    assert read(cli, benv, workdir, "ns.eml", note).code == 0
    assert reader(db, "ada@example.org").status == "active"


def test_auto_replies_forged_tokens_and_strangers_change_nothing(sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    local, _, domain = verp.rpartition("@")
    forged = local[:-4] + ("aaaa" if not local.endswith("aaaa") else "bbbb") + "@" + domain
    other_id = sent["fei.li@example.com"][1]
    messages = {
        "ooo.eml": samples.out_of_office("ada@example.org", message_id, verp),
        "forged.eml": samples.exim("ada@example.org", message_id, forged),
        # No token (sent to the From address): the returned Message-ID is Alan's digest.
        "mismatch.eml": samples.exim("ada@example.org", other_id, "papers@digest.example"),
        "stranger.eml": samples.exim("eve@example.org", "<nope@x>", "papers@digest.example"),
    }
    for name, data in messages.items():
        (workdir / name).write_bytes(data)
    result = cli("bounces", "read", *(str(workdir / n) for n in messages), extra_env=benv)
    assert result.code == 0, result.stderr
    assert "1 auto-reply, 1 forged, 2 unmatched" in result.stdout
    assert {r.status for r in _readers(db)} == {"active"}
    assert {r.bounce_score for r in _readers(db)} == {0}


def test_without_a_token_a_bounce_counts_when_address_and_message_id_match(
    sent, db, cli, benv, workdir
):
    _, message_id = sent["ada@example.org"]
    bounce = samples.exim("ada@example.org", message_id, "papers@digest.example")
    assert read(cli, benv, workdir, "plain.eml", bounce).code == 0
    assert reader(db, "ada@example.org").status == "suspended"


def test_the_same_mail_read_twice_from_maildir_and_mbox_changes_nothing(
    sent, db, cli, benv, workdir
):
    verp, message_id = sent["grace.hopper@example.org"]
    exchange = samples.exchange("grace.hopper@example.org", message_id, verp)
    maildir = mailbox.Maildir(workdir / "Maildir", create=True)
    maildir.add(exchange)
    box = mailbox.mbox(workdir / "bounces.mbox", create=True)
    box.add(exchange)
    box.flush()
    first = cli("bounces", "read", str(workdir / "Maildir"), extra_env=benv)
    assert first.code == 0 and "1 scored" in first.stdout
    again = cli("bounces", "read", str(workdir / "Maildir"), str(workdir / "bounces.mbox"),
                extra_env=benv)  # fmt: skip
    assert again.code == 0 and "read 0 message(s)" in again.stdout
    assert "2 already read" in again.stdout
    assert reader(db, "grace.hopper@example.org").bounce_score == pytest.approx(1.0)


def test_bad_input_is_one_line_each_and_changes_nothing(sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    files = {
        "notes.txt": b"these are my notes\nnothing to see\n",
        "binary.eml": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
        "norecipient.eml": samples.dsn(
            "ada@example.org",
            message_id,
            verp,
            action="failed",
            status="5.1.1",
            recipients=False,
        ),  # fmt: skip
        "huge.eml": samples.exim("ada@example.org", message_id, verp) + b"x" * (17 * 2**20),
        "good.eml": samples.dsn("fei.li@example.com", *reversed(sent["fei.li@example.com"])),
    }
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    result = cli("bounces", "read", *(str(workdir / n) for n in files), extra_env=benv)
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith(
        "notes.txt: no mail headers (From, Date, Subject…), not a mail message"
    )
    assert "binary.eml: binary data (NUL byte), not a mail message" in lines[1]
    assert "norecipient.eml: a delivery report that names no recipient" in lines[2]
    assert "huge.eml: 17 MiB, too large for a bounce" in lines[3]
    assert reader(db, "ada@example.org").status == "active"
    assert reader(db, "fei.li@example.com").bounce_score == pytest.approx(
        0.25
    )  # the good one went in


def test_a_score_that_reaches_four_suspends_and_it_halves_every_30_days(db, settings, cli, benv):
    now = datetime(2026, 8, 20, 7, 0)
    assert current_score(4.0, now - timedelta(days=30), now) == pytest.approx(2.0)
    assert current_score(4.0, now - timedelta(days=60), now) == pytest.approx(1.0)
    days = [date(2026, 11, 20) + timedelta(days=i) for i in range(5)]
    with db.session() as session:
        ada = Subscriber(email="ada@example.org", topics=["x"])
        session.add(ada)
        session.flush()
        ada_id = ada.id
        for day in days:
            session.add(
                Digest(
                    subscriber_id=ada_id,
                    digest_date=day,
                    window_start=day,
                    state=SENT,
                    message_id=f"<d{day}@digest.example>",
                )  # fmt: skip
            )
    outcomes = []
    for day in days:  # a policy block (5.7.1) every day: not "no such address"
        verp = f"bounces+{verp_token(SECRET, ada_id, day)}@digest.example"
        bounce = samples.exim("ada@example.org", f"<d{day}@x>", verp, "550 5.7.1 Blocked")
        bounce = bounce.replace(
            samples.DATE.encode(), f"{day:%a, %d %b %Y} 07:05:00 +0000".encode()
        )
        path = settings.outbox_dir / f"{day}.eml"
        path.write_bytes(bounce)
        result = cli("bounces", "read", str(path), extra_env=benv)
        assert result.code == 0, result.stderr
        outcomes.append(reader(db, "ada@example.org").status)
    # 1 + 0.977 + 0.955 + 0.933 + 0.912: the fifth daily bounce reaches 4.
    assert outcomes == ["active"] * 4 + ["suspended"]
    assert reader(db, "ada@example.org").status_reason == "bounce score"
    status = json.loads(cli("status", "--json", extra_env=benv).stdout)["bounces"]
    assert status == {
        "days": 7,
        "bounces": 5,
        "complaints": 0,
        "suspended": 1,
        "ignored": 0,
        "sender": 0,
    }
    shown = cli("status", extra_env=benv).stdout
    assert "last 7 days: 5 bounce(s), 0 complaint(s), 1 suspended by bounces" in shown
    assert "suspended subscribers: ada@example.org (bounce score)" in shown


def test_reading_bounces_without_the_key_that_signed_the_tokens_is_refused(cli, env, workdir):
    (workdir / "b.eml").write_bytes(samples.exim("ada@example.org", "<m@x>", "x@digest.example"))
    unsigned = {**env, "NEWSLETTER_BOUNCE_ADDRESS": BOUNCES}
    result = cli("bounces", "read", str(workdir / "b.eml"), extra_env=unsigned)
    assert result.code == 1
    assert result.stderr.strip() == (
        "error: NEWSLETTER_SECRET_KEY is not set: the VERP tokens of bounces are verified with "
        "the key that signed them"
    )


# --- Real bounces from a real MTA -----------------------------------------------------------------


def test_postfix_bounces_an_address_it_does_not_have_and_its_dsn_suspends_it(db, env, workdir, cli):
    from .postfix import Postfix, available
    from .smtp_server import free_port

    if reason := available():
        pytest.skip(reason)
    (workdir / "subscribers" / "l.yaml").write_text(
        "subscribers:\n"
        "  - email: ghost@digest.example\n    topics: [quantization]\n"
        "  - email: ada@example.org\n    topics: [quantization]\n"
    )
    (workdir / "seeds").rmdir()
    (workdir / "seeds").symlink_to(SEEDS)
    postfix = Postfix(free_port(), myhostname="mx.digest.example")
    maildir = postfix.mailbox(BOUNCES)
    with postfix:
        settings = load_settings(bounce_env(env, postfix.port))
        summary = run_day(db, settings, AUG_8, today=TODAY, dry_run=False)
        assert summary.sent == 2  # Postfix accepts both; it finds out about ghost@ afterwards
        assert postfix.wait_for_log("status=bounced", "status=sent (delivered to maildir)"), (
            postfix.log()[-3000:]
        )
        (dsn_file,) = (maildir / "new").iterdir()
        dsn = email.message_from_bytes(dsn_file.read_bytes())
        assert dsn.get_content_type() == "multipart/report"  # Postfix's own RFC 3464 report
        assert dsn["Delivered-To"].startswith("bounces+")
        result = cli("bounces", "read", str(maildir), extra_env=bounce_env(env))
        assert result.code == 0, result.stderr
        assert "ghost@digest.example: suspended (5.1.1)" in result.stdout
        ghost = reader(db, "ghost@digest.example")
        assert (ghost.status, ghost.status_reason) == ("suspended", "bounce 5.1.1")
        assert reader(db, "ada@example.org").status == "active"
        again = cli("bounces", "read", str(maildir), extra_env=bounce_env(env))
        assert "read 0 message(s)" in again.stdout and "1 already read" in again.stdout


# --- A real IMAP mailbox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imap_server():
    from .dovecot import Dovecot, available
    from .smtp_server import free_port

    if reason := available():
        pytest.skip(reason)
    with Dovecot(free_port(), "bounces@digest.example", "s3cret pass") as server:
        yield server


@pytest.fixture
def dovecot(imap_server, request):
    """A mailbox of this test's own on the module's Dovecot."""
    return imap_server.mailbox(request.node.name.partition("[")[0][-40:])


def imap_env(env, dovecot, query="", password="s3cret%20pass"):
    """STARTTLS (imap://) to a server on this machine: its own certificate is taken."""
    place = f"127.0.0.1:{dovecot.port}/{dovecot.name}"
    url = f"imap://bounces%40digest.example:{password}@{place}{query}"
    return bounce_env(env, NEWSLETTER_BOUNCE_IMAP_URL=url)


def flags(dovecot):
    import imaplib
    import ssl

    with imaplib.IMAP4("127.0.0.1", dovecot.port) as imap:
        imap.starttls(ssl._create_unverified_context())
        imap.login("bounces@digest.example", "s3cret pass")
        imap.select(dovecot.name, readonly=True)
        _, data = imap.fetch("1:*", "(FLAGS)")
    return [line.decode() for line in data]


def test_bounces_fetch_reads_the_imap_mailbox_once_and_flags_what_it_read(
    sent, db, cli, env, dovecot
):
    ada_verp, ada_id = sent["ada@example.org"]
    fei_verp, fei_id = sent["fei.li@example.com"]
    dovecot.deliver("1.eml", samples.exim("ada@example.org", ada_id, ada_verp))
    dovecot.deliver("2.eml", samples.arf("fei.li@example.com", fei_id, fei_verp))
    dovecot.deliver("3.eml", samples.out_of_office("ada@example.org", ada_id, ada_verp))
    dovecot.deliver("4.eml", b"this is not mail at all\n")
    result = cli("bounces", "fetch", extra_env=imap_env(env, dovecot))
    assert result.code == 1  # the one that is not mail
    assert result.stderr.strip().endswith(
        "uid 4: no mail headers (From, Date, Subject…), not a mail message"
    )
    assert "s3cret" not in result.stdout + result.stderr
    assert "ada@example.org: suspended (5.1.1)" in result.stdout
    assert "fei.li@example.com: unsubscribed" in result.stdout
    assert reader(db, "ada@example.org").status == "suspended"
    assert reader(db, "fei.li@example.com").status_reason == "complaint"
    marked = flags(dovecot)
    assert len(marked) == 4  # nothing deleted or moved
    assert all("\\Seen" in line and "$PapersDigestRead" in line for line in marked)

    again = cli("bounces", "fetch", extra_env=imap_env(env, dovecot))
    assert again.code == 0 and "read 0 message(s)" in again.stdout
    assert "0 already read" in again.stdout  # the flagged ones are not even asked for
    dovecot.deliver(
        "5.eml",
        samples.dsn("grace.hopper@example.org", *reversed(sent["grace.hopper@example.org"])),
    )
    later = cli("bounces", "fetch", extra_env=imap_env(env, dovecot))
    assert later.code == 0 and "read 1 message(s): 1 temporary" in later.stdout


def test_an_imap_mailbox_that_cannot_be_reached_or_refuses_the_login_is_one_line(cli, env, dovecot):
    refused = cli("bounces", "fetch", extra_env=imap_env(env, dovecot, password="wrong"))
    assert refused.code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(
        f"error: bounce mailbox imap://bounces@digest.example@127.0.0.1:{dovecot.port}/"
        f"{dovecot.name}: "
    )
    assert "wrong" not in line
    # Asked to check certificates: the test server's own certificate is refused.
    unverified = cli("bounces", "fetch", extra_env=imap_env(env, dovecot, "?verify=true"))
    assert unverified.code == 1 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr


def test_the_scheduler_reads_the_mailbox_before_each_run(sent, db, env, dovecot, demo):
    import threading

    from newsletter.schedule import make_tick

    verp, message_id = sent["ada@example.org"]
    dovecot.deliver("1.eml", samples.qmail("ada@example.org", message_id, verp))
    settings = load_settings(imap_env(env, dovecot))
    tick = make_tick(db, settings, dry_run=True, outbox_dir=demo / "outbox", stop=threading.Event())
    tick()
    assert reader(db, "ada@example.org").status == "suspended"


def test_a_scheduler_whose_mailbox_is_down_still_runs(db, env, demo, caplog):
    import threading

    from newsletter.schedule import make_tick

    from .smtp_server import free_port

    url = f"imaps://u:p@127.0.0.1:{free_port()}/INBOX"
    settings = load_settings(bounce_env(env, NEWSLETTER_BOUNCE_IMAP_URL=url))
    tick = make_tick(db, settings, dry_run=True, outbox_dir=demo / "outbox", stop=threading.Event())
    with caplog.at_level("INFO"):
        tick()
    assert any(r.message.startswith("bounces: bounce mailbox imaps://u@") for r in caplog.records)
    assert any(r.message.startswith("dry-run ") for r in caplog.records)  # the run went on


@pytest.mark.parametrize(
    "url, problem",
    [
        ("imap://u:p@mail.example.org/INBOX?security=none", "would send the password in clear"),
        ("imaps://u:p@mail.example.org:99999/INBOX", "the port is not a number"),
        ("imaps://mail.example.org/INBOX", "expected imaps://user:password@host/"),
        ("imap://u:p@mail.example.org/?security=ssl3", "expected tls, starttls or none"),
    ],
)
def test_a_bounce_mailbox_url_that_cannot_work_is_one_line(cli, env, url, problem):
    result = cli("bounces", "fetch", extra_env=bounce_env(env, NEWSLETTER_BOUNCE_IMAP_URL=url))
    assert result.code == 1
    (line,) = result.stderr.strip().splitlines()
    assert problem in line and ":p@" not in line


# --- Hostile and odd mail to the bounce address -------------------------------------------------


@pytest.mark.parametrize("inner", ["multipart/mixed", "message/rfc822"])
def test_a_message_nested_thousands_deep_is_refused_and_the_next_one_read(
    inner, sent, db, cli, benv, workdir
):
    verp, message_id = sent["ada@example.org"]
    box = workdir / "box"
    (box / "new").mkdir(parents=True)
    (box / "cur").mkdir()
    (box / "tmp").mkdir()
    (box / "new" / "1.nested").write_bytes(samples.nested(3000, inner))
    (box / "new" / "2.dsn").write_bytes(
        samples.dsn("ada@example.org", message_id, verp, "failed", "5.1.1", "550 5.1.1 Unknown")
    )
    result = cli("bounces", "read", str(box), extra_env=benv)
    assert result.code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "1.nested: more than 200 parts, not a bounce; not read" in line
    assert reader(db, "ada@example.org").status == "suspended"  # the real bounce behind it


@pytest.mark.parametrize("names_reader", [True, False])
def test_a_mail_systems_bounce_is_a_bounce_whatever_its_auto_submitted(
    names_reader, sent, db, cli, benv, workdir
):
    verp, message_id = sent["ada@example.org"]
    data = samples.exim_relayed("ada@example.org", message_id, verp, names_reader)
    result = read(cli, benv, workdir, "exim.eml", data)
    assert result.code == 0, result.stderr
    ada = reader(db, "ada@example.org")
    if names_reader:  # 5.1.1: that address does not exist
        assert (ada.status, ada.status_reason) == ("suspended", "bounce 5.1.1")
    else:  # the VERP address it came back to names her; "a permanent error" scores
        assert ada.status == "active" and ada.bounce_score == 1.0


@pytest.mark.parametrize(
    "code",
    [
        "550 5.7.26 Unauthenticated email is not accepted (DMARC)",
        "550 5.7.25 No PTR",
        "550 5.7.27 Sender address has null MX",
        "550 5.7.1 Service unavailable, traffic not accepted from this IP",
    ],
)
def test_a_bounce_saying_our_mail_failed_authentication_is_ours(code, sent, db, cli, benv, workdir):
    verp, message_id = sent["ada@example.org"]
    for n in range(5):  # more than enough to suspend anyone, were it counted
        data = samples.exim("ada@example.org", f"{message_id}", verp, code=code)
        assert read(cli, benv, workdir, f"auth{n}.eml", data).code == 0
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.bounce_score) == ("active", 0)
    status = json.loads(cli("status", "--json", extra_env=benv).stdout)
    assert status["bounces"]["sender"] == 5 and status["bounces"]["bounces"] == 0
    shown = cli("status", extra_env=benv).stdout
    assert "5 sender problem(s)" in shown


@pytest.mark.parametrize(
    "reply, status, reason",
    [
        # the server's own code decides, not Exim's "Status: 5.0.0"
        (
            "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown",
            "suspended",
            "bounce 5.1.1",
        ),
        ("550 5.1.8 Sender address rejected: Domain not found", "active", None),  # about us
        ("550 5.2.2 Mailbox full", "active", None),  # scored: 1
    ],
)
def test_exims_delivery_report_is_read_by_the_servers_own_code(
    reply, status, reason, sent, db, cli, benv, workdir
):
    verp, message_id = sent["ada@example.org"]
    result = read(
        cli, benv, workdir, "dsn.eml", samples.exim_dsn("ada@example.org", message_id, verp, reply)
    )
    assert result.code == 0, result.stderr
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.status_reason) == (status, reason)
    assert ada.bounce_score == (1.0 if "5.2.2" in reply else 0)


def test_exims_report_on_a_local_delivery_counts_for_the_reader_it_came_back_for(
    sent, db, cli, benv, workdir
):
    """Its only recipient is a file in the reader's server's spool, not an address: the VERP
    address it came back to says whose digest it was."""
    verp, message_id = sent["ada@example.org"]
    data = samples.exim_dsn("ada@example.org", message_id, verp, "", local_file=True)
    result = read(cli, benv, workdir, "local.eml", data)
    assert result.code == 0, result.stderr
    ada = reader(db, "ada@example.org")
    assert ada.status == "active" and ada.bounce_score == 1.0
    others = {r.email: r.bounce_score for r in _readers(db) if r.email != "ada@example.org"}
    assert set(others.values()) == {0}


class TricklingServer:
    """A TCP server on 127.0.0.1 that greets like IMAP, one byte every `pause` seconds."""

    def __init__(self, pause: float = 0.5):
        import socket
        import threading

        self.pause = pause
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            for byte in b"* OK IMAP4rev1 ready, slowly" * 100:
                if self.done.wait(self.pause):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.listener.close()


def test_a_mailbox_that_trickles_is_given_up_at_the_deadline_and_the_run_goes_on(
    db, env, demo, caplog, monkeypatch
):
    import threading
    import time

    from newsletter.bounces import mailboxes
    from newsletter.schedule import make_tick

    monkeypatch.setattr(mailboxes, "IMAP_DEADLINE", 2.0)  # (300 s in use)
    with TricklingServer() as server:
        url = f"imap://u:p@127.0.0.1:{server.port}/INBOX"
        settings = load_settings(bounce_env(env, NEWSLETTER_BOUNCE_IMAP_URL=url))
        tick = make_tick(
            db, settings, dry_run=True, outbox_dir=demo / "outbox", stop=threading.Event()
        )
        started = time.monotonic()
        with caplog.at_level("INFO"):
            tick()
        took = time.monotonic() - started
    assert took < 20  # not the 60 s a read may take, nor the hours the greeting would
    assert any("not read within 2 s" in r.message for r in caplog.records)
    assert any(r.message.startswith("dry-run ") for r in caplog.records)  # the run went on


def unsubscribe_mail(token: str, to: str = "unsubscribe@digest.example", serial: int = 1) -> bytes:
    """What a mail client sends for the List-Unsubscribe mailto: link (RFC 2369)."""
    return (
        "Return-Path: <ada@example.org>\n"
        f"Delivered-To: {to}\n"
        "From: Ada <ada@example.org>\n"
        f"To: {to}\n"
        f"Subject: unsubscribe {token}\n"
        f"Message-ID: <unsub-{serial}@mail.example.org>\n"
        "Date: Sat, 08 Aug 2026 09:00:00 +0000\n"
        "\n"
        "Sent from my phone\n"
    ).encode()


def test_the_mailto_unsubscribe_is_read_and_unsubscribes_once(sent, db, cli, benv, workdir):
    from newsletter.mail.tokens import legacy_unsubscribe_token, unsubscribe_token

    day = date(2026, 8, 8)
    token = unsubscribe_token(SECRET, reader(db, "ada@example.org").id, day)
    alan = reader(db, "alan@example.org").id
    forged = unsubscribe_token("another-secret-of-at-least-32-bytes-xx", alan, day)
    result = read(cli, benv, workdir, "forged.eml", unsubscribe_mail(forged, serial=1))
    assert result.code == 0 and "forged" in result.stdout
    assert reader(db, "alan@example.org").status == "active"
    result = read(cli, benv, workdir, "unsub.eml", unsubscribe_mail(token, serial=2))
    assert result.code == 0, result.stderr
    ada = reader(db, "ada@example.org")
    assert (ada.status, ada.status_reason) == ("unsubscribed", "unsubscribe by mail")
    again = read(cli, benv, workdir, "unsub.eml", unsubscribe_mail(token, serial=2))
    assert again.code == 0 and "already read" in again.stdout
    # The request in the body, to the bounce mailbox: the same
    body = unsubscribe_mail("", to=BOUNCES, serial=3).replace(
        b"Sent from my phone",
        f"unsubscribe {unsubscribe_token(SECRET, alan, day)}".encode(),
    )
    assert read(cli, benv, workdir, "body.eml", body).code == 0
    assert reader(db, "alan@example.org").status == "unsubscribed"
    # an old link's token (the address in it) is still read within the window
    old = legacy_unsubscribe_token(SECRET, "grace.hopper@example.org")
    assert read(cli, benv, workdir, "old.eml", unsubscribe_mail(old, serial=4)).code == 0
    assert reader(db, "grace.hopper@example.org").status == "unsubscribed"
