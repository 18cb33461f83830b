"""The command line as a user meets it: output, JSON, one-line errors, exit status."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import date

import lxml.html
import pytest

from .conftest import ROOT, SEEDS, parse_eml, write_list


@pytest.fixture
def seeded(cli, workdir):
    for dump in SEEDS.glob("*.txt"):
        shutil.copy(dump, workdir / "seeds")
    for listed in (ROOT / "subscribers").iterdir():
        shutil.copy(listed, workdir / "subscribers")
    assert cli("ingest").code == 0
    return cli


def assert_one_line_error(result, *fragments):
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.code == 0
    for command in ("ingest", "subscribers", "run", "papers", "rank", "preview", "unsubscribe"):
        assert command in result.stdout


def test_ingest_reports_each_refused_file_and_exits_non_zero(cli, workdir):
    (workdir / "seeds" / "broken.txt").write_bytes(b"\x00\x00binary")
    shutil.copy(next(SEEDS.glob("000_*")), workdir / "seeds")
    result = cli("ingest")
    assert result.code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{workdir}/seeds/broken.txt, line 1: binary data (NUL byte), not a text dump"
    ]
    assert "ingested 1 dump(s) with 24 new paper(s)" in result.stdout
    again = cli("ingest", str(workdir / "seeds" / next(SEEDS.glob("000_*")).name))
    assert again.code == 0 and "1 already stored" in again.stdout


def test_papers_json_for_a_date(seeded):
    result = seeded("papers", "--date", "2026-03-17", "--json")
    papers = json.loads(result.stdout)
    assert len(papers) == 16
    assert set(papers[0]) == {
        "title",
        "first_seen",
        "appearances",
        "code_url",
        "arxiv_id",
        "authors",
        "upvotes",
    }
    # Text dumps say nothing of these; the API does (tests/test_fetch.py).
    assert {(p["arxiv_id"], tuple(p["authors"]), p["upvotes"]) for p in papers} == {
        (None, (), None)
    }
    assert {p["first_seen"] for p in papers} == {"2026-03-17"}
    everything = json.loads(seeded("papers", "--json").stdout)
    assert len(everything) == 182 and max(p["appearances"] for p in everything) >= 2


def test_rank_json_is_best_first_with_matched_topics(seeded):
    result = seeded(
        "rank", "--topics", "vision transformers, quantization", "--limit", "5", "--json"
    )
    ranked = json.loads(result.stdout)
    assert 1 <= len(ranked) <= 5
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert all(
        set(r["matched"]) <= {"vision transformers", "quantization"} and r["matched"]
        for r in ranked
    )
    assert all(0 < r["relevance"] <= 1 for r in ranked)  # the gate's value, trending apart
    assert json.loads(seeded("rank", "--topics", "volcano seismology", "--json").stdout) == []


def test_subscribers_table_and_a_bad_list(cli, workdir):
    write_list(workdir / "subscribers", "l.csv", "email,topics\nada@example.org,x\n")
    good = cli("subscribers")
    assert good.code == 0 and "ada@example.org" in good.stdout and "1 added" in good.stdout
    write_list(
        workdir / "subscribers", "l.csv", "email,topics,frequency\nada@example.org,x,hourly\n"
    )
    assert_one_line_error(cli("subscribers"), "l.csv, line 2", "frequency 'hourly'")


def test_run_dry_run_prints_where_and_a_summary(seeded, workdir):
    result = seeded("run", "--dry-run", "--date", "latest")
    assert result.code == 0, result.stderr
    assert "outbox/2026-08-08/" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("dry-run 2026-08-08: ")
    assert len(list((workdir / "outbox" / "2026-08-08").glob("*.eml"))) >= 3


def test_preview_writes_an_html_file(seeded, workdir):
    result = seeded("preview", "katherine@example.org", "--date", "2026-03-11")
    assert result.code == 0, result.stderr
    path = workdir / result.stdout.strip()
    assert path.suffix == ".html" and "<html" in path.read_text()
    assert_one_line_error(seeded("preview", "nobody@example.org"), "nobody@example.org")


def test_unsubscribed_addresses_get_nothing_even_while_listed(seeded, workdir):
    assert seeded("subscribers").code == 0
    assert (
        seeded("unsubscribe", "Ada@Example.org").stdout.strip()
        == "ada@example.org is now unsubscribed"
    )
    seeded("run", "--dry-run", "--date", "latest")
    assert not (workdir / "outbox" / "2026-08-08" / "ada@example.org.eml").exists()
    assert "unsubscribed" in seeded("subscribers").stdout


@pytest.mark.parametrize(
    "args, extra_env, fragment",
    [
        (["run", "--date", "2026-13-45"], {}, "--date '2026-13-45'"),
        (["run", "--dry-run", "--bogus"], {}, "--bogus"),
        (["papers"], {"NEWSLETTER_SMTP_SECURITY": "ssl3"}, "NEWSLETTER_SMTP_SECURITY"),
        (["papers"], {"NEWSLETTER_TIMEZONE": "Mars/Olympus"}, "NEWSLETTER_TIMEZONE"),
        (["run", "--date", "2026-08-08"], {}, "NEWSLETTER_SECRET_KEY"),
        (["ingest", "no/such/folder"], {}, "no/such/folder"),
        (["rank", "--topics", " , "], {}, "--topics"),
        (["run", "--dry-run", "--date", "0001-01-01"], {}, "--date 0001-01-01"),
        (["papers", "--date", "9999-12-31"], {}, "--date 9999-12-31"),
        (
            ["papers"],
            {"NEWSLETTER_FROM": "Papers <p@x.example>\r\nBcc: victim@example.org"},
            "NEWSLETTER_FROM",
        ),
        (
            ["papers"],
            {"NEWSLETTER_BASE_URL": "https://x.example/\nBcc: v@example.org"},
            "NEWSLETTER_BASE_URL",
        ),
        (
            ["papers"],
            {"NEWSLETTER_UNSUBSCRIBE_MAILTO": "u@x.example\r\nBcc: v@x.example"},
            "NEWSLETTER_UNSUBSCRIBE_MAILTO",
        ),
        (["papers"], {"NEWSLETTER_CLAIM_LEASE": "0"}, "NEWSLETTER_CLAIM_LEASE"),
        (["unsubscribe", "not-an-address"], {}, "invalid address"),
        (["resubscribe", "nobody@example.org"], {}, "no such subscriber"),
    ],
)
def test_user_errors_are_one_line_without_traceback(cli, args, extra_env, fragment):
    assert_one_line_error(cli(*args, extra_env=extra_env), fragment)


def test_addresses_are_the_same_however_they_are_written(seeded, workdir):
    write_list(
        workdir / "subscribers", "idn.csv", "email,topics\nUser@Bücher.example,neural networks\n"
    )
    assert seeded("subscribers").code == 0
    result = seeded("unsubscribe", "user@xn--bcher-kva.example")
    assert result.stdout.strip() == "user@bücher.example is now unsubscribed"
    listed = json.loads(seeded("subscribers", "--json").stdout)
    assert {s["email"]: s["status"] for s in listed}["user@bücher.example"] == "unsubscribed"
    assert seeded("unsubscribe", "USER@BÜCHER.EXAMPLE").stdout.strip() == (
        "user@bücher.example was already unsubscribed"
    )
    unknown = seeded("unsubscribe", "stranger@example.org")
    assert unknown.code == 0 and "not a known subscriber" in unknown.stdout


def test_a_dump_dated_far_ahead_does_not_pin_latest(seeded, workdir):
    (workdir / "seeds" / "far.txt").write_text(
        (workdir / "seeds" / next(SEEDS.glob("000_*")).name)
        .read_text()
        .replace("Aug 8", "Aug 8, 2999")
        .replace("Offloading", "Unloading")
    )
    result = seeded("run", "--dry-run", "--date", "latest")
    assert result.code == 0, result.stderr
    assert "dry-run 2026-08-08:" in result.stdout
    assert "far.txt, line 11: dated 2999-08-08, in the future" in result.stderr


def test_subscribers_and_status_as_json_for_scripts(seeded, workdir):
    listed = json.loads(seeded("subscribers", "--json").stdout)
    assert {s["email"] for s in listed} >= {"ada@example.org", "grace.hopper@example.org"}
    ada = next(s for s in listed if s["email"] == "ada@example.org")
    assert {"email", "name", "status", "topics", "frequency", "max_papers", "bounce_score"} <= set(
        ada
    )
    assert ada["status"] == "active" and ada["topics"][0] == "quantization"
    seeded("run", "--dry-run", "--date", "latest")
    state = json.loads(seeded("status", "--json").stdout)
    assert state["runs"][0]["date"] == "2026-08-08" and state["runs"][0]["dry_run"] is True
    assert state["digests"] == {"pending": 0, "deferred": 0, "failed": 0}
    assert state["next_run"] and state["suspended"] == []
    # the model that ranked, and the stored papers with its vectors (all 182 seed papers)
    model = state["ranking"]["model"]
    assert model.startswith("all-MiniLM-L6-v2/") and state["ranking"]["vectors"] == {model: 182}
    assert f"ranking: {model}; papers with sentence vectors: 182 by {model}" in seeded(
        "status"
    ).stdout.replace("\n", "")


def test_a_long_list_is_summarised(cli, workdir):
    rows = "".join(f"reader{n:04d}@example.org,graph networks\n" for n in range(450))
    write_list(workdir / "subscribers", "many.csv", "email,topics\n" + rows)
    result = cli("subscribers")
    assert result.code == 0
    assert "... and 250 more (--json lists them all)" in result.stdout
    assert "450 subscriber(s): 450 active" in result.stdout
    assert result.stdout.count("@example.org") == 200


def test_a_database_that_cannot_be_used_is_one_line(cli, workdir):
    (workdir / "damaged.db").write_bytes(b"this is no SQLite file, " * 200)
    (workdir / "afile").write_text("x")
    assert cli("papers").code == 0  # makes newsletter.store.db
    read_only = f"sqlite:///file:{workdir / 'newsletter.db'}?mode=ro&uri=true"
    for url, fragment in [
        (f"sqlite:///{workdir / 'damaged.db'}", "file is not a database"),
        (f"sqlite:///{workdir / 'afile' / 'x.db'}", "afile"),
        ("postgresql+psycopg://digest:s3cret@127.0.0.1:1/digest", "Connection refused"),
    ]:
        result = cli("papers", extra_env={"NEWSLETTER_DATABASE_URL": url})
        assert_one_line_error(result, "error: database ", fragment)
        assert "s3cret" not in result.stderr
    result = cli(
        "run", "--dry-run", "--date", "2026-08-08", extra_env={"NEWSLETTER_DATABASE_URL": read_only}
    )
    assert_one_line_error(result, "readonly database")


def test_a_run_whose_process_is_gone_is_not_shown_running(cli, db):
    from newsletter.store.db import RunRecord

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )  # a process that has ended
    with db.session() as session:
        session.add(
            RunRecord(
                run_date=date(2026, 3, 11),
                holder=f"{socket.gethostname()}:{gone.stdout.strip()}:deadbeef",
                outcome="running",
            )
        )
        session.add(
            RunRecord(
                run_date=date(2026, 3, 12),
                holder=f"{socket.gethostname()}:{os.getpid()}:cafe0000",
                outcome="running",
            )
        )
    runs = json.loads(cli("status", "--json").stdout)["runs"]
    assert [(r["date"], r["outcome"]) for r in runs] == [
        ("2026-03-12", "running"),  # this very process: alive
        ("2026-03-11", "died"),  # killed (a full disk, say): no longer shown as running
    ]
    assert " died " in cli("status").stdout or "│ died" in cli("status").stdout


def _digest_titles(path) -> list[str]:
    html = parse_eml(path).get_body(("html",)).get_content()
    return [" ".join(t.split()) for t in lxml.html.fromstring(html).xpath("//h2/a/text()")]


def test_rank_for_a_reader_is_what_their_digest_holds_and_all_adds_what_kept_the_rest_out(
    seeded, workdir
):
    write_list(
        workdir / "subscribers",
        "extra.yaml",
        "subscribers:\n  - email: q@example.org\n    topics: [quantization, LLM training]\n"
        "    exclude: [neural implicit]\n    max_papers: 1\n",
    )
    assert seeded("subscribers").code == 0
    assert seeded("run", "--dry-run", "--date", "2026-08-08").code == 0
    for reader in ("ada@example.org", "grace.hopper@example.org", "q@example.org"):
        rows = json.loads(seeded("rank", "--for", reader, "--date", "2026-08-08", "--json").stdout)
        assert rows and all(r["in_digest"] and r["relevance"] > 0 and r["why"] for r in rows)
        assert {"title", "score", "relevance", "matched", "why"} <= set(rows[0])
        in_mail = _digest_titles(workdir / "outbox" / "2026-08-08" / f"{reader}.eml")
        assert [r["title"] for r in rows] == in_mail, reader  # the same papers, the same order

    everything = json.loads(
        seeded("rank", "--for", "q@example.org", "--date", "2026-08-08", "--all", "--json").stdout
    )
    stored = json.loads(seeded("papers", "--json").stdout)
    window = {p["title"] for p in stored if "2026-08-02" <= p["first_seen"] <= "2026-08-08"}
    assert {r["title"] for r in everything} == window  # each paper of the window, once
    assert len(everything) == len(window)
    kept_out = {r["title"]: r["kept_out"] for r in everything if not r["in_digest"]}
    implicit = "Coordinate Quantized Neural Implicit Representations for Multi-view Reconstruction"
    assert kept_out[implicit] == "exclude: neural implicit"
    assert "past max_papers (1)" in kept_out.values()  # relevant, but one paper is all they take
    assert "below the cut" in kept_out.values()
    below = next(r for r in everything if r.get("kept_out") == "below the cut")
    assert below["probability"] < 1 and set(below["cut"]) == {"paper", "topic", "relative"}
    table = seeded("rank", "--for", "q@example.org", "--date", "2026-08-08", "--all").stdout
    assert "exclude: neural implicit" in table


def test_rank_needs_topics_or_a_reader_and_a_known_one(seeded):
    assert_one_line_error(seeded("rank", "--for", "nobody@example.org"), "no such subscriber")
    assert_one_line_error(seeded("rank"), "--topics or --for")
    assert_one_line_error(seeded("rank", "--topics", "x", "--all"), "--all goes with --for")
