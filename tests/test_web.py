"""One-click unsubscribe over real HTTP against `newsletter serve`, tampered tokens, re-subscribing;
and DKIM signing verified with a key made by the test."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, timedelta

import dkim
import pytest
from sqlalchemy import select

from newsletter.config import load_settings
from newsletter.digests.daily import run_day
from newsletter.mail.tokens import (
    legacy_unsubscribe_token,
    read_reader_token,
    reader_token,
    unsubscribe_token,
)
from newsletter.store.db import Subscriber

from .conftest import TODAY, parse_eml
from .smtp_server import free_port

SECRET = "web-test-secret-0123456789-0123456789-abc"


@pytest.fixture
def server(cli, env, workdir, demo):
    """`newsletter serve`'s server, run in a thread of this process."""
    from newsletter.web import server as unsubscribe_server

    assert cli("subscribers", extra_env={"NEWSLETTER_SECRET_KEY": SECRET}).code == 0
    port = free_port()
    served = unsubscribe_server(
        load_settings({**env, "NEWSLETTER_SECRET_KEY": SECRET}), "127.0.0.1", port
    )
    served.config.log_level = "warning"
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the unsubscribe server did not come up on port {port}")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "the unsubscribe server did not stop"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(method, url, body=None):
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def token_for(db, address, key=SECRET, day=date(2026, 8, 8)):
    """The opaque unsubscribe token of that reader's digest of `day`."""
    with db.session() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
    return unsubscribe_token(key, subscriber_id, day)


def status_of(db, address):
    with db.session() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email == address))


def test_the_link_from_a_digest_unsubscribes_with_one_click(server, db, env, demo):
    settings = load_settings(
        {**env, "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": server}
    )
    run_day(db, settings, date(2026, 8, 8), today=TODAY, dry_run=True)
    message = parse_eml(demo / "outbox" / "2026-08-08" / "ada@example.org.eml")
    link = str(message["List-Unsubscribe"]).split(",")[0].strip(" <>")
    assert link.startswith(server + "/unsubscribe/")

    code, page = http("GET", link)
    assert code == 200 and "ada@example.org" in page and "<button" in page
    assert status_of(db, "ada@example.org") == "active"  # a GET (a link scanner) changes nothing

    code, page = http("POST", link, "List-Unsubscribe=One-Click")
    assert code == 200 and "no more digests" in page
    assert status_of(db, "ada@example.org") == "unsubscribed"
    assert http("POST", link, "List-Unsubscribe=One-Click")[0] == 200  # idempotent

    run_day(db, settings, date(2026, 8, 8), today=TODAY, dry_run=True)  # list still names ada
    assert status_of(db, "ada@example.org") == "unsubscribed"


def test_tampered_or_foreign_tokens_get_400_and_change_nothing(server, db):
    good = token_for(db, "ada@example.org")
    reader, day, signature = good.split("-")
    alan = token_for(db, "alan@example.org").split("-")[0]
    subscriber_id, on = read_reader_token(SECRET, "unsubscribe", good)
    forged = [
        f"{reader}-{day}-{signature[:-2]}aa",  # altered signature
        f"{alan}-{day}-{signature}",  # ada's signature on alan's id
        f"{reader}-{int(day, 36) + 1:x}-{signature}",  # another day
        token_for(db, "ada@example.org", key="a guessed key-0123456789-0123456789"),
        reader_token(SECRET, "verp", subscriber_id, on),  # ours, for another purpose
        legacy_unsubscribe_token("a guessed key", "ada@example.org"),
        "not-a-token",
        "",
    ]
    for token in forged:
        for method in ("GET", "POST"):
            code, _ = http(
                method,
                f"{server}/unsubscribe/{urllib.parse.quote(token)}",
                "List-Unsubscribe=One-Click" if method == "POST" else None,
            )
            assert code in (400, 404, 405), (token, method, code)
    assert status_of(db, "ada@example.org") == status_of(db, "alan@example.org") == "active"


def test_an_old_link_with_the_address_works_until_its_digests_are_older_than_the_window(server, db):
    """Digests made before the opaque tokens carry the address in their links; those keep
    working for the window after the store began making opaque ones, then get 400."""
    from sqlalchemy import update

    from newsletter.store.db import TokenCutover

    old = legacy_unsubscribe_token(SECRET, "ada@example.org")
    code, page = http("GET", f"{server}/unsubscribe/{old}")
    assert code == 200 and "ada@example.org" in page  # the store made opaque tokens from today
    with db.session() as session:  # ... no: eight days ago
        session.execute(update(TokenCutover).values(opaque_since=date.today() - timedelta(8)))
    for method in ("GET", "POST"):
        body = "List-Unsubscribe=One-Click" if method == "POST" else None
        assert http(method, f"{server}/unsubscribe/{old}", body)[0] == 400
    assert status_of(db, "ada@example.org") == "active"
    assert http("GET", f"{server}/unsubscribe/{token_for(db, 'ada@example.org')}")[0] == 200


def test_resubscribing_takes_an_explicit_request(cli, demo):
    assert cli("subscribers").code == 0
    assert cli("unsubscribe", "alan@example.org").code == 0
    assert cli("subscribers").code == 0  # a sync does not bring alan back
    assert "unsubscribed" in cli("subscribers").stdout
    again = cli("resubscribe", "alan@example.org")
    assert again.code == 0 and "subscribed again" in again.stdout
    assert cli("resubscribe", "alan@example.org").code == 1  # active already: one-line error


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(db, env, demo, tmp_path):
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings = load_settings(
        {
            **env,
            "NEWSLETTER_DKIM_SELECTOR": "digest",
            "NEWSLETTER_DKIM_DOMAIN": "digest.example",
            "NEWSLETTER_DKIM_KEY_FILE": str(key),
            "NEWSLETTER_BOUNCE_ADDRESS": "bounces@digest.example",
        }
    )
    run_day(db, settings, date(2026, 8, 8), today=TODAY, dry_run=True)
    raw = (demo / "outbox" / "2026-08-08" / "ada@example.org.eml").read_bytes()
    # As the reader's server stores it: the VERP envelope sender on top, then the signature.
    returned, _, rest = raw.partition(b"\r\n")
    assert returned.startswith(b"Return-Path: <bounces+") and rest.startswith(b"DKIM-Signature:")

    def dns(name, timeout=5):
        assert name == b"digest._domainkey.digest.example."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    header = parse_eml(demo / "outbox" / "2026-08-08" / "ada@example.org.eml")["DKIM-Signature"]
    signed = {h.strip().lower() for h in str(header).split("h=")[1].split(";")[0].split(":")}
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= signed
    at = raw.index(b"\r\nSubject: ") + len(b"\r\nSubject: ")  # (plain or RFC 2047 encoded)
    edited = raw[:at] + (b"X" if raw[at : at + 1] != b"X" else b"Y") + raw[at + 1 :]
    assert not dkim.verify(edited, dnsfunc=dns)


def http_full(method, url, body=None):
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_odd_requests_get_clear_answers_and_every_answer_is_protected(server, db):
    good = token_for(db, "ada@example.org")
    for method, token, expected in [
        ("GET", urllib.parse.quote("é.ü"), 400),  # non-ASCII token: not a 500
        ("POST", urllib.parse.quote(good + "é"), 400),
        ("GET", good, 200),
        ("PUT", good, 405),
    ]:
        code, headers, _ = http_full(method, f"{server}/unsubscribe/{token}", "")
        assert code == expected, (method, token, code)
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["content-security-policy"] == "frame-ancestors 'none'"
        if code == 405:
            assert {m.strip() for m in headers["allow"].split(",")} >= {"GET", "POST"}


def hold_write_lock(db_path, seconds):
    """Another program writing to the database: holds its write lock for `seconds`."""
    import sqlite3
    import threading

    connection = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("UPDATE subscribers SET name = name")
    released = threading.Event()

    def release():
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()
        released.set()

    threading.Thread(target=release, daemon=True).start()
    return released


def test_a_busy_database_delays_an_unsubscribe_but_never_loses_it(server, db, workdir):
    from concurrent.futures import ThreadPoolExecutor

    link = f"{server}/unsubscribe/{token_for(db, 'ada@example.org')}"
    released = hold_write_lock(workdir / "newsletter.db", 3)
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(http_full, "POST", link, "List-Unsubscribe=One-Click")
        time.sleep(0.5)  # the POST is waiting for the lock now
        started = time.monotonic()
        assert http_full("GET", f"{server}/")[0] == 200  # the server answers meanwhile
        assert time.monotonic() - started < 1.5 and not released.is_set()
        code, _, page = posted.result(timeout=30)
    assert released.is_set() and code == 200 and "no more digests" in page
    assert status_of(db, "ada@example.org") == "unsubscribed"


def test_a_database_locked_for_too_long_answers_503_with_retry_after(cli, env, demo, workdir):
    from starlette.testclient import TestClient

    from newsletter.store.db import Database
    from newsletter.web import create_app

    assert cli("subscribers").code == 0
    settings = load_settings({**env, "NEWSLETTER_SECRET_KEY": SECRET})
    db = Database(settings.database_url, busy_timeout=0.1)
    client = TestClient(create_app(db, settings, patience=0.5))
    link = f"/unsubscribe/{token_for(db, 'alan@example.org')}"
    released = hold_write_lock(workdir / "newsletter.db", 2)
    answer = client.post(link, content="List-Unsubscribe=One-Click")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    released.wait(10)
    assert client.post(link, content="List-Unsubscribe=One-Click").status_code == 200
    assert status_of(db, "alan@example.org") == "unsubscribed"
    db.close()


@pytest.mark.parametrize("key", [None, "short", "papers-digest-DEVELOPMENT-KEY-not-for-production"])
def test_serve_refuses_to_start_without_a_real_key(cli, key):
    result = cli(
        "serve", "--port", str(free_port()), extra_env={"NEWSLETTER_SECRET_KEY": key or ""}
    )
    assert result.code == 1 and "NEWSLETTER_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
