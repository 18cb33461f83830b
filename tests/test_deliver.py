"""Real delivery against a real aiosmtpd server on loopback: every digest once, faults, resume."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.config import load_settings
from newsletter.digests.daily import run_day
from newsletter.store.db import DEFERRED, FAILED, PENDING, SENT, SUSPENDED, Digest, Subscriber

from .conftest import SECRET, SEEDS, TODAY, reader_of_link, write_list
from .smtp_server import FaultyHandler, SmtpServer, free_port, self_signed_context

AUG_8 = date(2026, 8, 8)


def smtp_env(env, port, **extra):
    return {
        **env,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SMTP_RETRY_DELAY": "0.05",
        "NEWSLETTER_SMTP_CONNECTIONS": "2",
        "NEWSLETTER_SMTP_TIMEOUT": "10",
        **extra,
    }


def start_run(workdir, env, port, day="2026-03-11", **extra) -> subprocess.Popen:
    """`newsletter run` started as a user's shell would, against the test server on `port`."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "run", "--date", day],
        cwd=workdir,
        env={**os.environ, **smtp_env(env, port, **extra)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def real_run(db, env, port, day=AUG_8, **extra):
    settings = load_settings(smtp_env(env, port, **extra))
    return run_day(db, settings, day, today=TODAY, dry_run=False)


def states(db, day=AUG_8):
    with db.session() as session:
        rows = session.execute(
            select(Subscriber.email, Digest.state, Digest.attempts)
            .join(Digest, Digest.subscriber_id == Subscriber.id)
            .where(Digest.digest_date == day)
        )
        return {email: (state, attempts) for email, state, attempts in rows}


@pytest.mark.both_backends
def test_a_run_delivers_each_digest_once_and_a_second_run_sends_nothing(db, env, demo):
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
        again = real_run(db, env, server.port)
    counts = handler.counts()
    assert summary.sent == len(counts) >= 3 and set(counts.values()) == {1}
    assert (summary.deferred, summary.failed, summary.pending) == (0, 0, 0)
    assert summary.line().startswith(f"run 2026-08-08: {summary.sent} sent, 0 deferred, 0 failed")
    assert (again.sent, again.already_sent) == (0, summary.sent)
    assert handler.counts() == counts
    assert {state for state, _ in states(db).values()} == {SENT}
    with db.session() as session:
        stored_ids = set(session.scalars(select(Digest.message_id)))
    for address, raw in handler.received:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == address
        assert message["Message-ID"] in stored_ids
        assert message.get_content_type() == "multipart/alternative"


def test_a_dry_run_first_changes_nothing_for_the_real_run(db, env, settings, demo):
    dry = run_day(db, settings, AUG_8, today=TODAY, dry_run=True)
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        real = real_run(db, env, server.port)
    assert real.sent == dry.written == len(handler.counts())


def test_a_4xx_is_retried_with_back_off_until_accepted(db, env, demo):
    handler = FaultyHandler(
        rcpt_replies={"ada@example.org": ["451 4.3.0 Try again later"]},
        data_replies={"fei.li@example.com": ["452 4.3.1 Insufficient storage"]},
    )
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
    assert summary.deferred == 0
    assert states(db)["ada@example.org"] == (SENT, 2)
    assert states(db)["fei.li@example.com"] == (SENT, 2)
    assert handler.counts()["ada@example.org"] == 1


@pytest.mark.both_backends
def test_a_lasting_4xx_is_deferred_then_sent_by_the_next_run(db, env, demo):
    handler = FaultyHandler(rcpt_replies={"ada@example.org": ["451 4.7.1 Greylisted"] * 3})
    with SmtpServer(handler) as server:
        first = real_run(db, env, server.port)
        assert (first.deferred, first.pending, first.unreachable) == (1, 0, None)
        assert states(db)["ada@example.org"] == (DEFERRED, 3)
        second = real_run(db, env, server.port)
    assert (second.sent, second.deferred) == (1, 0)
    assert handler.counts()["ada@example.org"] == 1
    assert states(db)["ada@example.org"] == (SENT, 4)


@pytest.mark.both_backends
def test_a_5xx_is_a_permanent_failure_for_that_address_only(db, env, demo):
    handler = FaultyHandler(
        always_rcpt={"ada@example.org": "550 5.1.1 No such user"},
        data_replies={"fei.li@example.com": ["554 5.7.1 Rejected as spam"]},
    )
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
        again = real_run(db, env, server.port)
    assert summary.failed == 2 and summary.pending == 0 and summary.unreachable is None
    assert states(db)["ada@example.org"] == (FAILED, 1)  # not retried
    assert states(db)["fei.li@example.com"] == (FAILED, 1)
    assert (
        "ada@example.org" not in handler.counts() and "fei.li@example.com" not in handler.counts()
    )
    assert again.sent == 0 and again.failed == 2
    with db.session() as session:
        digest = session.scalar(select(Digest).where(Digest.state == FAILED).order_by(Digest.id))
        assert digest.smtp_reply.startswith(("550", "554"))


@pytest.mark.both_backends
def test_three_permanent_failures_on_different_days_suspend_the_subscriber(db, env, workdir, cli):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    write_list(workdir / "subscribers", "l.csv", "email,topics\ngone@example.org,neural networks\n")
    handler = FaultyHandler(always_rcpt={"gone@example.org": "550 5.1.1 Mailbox unavailable"})
    with SmtpServer(handler) as server:
        for day in (date(2026, 3, 11), date(2026, 3, 17)):
            assert real_run(db, env, server.port, day).failed == 1
        with db.session() as session:
            assert session.scalar(select(Subscriber.status)) == "active"
        assert real_run(db, env, server.port, AUG_8).failed == 1
        with db.session() as session:
            assert session.scalar(select(Subscriber.status)) == SUSPENDED
        later = real_run(db, env, server.port, date(2026, 8, 9))
    assert later.sent == later.failed == 0
    assert "suspended" in cli("subscribers").stdout


def test_a_connection_dropped_mid_data_is_retried_on_a_new_connection(db, env, demo):
    handler = FaultyHandler(drops={"ada@example.org": 1, "grace.hopper@example.org": 1})
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
    assert summary.deferred == 0 and summary.sent == len(handler.counts())
    assert handler.counts()["ada@example.org"] == handler.counts()["grace.hopper@example.org"] == 1


@pytest.mark.both_backends
def test_a_server_that_is_down_leaves_everything_pending(db, env, demo, cli):
    port = free_port()
    summary = real_run(db, env, port)
    assert summary.unreachable and "cannot connect to SMTP server 127.0.0.1" in summary.unreachable
    assert summary.sent == 0 and summary.pending >= 3
    assert {state for state, _ in states(db).values()} == {PENDING}
    result = cli("run", "--date", "2026-08-08", extra_env=smtp_env({}, port))
    assert result.code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: cannot connect to SMTP server 127.0.0.1")
    assert "left pending" in result.stderr
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        assert real_run(db, env, server.port).sent == summary.pending


def test_starttls_with_a_self_signed_certificate(db, env, demo, tmp_path):
    context = self_signed_context(tmp_path)
    handler = FaultyHandler()
    with SmtpServer(handler, tls_context=context, require_starttls=True) as server:
        checked = real_run(db, env, server.port, NEWSLETTER_SMTP_SECURITY="starttls")
        assert checked.sent == 0 and "certificate" in (checked.unreachable or "")
        unchecked = real_run(
            db,
            env,
            server.port,
            NEWSLETTER_SMTP_SECURITY="starttls",
            NEWSLETTER_SMTP_VERIFY="false",
        )
    assert unchecked.sent == checked.pending == len(handler.counts())


@pytest.mark.both_backends
def test_a_run_killed_mid_way_then_run_again_delivers_every_digest(db, env, workdir, cli):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    rows = "\n".join(f"reader{n:02d}@example.org,neural networks" for n in range(40))
    write_list(workdir / "subscribers", "l.csv", f"email,topics\n{rows}\n")
    handler = FaultyHandler(delay=0.05)
    with SmtpServer(handler) as server:
        process = start_run(workdir, env, server.port)
        deadline = time.monotonic() + 60
        while sum(handler.counts().values()) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(handler.counts().values()) >= 12, "the run never got to its 12th message"
        process.send_signal(signal.SIGKILL)
        process.wait()
        at_kill = sum(handler.counts().values())
        # What the kill left behind, as stored: digests not recorded as sent.
        unsent = [d for d, (state, _) in states(db, date(2026, 3, 11)).items() if state != SENT]
        assert unsent, "the run had finished before it was killed: nothing to resume"
        resumed = cli("run", "--date", "2026-03-11", extra_env=smtp_env({}, server.port))
        assert resumed.code == 0, resumed.stderr
    counts = handler.counts()
    assert set(counts) == {f"reader{n:02d}@example.org" for n in range(40)}
    duplicates = sum(counts.values()) - 40
    print(f"kill test: {at_kill} at the server at SIGKILL, {duplicates} duplicate(s) after resume")
    assert duplicates <= 2  # at most the messages in flight on the 2 connections at the kill
    assert {state for state, _ in states(db, date(2026, 3, 11)).values()} == {SENT}


def test_login_over_starttls_and_a_refused_login(db, env, demo, tmp_path, cli):
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"digest" and auth_data.password == b"s3cret-pass"
        return AuthResult(success=ok, handled=False)

    handler = FaultyHandler()
    options = dict(
        tls_context=self_signed_context(tmp_path),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    login = dict(
        NEWSLETTER_SMTP_SECURITY="starttls",
        NEWSLETTER_SMTP_VERIFY="false",
        NEWSLETTER_SMTP_USERNAME="digest",
    )
    with SmtpServer(handler, **options) as server:
        refused = cli(
            "run",
            "--date",
            "2026-08-08",
            extra_env=smtp_env({}, server.port, NEWSLETTER_SMTP_PASSWORD="wrong-password", **login),
        )
        assert refused.code == 1 and "login" in refused.stderr and "refused" in refused.stderr
        assert "wrong-password" not in refused.stderr + refused.stdout
        summary = real_run(db, env, server.port, NEWSLETTER_SMTP_PASSWORD="s3cret-pass", **login)
    assert summary.sent == len(handler.counts()) >= 3


def test_implicit_tls(db, env, demo, tmp_path):
    handler = FaultyHandler()
    with SmtpServer(handler, ssl_context=self_signed_context(tmp_path)) as server:
        summary = real_run(
            db, env, server.port, NEWSLETTER_SMTP_SECURITY="tls", NEWSLETTER_SMTP_VERIFY="false"
        )
    assert summary.sent == len(handler.counts()) >= 3


def test_messages_arrive_byte_for_byte_and_the_library_is_left_as_it_was():
    """Lines that begin with a period, an SMTPUTF8 recipient, the SIZE we declare: what the
    server stores is exactly what was handed over; and importing newsletter changes nothing in
    aiosmtplib (its line-end and period handling are its own)."""
    import asyncio

    import aiosmtplib.protocol
    import aiosmtplib.smtp

    from newsletter.delivery.smtp import Envelope, SmtpSender
    from newsletter.digests.daily import smtp_options

    assert aiosmtplib.protocol.normalize_message_line_endings.__module__ == "aiosmtplib.protocol"
    assert aiosmtplib.smtp.normalize_message_line_endings.__module__ == "aiosmtplib.protocol"
    assert aiosmtplib.protocol.PERIOD_REGEX.pattern == rb"(?m)^\."
    assert aiosmtplib.smtp.parse_address.__module__ == "aiosmtplib.email"
    messages = {
        "ada@example.org": b"Subject: x\r\n\r\n.leading\r\n.. two\r\nmid.dle\r\n.\r\nend\r\n",
        "jörg@example.org": "Subject: ü\r\n\r\n.ünï\r\n".encode(),
    }
    handler = FaultyHandler()
    with SmtpServer(handler, enable_SMTPUTF8=True) as server:
        settings = load_settings(
            {"NEWSLETTER_SMTP_HOST": "127.0.0.1", "NEWSLETTER_SMTP_PORT": str(server.port)}
            | {"NEWSLETTER_SMTP_SECURITY": "none", "NEWSLETTER_SECRET_KEY": SECRET}
        )
        sender = SmtpSender(smtp_options(settings))
        envelopes = [
            Envelope(n, "papers@example.org", address, message)
            for n, (address, message) in enumerate(messages.items())
        ]

        async def each():
            for envelope in envelopes:
                yield envelope

        outcomes = {}
        report = asyncio.run(sender.send_all(each(), lambda e, o: outcomes.update({e.key: o})))
    assert report.unreachable is None and [o.kind for o in outcomes.values()] == ["sent"] * 2
    assert sorted(handler.received) == sorted(messages.items())
    sizes = [option for options in handler.mail_options for option in options if "SIZE" in option]
    assert sorted(sizes) == sorted(f"SIZE={len(message)}" for message in messages.values())
    assert ["SMTPUTF8"] in [[o for o in opts if o == "SMTPUTF8"] for opts in handler.mail_options]


# What DATA sends: `newsletter.smtpdata`'s preparation against aiosmtplib's own, on the same bytes.
DATA_PIECES = [b"\r\n", b"\r", b"\n", b".", b"..", b"x", b"From ", b"=\r\n", b"\xc3\xa9"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(DATA_PIECES), st.binary(max_size=8)), max_size=30).map(
        b"".join
    )
)
def test_the_fast_data_payload_is_the_librarys_on_the_same_bytes(message):
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from newsletter.delivery.smtpdata import payload

    library = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
    ours = payload(message)
    assert ours is None or ours == library
    crlf = message.replace(b"\r", b"").replace(b"\n", b"\r\n")  # CRLF throughout
    assert payload(crlf) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(crlf)) + b".\r\n"


def test_the_fast_data_is_switched_on_per_connection_and_delivers_byte_for_byte():
    import asyncio

    import aiosmtplib
    from aiosmtplib.protocol import SMTPProtocol

    from newsletter.delivery import smtpdata

    message = b"Subject: x\r\n\r\n.leading\r\n..two\r\nend"  # no final line end
    handler = FaultyHandler()

    async def send(switch: bool) -> tuple[bool, bool]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False)
        await client.connect()
        switched = smtpdata.switch_on(client) if switch else False
        own = "execute_data_command" in vars(client.protocol)
        await client.sendmail("p@example.org", ["ada@example.org"], message)
        await client.quit()
        return switched, own

    with SmtpServer(handler) as server:
        assert asyncio.run(send(True)) == (True, True)
        assert asyncio.run(send(False)) == (False, False)  # other connections: the library's
    assert SMTPProtocol.execute_data_command.__module__ == "aiosmtplib.protocol"
    assert [content for _, content in handler.received] == [message + b"\r\n"] * 2


# --- Faults of the sender are not the readers' ---------------------------------------------------


def all_pending_and_nobody_charged(db):
    assert {state for state, _ in states(db).values()} == {PENDING}
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}
        assert not session.scalars(
            select(Digest.last_error).where(Digest.last_error.is_not(None))
        ).all()


@pytest.mark.parametrize(
    "reply",
    [
        "553 5.7.1 <papers@digest.example>: Sender address rejected",
        "530 5.7.0 Authentication required",
    ],
)
def test_a_refused_sender_stops_the_run_and_charges_no_reader(db, env, demo, cli, reply):
    handler = FaultyHandler(mail_reply=reply)
    with SmtpServer(handler) as server:
        result = cli("run", "--date", "2026-08-08", extra_env=smtp_env({}, server.port))
        assert result.code == 1 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "refused our sender" in line and reply.split()[0] in line and "left pending" in line
        all_pending_and_nobody_charged(db)
        for _ in range(3):  # three such days used to suspend the whole list
            assert real_run(db, env, server.port).sent == 0
        all_pending_and_nobody_charged(db)
        handler.mail_reply = None
        good = real_run(db, env, server.port)
    assert good.sent == len(handler.counts()) >= 3 and good.failed == 0


def test_a_refused_ehlo_name_stops_the_run_and_charges_no_reader(db, env, demo):
    handler = FaultyHandler(ehlo_reply="504 5.5.2 <localhost>: Helo command rejected: need FQDN")
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port, NEWSLETTER_SMTP_HELO="localhost")
        assert summary.sent == summary.failed == 0 and summary.pending >= 3
        assert (
            "refused our greeting" in summary.unreachable
            and "NEWSLETTER_SMTP_HELO" in summary.unreachable
        )
        all_pending_and_nobody_charged(db)
        assert set(handler.greeted) == {"localhost"}
        handler.ehlo_reply = None
        good = real_run(db, env, server.port, NEWSLETTER_SMTP_HELO="mail.digest.example")
    assert good.sent == summary.pending
    assert handler.greeted[-1] == "mail.digest.example"


def test_the_default_ehlo_name_is_fully_qualified(db, env, demo, monkeypatch):
    import socket

    handler = FaultyHandler()
    monkeypatch.setattr(socket, "getfqdn", lambda *a: "buildbox")  # no dot: not a usable name
    with SmtpServer(handler) as server:
        assert real_run(db, env, server.port).sent >= 3
    assert set(handler.greeted) == {"digest.example"}  # the domain of NEWSLETTER_FROM
    monkeypatch.setattr(socket, "getfqdn", lambda *a: "mx1.lab.example")
    with SmtpServer(FaultyHandler()) as server:
        run_handler = server.handler
        real_run(db, env, server.port)
    assert set(run_handler.greeted) <= {"mx1.lab.example"}


def test_552_after_data_is_temporary(db, env, demo):
    handler = FaultyHandler(data_replies={"ada@example.org": ["552 5.2.2 Mailbox full"] * 3})
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
    assert summary.failed == 0 and summary.deferred == 1
    assert states(db)["ada@example.org"][0] == DEFERRED


def test_a_certificate_failure_is_said_once_and_not_retried(db, env, demo, tmp_path):
    handler = FaultyHandler()
    context = self_signed_context(tmp_path)
    with SmtpServer(handler, tls_context=context, require_starttls=True) as server:
        summary = real_run(
            db, env, server.port, NEWSLETTER_SMTP_SECURITY="starttls", NEWSLETTER_SMTP_ATTEMPTS="3"
        )
    assert "certificate" in summary.unreachable and "NEWSLETTER_SMTP_VERIFY" in summary.unreachable
    assert len(handler.greeted) == 1  # one connection, not connections x attempts
    all_pending_and_nobody_charged(db)


def idn_list(workdir):
    write_list(
        workdir / "subscribers",
        "l.csv",
        "email,topics\njörg@example.org,neural networks\nplain@example.org,neural networks\n"
        "other@example.org,neural networks\n",
    )
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")


def test_an_internationalized_address_goes_out_as_smtputf8(db, env, workdir):
    idn_list(workdir)
    handler = FaultyHandler()
    with SmtpServer(handler, enable_SMTPUTF8=True) as server:
        summary = real_run(db, env, server.port, date(2026, 3, 11))
    assert summary.sent == 3 and set(handler.counts()) == {
        "jörg@example.org",
        "plain@example.org",
        "other@example.org",
    }
    assert any("SMTPUTF8" in options for options in handler.mail_options)
    raw = dict(handler.received)["jörg@example.org"]
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "jörg@example.org"


def test_without_smtputf8_only_the_internationalized_digest_waits(db, env, workdir):
    idn_list(workdir)
    with (workdir / "subscribers" / "l.csv").open("a") as listed:
        listed.write("Reader@Bücher.example,neural networks\n")  # only the domain: IDNA will do
    handler = FaultyHandler()
    with SmtpServer(handler, enable_SMTPUTF8=False) as server:
        summary = real_run(db, env, server.port, date(2026, 3, 11))
    assert (summary.sent, summary.deferred, summary.failed) == (3, 1, 0)
    assert set(handler.counts()) == {
        "plain@example.org",
        "other@example.org",
        "reader@xn--bcher-kva.example",
    }
    raw = dict(handler.received)["reader@xn--bcher-kva.example"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert raw.isascii() and message["To"].addresses[0].addr_spec == "reader@xn--bcher-kva.example"
    link = message.get_body(("plain",)).get_content().split("/unsubscribe/")[1].split()[0]
    settings = load_settings(smtp_env(env, server.port))
    assert reader_of_link(db, settings.signing_key, link) == "reader@bücher.example"
    with db.session() as session:
        digest = session.scalar(select(Digest).where(Digest.state == DEFERRED))
        assert "SMTPUTF8" in digest.last_error and digest.subscriber.status == "active"


def test_a_password_is_never_sent_in_clear_to_another_host(cli, demo):
    extra = smtp_env({}, 25, NEWSLETTER_SMTP_USERNAME="digest", NEWSLETTER_SMTP_PASSWORD="pw")
    result = cli(
        "run",
        "--date",
        "2026-08-08",
        extra_env={**extra, "NEWSLETTER_SMTP_HOST": "smtp.example.org"},
    )
    assert result.code == 1 and "in clear" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (None, "not set"),
        ("short-key", "too short"),
        ("papers-digest-DEVELOPMENT-KEY-not-for-production", "development key"),
    ],
)
def test_a_real_run_needs_a_real_secret_key(cli, demo, key, said):
    extra = smtp_env({}, free_port())
    extra.pop("NEWSLETTER_SECRET_KEY")
    if key:
        extra["NEWSLETTER_SECRET_KEY"] = key
    result = cli("run", "--date", "2026-08-08", extra_env=extra)
    assert result.code == 1 and said in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "reply",
    [
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        "553 5.7.1 <papers@digest.example>: Sender address rejected: not owned by user",
        "554 5.7.1 <ada@example.org>: Relay access denied",
        "450 4.7.1 Client host rejected: cannot find your hostname, [127.0.0.1]",
    ],
)
def test_a_refusal_of_us_given_at_rcpt_charges_no_reader(db, env, demo, reply):
    # Postfix delays its HELO, sender and client restrictions to RCPT (smtpd_delay_reject=yes).
    handler = FaultyHandler(
        always_rcpt={a: reply for a in ("ada@example.org", "grace.hopper@example.org")}
    )
    handler.always_rcpt.update({a: reply for a in ("alan@example.org", "fei.li@example.com")})
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port, NEWSLETTER_SMTP_CONNECTIONS="1")
    assert summary.failed == 0 and summary.unreachable and reply[:3] in summary.unreachable
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}
        assert not session.scalars(select(Digest).where(Digest.state == FAILED)).all()


# --- Against a real Postfix -----------------------------------------------------------------------


@pytest.fixture
def postfix():
    from .postfix import Postfix, available

    reason = available()
    if reason:
        pytest.skip(reason)
    postfix = Postfix(
        free_port(),
        smtpd_helo_required="yes",
        smtpd_helo_restrictions="reject_non_fqdn_helo_hostname",
    )
    try:
        server = postfix.__enter__()
    except RuntimeError as error:  # the machine's limits, not our code: say so and skip
        postfix.__exit__()
        pytest.skip(f"Postfix would not start on this machine: {error}")
    yield server
    postfix.__exit__()


def test_a_postfix_that_wants_a_qualified_helo_name(db, env, workdir, postfix, monkeypatch):
    import socket

    idn_list(workdir)
    day = date(2026, 3, 11)
    refused = real_run(db, env, postfix.port, day, NEWSLETTER_SMTP_HELO="localhost")
    # Postfix answers the HELO restriction at RCPT (smtpd_delay_reject): still ours, not theirs.
    assert refused.failed == 0 and "Helo command rejected" in refused.unreachable
    assert {state for state, _ in states(db, day).values()} == {PENDING}
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}
    monkeypatch.setattr(socket, "getfqdn", lambda *a: "localhost")  # a machine with no FQDN
    good = real_run(db, env, postfix.port, day)
    assert (good.sent, good.failed, good.deferred) == (3, 0, 0)  # jörg@ too, over SMTPUTF8
    assert postfix.wait_for_log("Helo command rejected", "status=sent", count=3)


def test_no_setting_shows_the_password():
    from newsletter.digests.daily import smtp_options

    settings = load_settings(
        {"NEWSLETTER_SMTP_PASSWORD": "hunter2-secret", "NEWSLETTER_SECRET_KEY": SECRET}
    )
    assert "hunter2-secret" not in repr(settings) + repr(smtp_options(settings))
    assert SECRET not in repr(settings)


def test_readers_refused_alike_on_policy_before_any_acceptance_are_not_charged(db, env, demo):
    # Worded like none of the known refusals of a sender, but the same for everyone.
    reply = "550 5.7.1 Message rejected: {} is not permitted by local policy"
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        handler.always_rcpt.update(
            {a: reply.format(f"<{a}>") for a in addresses_due(db, env, server.port)}
        )
        summary = real_run(db, env, server.port)
    assert summary.failed == 0 and summary.pending >= 3
    assert "refused the first 3 readers alike" in (summary.unreachable or "")
    with db.session() as session:
        assert not session.scalars(select(Digest).where(Digest.state == FAILED)).all()
        assert set(session.scalars(select(Subscriber.status))) == {"active"}


def addresses_due(db, env, port):
    """The addresses a run of Aug 8 sends to (composed by a dry-run, which stores nothing)."""
    settings = load_settings(smtp_env(env, port))
    run_day(db, settings, AUG_8, today=TODAY, dry_run=True)
    outbox = settings.outbox_dir / AUG_8.isoformat()
    return [path.stem for path in outbox.glob("*.eml")]


def test_a_policy_refusal_of_one_reader_among_accepted_ones_is_theirs(db, env, demo):
    handler = FaultyHandler(always_rcpt={"ada@example.org": "550 5.7.1 <ada@example.org>: spam"})
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port, NEWSLETTER_SMTP_CONNECTIONS="1")
    assert summary.failed == 1 and summary.unreachable is None
    assert states(db)["ada@example.org"][0] == FAILED


def test_one_bad_row_refuses_the_lists_but_not_the_days_mail(cli, workdir, demo):
    """The lists stay all or nothing (nothing of a list with a bad row is stored), but the run
    goes on with the readers of the last good lists, names the row, and fails after delivering
    (so cron mails the operator)."""
    assert cli("subscribers").code == 0  # the last good lists
    listed = (workdir / "subscribers" / "newsletter-signups.csv").read_text(encoding="utf-8")
    (workdir / "subscribers" / "newsletter-signups.csv").write_text(
        listed + "mallory@@example.org,Mallory,quantization,,,\n", encoding="utf-8"
    )
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        result = cli("run", "--date", "2026-03-11", extra_env=smtp_env({}, server.port))
    assert result.code == 1 and "Traceback" not in result.stderr
    assert len(handler.received) >= 3  # everyone of the last good lists got their digest
    assert "mallory" not in " ".join(str(m) for m in handler.received)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    (error,) = errors
    assert error.startswith("error: the subscriber lists were refused: ")
    assert "newsletter-signups.csv, line" in error and "mallory@@example.org" in error
    assert "sent" in result.stdout
    shown = cli("status", "--json")
    assert shown.code == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["runs"][0]["counts"]["bad_rows"] == 1
    listing = cli("subscribers", "--json")  # the lists are still refused, and say why
    assert listing.code == 1 and "mallory@@example.org" in listing.stderr


def test_a_message_refused_for_its_size_is_its_own_problem(db, env, demo):
    """552 5.3.4 at MAIL FROM is about that message: it waits (nobody is charged, the server is
    not taken for refusing us), and the other readers' digests go out."""
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        sizes = sorted(len(m) for m in dry_messages(db, env, server.port))
        handler.size_limit = sizes[len(sizes) // 2]  # the larger half is too large
        summary = real_run(db, env, server.port)
    assert summary.unreachable is None and summary.failed == 0
    assert summary.sent == sum(size <= handler.size_limit for size in sizes) > 0
    assert summary.deferred == len(sizes) - summary.sent > 0
    assert {state for state, _ in states(db).values()} == {SENT, DEFERRED}
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}


def dry_messages(db, env, port) -> list[bytes]:
    settings = load_settings(smtp_env(env, port))
    run_day(db, settings, AUG_8, today=TODAY, dry_run=True)
    return [p.read_bytes() for p in (settings.outbox_dir / AUG_8.isoformat()).glob("*.eml")]


@pytest.mark.parametrize(
    "refusal",
    [
        # A relay refusing our IP with a fresh id in every reply.
        "550 5.7.708 Access denied, traffic not accepted from this IP. [AM1PEPF0000A1B{n}.eurprd]",
        "550 5.7.1 Access denied",
    ],
)
def test_a_policy_refusal_of_every_reader_is_ours_whatever_its_ids(db, env, demo, refusal):
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        due = addresses_due(db, env, server.port)
        handler.always_rcpt.update({a: refusal.format(n=n) for n, a in enumerate(due)})
        summary = real_run(db, env, server.port)
    assert summary.failed == 0 and summary.sent == 0 and summary.pending == len(due)
    assert "accepted none, which is a refusal of us" in (summary.unreachable or "")
    assert {state for state, _ in states(db).values()} == {PENDING}
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}


def test_two_readers_refused_on_policy_are_not_charged(db, env, workdir):
    write_list(
        workdir / "subscribers",
        "two.csv",
        "email,topics\nada@example.org,neural networks\nbob@example.org,neural networks\n",
    )
    handler = FaultyHandler(
        always_rcpt={a: "550 5.7.1 Access denied" for a in ("ada@example.org", "bob@example.org")}
    )
    shutil.copy(next(SEEDS.glob("000_*.txt")), workdir / "seeds")
    with SmtpServer(handler) as server:
        summary = real_run(db, env, server.port)
    assert summary.failed == 0 and summary.pending == 2 and summary.unreachable
    assert {state for state, _ in states(db).values()} == {PENDING}


def test_a_content_filter_refusing_every_message_after_data_charges_nobody(db, env, demo):
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        due = addresses_due(db, env, server.port)
        handler.data_replies.update(
            {
                a: [f"554 5.7.1 Message content rejected, id=4Xk{n}q{n * 7}"] * 9
                for n, a in enumerate(due)
            }
        )
        summary = real_run(db, env, server.port)
    assert summary.failed == 0 and summary.pending == len(due)
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"active"}


def test_a_message_over_the_size_the_server_advertises_is_never_sent(db, env, demo):
    handler = FaultyHandler()
    with SmtpServer(handler, data_size_limit=10_000) as server:  # EHLO: SIZE 10000
        summary = real_run(db, env, server.port)
    assert summary.sent == 0 and summary.failed == 0 and summary.unreachable is None
    assert summary.deferred >= 3 and handler.mail_options == []  # not one MAIL FROM
    with db.session() as session:
        errors = set(session.scalars(select(Digest.last_error)))
    assert all("more than the 10,000 it takes (SIZE)" in e for e in errors)
