"""A dry-run of the seeds: the `.eml` files, read back with the standard `email` package."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.digests.daily import run_day
from newsletter.mail.tokens import read_reader_token, reader_token
from newsletter.store.db import Digest
from newsletter.store.papers import load_papers
from newsletter.store.subscribers import subscriber_records

from .conftest import (
    ROOT,
    SEEDS,
    TODAY,
    abstract_about,
    make_dump,
    parse_eml,
    reader_of_link,
    write_list,
)

AUG_8 = date(2026, 8, 8)


def dry_run(db, settings, day=AUG_8):
    return run_day(db, settings, day, today=TODAY, dry_run=True)


def test_dry_run_writes_one_eml_per_digest(db, demo, workdir, settings):
    summary = dry_run(db, settings)
    files = sorted((workdir / "outbox" / "2026-08-08").glob("*.eml"))
    assert summary.written == len(files) >= 3
    assert summary.not_due == 2  # the weekly subscribers: Aug 8, 2026 is a Saturday
    assert summary.written + summary.skipped + summary.not_due == 8
    assert summary.line().startswith(f"dry-run 2026-08-08: {len(files)} digest(s) written")
    for path in files:
        message = parse_eml(path)
        assert message.get_content_type() == "multipart/alternative"
        text, html = (part for part in message.iter_parts())
        assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
        assert text.get_content_charset() == html.get_content_charset() == "utf-8"
        assert message["To"].addresses[0].addr_spec == path.stem
        assert message["Subject"].startswith("Papers for Aug 8, 2026: ")
        for header in ("From", "Date", "Message-ID", "MIME-Version", "List-Id"):
            assert message[header], header
        assert message["Message-ID"].endswith("@digest.example>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_each_paper_card_carries_title_reason_excerpt_signal_and_links(db, demo, workdir, settings):
    dry_run(db, settings)
    message = parse_eml(workdir / "outbox" / "2026-08-08" / "grace.hopper@example.org.eml")
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    top = message["Subject"].removeprefix("Papers for Aug 8, 2026: ").split(" (+")[0]
    assert top.rstrip("…")[:40] in html and top.rstrip("…")[:30] in text
    for fragment in (
        "Why: ",
        "Trending: #",
        "arxiv.org/search/?query=",
        "huggingface.co/papers?q=",
        "Unsubscribe",
    ):
        assert fragment in html and fragment in text.replace("Unsubscribe:", "Unsubscribe")
    # why each paper is there: a topic of hers and what matched, words or meaning
    reasons = re.findall(r"Why: (.+)", text)
    assert reasons
    for line in reasons:
        for reason in line.split("; "):
            assert re.fullmatch(r".+ \((“[^”]+”(, “[^”]+”)*|close in meaning( to “.+”)?)\)", reason)
    assert 'style="' in html  # CSS inlined for clients that strip <style>
    assert "@media" in html  # media queries kept for those that do not
    assert "display:none" in html.replace(" ", "")  # the preheader


def test_unsubscribe_links_carry_an_opaque_token_for_that_reader_only(db, demo, workdir, settings):
    dry_run(db, settings)
    message = parse_eml(workdir / "outbox" / "2026-08-08" / "ada@example.org.eml")
    https, mailto = (part.strip(" <>") for part in str(message["List-Unsubscribe"]).split(","))
    assert https.startswith("https://digest.example/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@digest.example?subject=unsubscribe")
    token = https.rsplit("/", 1)[1]
    assert reader_of_link(db, settings.signing_key, token) == "ada@example.org"
    assert "ada" not in token and "YWRh" not in token  # no address in it, in any encoding
    edited = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert reader_of_link(db, settings.signing_key, edited) is None
    assert reader_of_link(db, "another key", token) is None
    # a token of the same reader and day made for another purpose is no unsubscribe token
    subscriber_id, day = read_reader_token(settings.signing_key, "unsubscribe", token)
    verp = reader_token(settings.signing_key, "verp", subscriber_id, day)
    assert reader_of_link(db, settings.signing_key, verp) is None
    assert https in message.get_body(("html",)).get_content()


def test_dry_run_twice_gives_the_same_files_and_stores_no_digest(db, demo, workdir, settings):
    dry_run(db, settings)
    first = {p.name: p.read_bytes() for p in (workdir / "outbox" / "2026-08-08").iterdir()}
    dry_run(db, settings)
    second = {p.name: p.read_bytes() for p in (workdir / "outbox" / "2026-08-08").iterdir()}
    assert first == second
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Digest)) == 0


def test_titles_are_escaped_and_names_cannot_inject_headers(db, settings, workdir):
    title = '<script>alert("x")</script> Graph Neural Networks & <b>Friends</b>'
    (workdir / "seeds" / "d.txt").write_text(
        make_dump("Mar 11", [(title, abstract_about("graph neural networks"))])
    )
    write_list(
        workdir / "subscribers",
        "l.yaml",
        "subscribers:\n  - email: eve@example.org\n"
        '    name: "Eve <evil@example.org>\\r\\nBcc: victim@example.org\\nX-Injected: yes"\n'
        "    topics: [graph neural networks]\n",
    )
    summary = run_day(db, settings, date(2026, 3, 11), today=TODAY, dry_run=True)
    assert summary.written == 1
    raw = (workdir / "outbox" / "2026-03-11" / "eve@example.org.eml").read_bytes()
    message = parse_eml(workdir / "outbox" / "2026-03-11" / "eve@example.org.eml")
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert b"\nBcc:" not in raw and b"\nX-Injected" not in raw
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.org"]
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;Friends&lt;/b&gt;" in html and "&amp; " in html
    assert title in message.get_body(("plain",)).get_content()


def test_addresses_with_a_slash_stay_inside_the_outbox(db, settings, workdir):
    (workdir / "seeds" / "d.txt").write_text(
        make_dump("Mar 11", [("Graph Neural Networks", abstract_about("graph neural networks"))])
    )
    write_list(
        workdir / "subscribers",
        "l.csv",
        "email,topics\nodd/name@example.org,graph neural networks\n",
    )
    run_day(db, settings, date(2026, 3, 11), today=TODAY, dry_run=True)
    files = list(Path(workdir / "outbox").rglob("*.eml"))
    assert [f.name for f in files] == ["odd%2Fname@example.org.eml"]


def gnn_day(workdir, addresses):
    (workdir / "seeds" / "d.txt").write_text(
        make_dump("Mar 11", [("Graph Neural Networks", abstract_about("graph neural networks"))])
    )
    rows = "".join(f"{address},graph neural networks\n" for address in addresses)
    write_list(workdir / "subscribers", "l.csv", "email,topics\n" + rows)


def test_a_very_long_address_gets_a_bounded_file_name_and_the_others_go_on(db, settings, workdir):
    long = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 10 + ".example"
    gnn_day(workdir, [long, "ada@example.org", "jörg@bücher.example"])
    summary = run_day(db, settings, date(2026, 3, 11), today=TODAY, dry_run=True)
    assert summary.written == 3 and not summary.warnings
    files = {path.name: path for path in (workdir / "outbox" / "2026-03-11").glob("*.eml")}
    assert all(len(name.encode()) <= 200 for name in files)
    addressed = {parse_eml(path)["To"].addresses[0].addr_spec for path in files.values()}
    assert long in addressed and "ada@example.org" in addressed


def test_an_outbox_that_is_a_file_is_one_line(cli, workdir):
    gnn_day(workdir, ["ada@example.org"])
    (workdir / "blocked").write_text("not a folder")
    result = cli("run", "--dry-run", "--date", "2026-03-11", "--outbox", str(workdir / "blocked"))
    assert result.code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: outbox {workdir}/blocked: cannot write")


def test_encoded_words_and_private_use_characters_in_titles_reach_readers_as_written(
    db, settings, workdir
):
    titles = [
        "=?utf-8?b?8J+UkiBBY2NvdW50IGxvY2tlZA==?= Graph Neural Networks",
        "Graph Neural Networks \ue0ff with a private-use mark",
        "Graph Neural Networks \ue002 and another",
    ]
    (workdir / "seeds" / "d.txt").write_text(
        make_dump(
            "Mar 11",
            [
                (t, abstract_about("graph neural networks", unique=f"u{n}"))
                for n, t in enumerate(titles)
            ],
        )
    )
    write_list(
        workdir / "subscribers",
        "l.csv",
        "email,topics\nada@example.org,graph neural networks\n"
        "bob@example.org,graph neural networks\n",
    )
    summary = run_day(db, settings, date(2026, 3, 11), today=TODAY, dry_run=True)
    assert summary.written == 2
    for address in ("ada@example.org", "bob@example.org"):
        message = parse_eml(workdir / "outbox" / "2026-03-11" / f"{address}.eml")
        assert "🔒" not in str(message["Subject"])
        text = message.get_body(("plain",)).get_content()
        for title in titles:
            assert title in " ".join(text.split())
        token = str(message["List-Unsubscribe"]).split("/unsubscribe/")[1].split(">")[0]
        assert reader_of_link(db, settings.signing_key, token) == address
        assert text.count("/unsubscribe/") == 1  # the reader's link once, never inside a title


@pytest.fixture
def tiny_outbox(tmp_path):
    """A 32 KiB file system: room for a digest or two, not for the four of the day."""
    import subprocess

    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_outbox_is_one_line_and_leaves_no_half_written_file(cli, workdir, tiny_outbox):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    for listed in (ROOT / "subscribers").iterdir():
        shutil.copy(listed, workdir / "subscribers")
    result = cli("run", "--dry-run", "--date", "2026-08-08", "--outbox", str(tiny_outbox))
    assert result.code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: outbox {tiny_outbox}: cannot write") and "No space" in line
    written = list((tiny_outbox / "2026-08-08").iterdir())
    assert written and all(p.suffix == ".eml" for p in written)  # no temporary file left
    for path in written:
        assert parse_eml(path)["Message-ID"]  # each one whole


def test_a_run_for_the_latest_date_reports_what_it_ingested(db, demo, settings):
    """`--date latest` ingests the seeds folder before it looks for the newest dump; the run's
    report is of that ingest (not of a second, empty one) and names the day it found."""
    from newsletter.digests.daily import LATEST

    summary = run_day(db, settings, LATEST, today=TODAY, dry_run=True)
    assert summary.day == AUG_8 and summary.written >= 3
    assert len(summary.ingest.stored) == len(list(SEEDS.glob("*.txt")))
    assert sum(dump.new_papers for dump in summary.ingest.stored) == 182


def test_on_empty_trending_sends_the_days_most_trending_papers_and_skip_sends_nothing(
    db, demo, workdir, settings
):
    write_list(
        demo / "subscribers",
        "empty.csv",
        "email,topics,exclude,on_empty\n"
        "vera@example.org,volcano seismology,,trending\n"
        "sam@example.org,volcano seismology,,skip\n"
        "tim@example.org,volcano seismology,Neural Implicit,trending\n",
    )
    summary = dry_run(db, settings)
    folder = workdir / "outbox" / "2026-08-08"
    assert not (folder / "sam@example.org.eml").exists()  # skip (and the default): no mail
    message = parse_eml(folder / "vera@example.org.eml")
    text = " ".join(message.get_body(("plain",)).get_content().split())
    html = message.get_body(("html",)).get_content()
    assert "Nothing new matched your topics (volcano seismology) today" in text
    assert "the day's 3 most trending papers" in " ".join(html.split())
    # the three papers highest on Aug 8's page, in that order
    with db.session() as session:
        day = sorted(load_papers(session, new_on=AUG_8), key=lambda p: p.best_position)
    shown = [t for t in (p.title for p in day) if " ".join(t.split()) in text]
    assert shown == [p.title for p in day[:3]]
    assert text.count("Why: nothing matched your topics today") == 3
    # exclusions still hold
    tim = " ".join(
        parse_eml(folder / "tim@example.org.eml").get_body(("plain",)).get_content().split()
    )
    kept = [p.title for p in day if "neural implicit" not in p.title.lower()][:3]
    assert [t for t in (p.title for p in day) if " ".join(t.split()) in tim] == kept
    assert summary.skipped >= 1
    subscribers = {s["email"]: s for s in subscriber_records(db)}
    assert subscribers["vera@example.org"]["on_empty"] == "trending"
    assert subscribers["sam@example.org"]["on_empty"] == "skip"
