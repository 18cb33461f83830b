"""`newsletter fetch` against a real HTTP server on 127.0.0.1 playing the Daily Papers API: what is
saved, what is stored, what a failing API does to the command and to the daily run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest

from newsletter import __version__

from .conftest import SECRET, SEEDS, parse_eml, write_list
from .papers_api import PapersApiServer, Reply, item
from .smtp_server import FaultyHandler, SmtpServer, free_port

DAY = "2026-11-24"


@pytest.fixture
def api():
    server = PapersApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def fetch_env(env, api):
    return {
        **env,
        "NEWSLETTER_PAPERS_API": api.url,
        "NEWSLETTER_FETCH_RETRY_DELAY": "0.05",
        "NEWSLETTER_FETCH_ATTEMPTS": "3",
        "NEWSLETTER_FETCH_TIMEOUT": "5",
    }


@pytest.fixture
def fetch(cli, fetch_env):
    def invoke(*args, **extra_env):
        return cli("fetch", *args, extra_env={**fetch_env, **extra_env})

    return invoke


def papers_json(cli, fetch_env, *args):
    result = cli("papers", "--json", *args, extra_env=fetch_env)
    assert result.code == 0, result.stderr
    return {row["title"]: row for row in json.loads(result.stdout)}


NORMAL_DAY = [
    item(
        "2611.01234",
        "Quantized Attention <b>Kernels</b> & Friends",
        "We quantize attention kernels to 4 bits for efficient LLM inference on GPUs.",
        authors=("Zoë Müller", "Łukasz Kaiser", "李华", "Søren Kierkegaard"),
        upvotes=87,
        github="https://github.com/example/qak",
    ),
    item(
        "2611.04321",
        "Graph Rewiring Without Tears",
        "Graph neural networks suffer from oversquashing; we rewire graphs. Code: "
        "https://gitlab.com/example/rewire",
        authors=("Ada Lovelace",),
        upvotes=3,
    ),
]


def test_a_day_is_saved_unchanged_and_its_papers_gain_id_authors_and_upvotes(
    fetch, api, cli, fetch_env, workdir
):
    api.answer(DAY, Reply(body=NORMAL_DAY))
    result = fetch("--date", DAY)
    assert result.code == 0, result.stderr
    saved = workdir / "seeds" / f"daily_papers-{DAY}.json"
    assert saved.read_bytes() == Reply(body=NORMAL_DAY).payload()  # the answer, unchanged
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary file left
    assert f"{DAY}: 2 paper(s)" in result.stdout and "2 new paper(s)" in result.stdout
    (request,) = api.asked(DAY)
    assert request.headers["User-Agent"] == f"papers-digest/{__version__}"

    rows = papers_json(cli, fetch_env)
    quantized = rows["Quantized Attention <b>Kernels</b> & Friends"]
    assert quantized["arxiv_id"] == "2611.01234" and quantized["upvotes"] == 87
    assert quantized["authors"] == ["Zoë Müller", "Łukasz Kaiser", "李华", "Søren Kierkegaard"]
    assert quantized["code_url"] == "https://github.com/example/qak"
    assert quantized["first_seen"] == DAY
    # No githubRepo: the code link comes from the abstract, as for text dumps.
    assert rows["Graph Rewiring Without Tears"]["code_url"] == "https://gitlab.com/example/rewire"

    again = fetch("--date", DAY)  # fetching the same day again changes nothing
    assert again.code == 0 and "ingested 0 dump(s)" in again.stdout
    assert "1 already stored" in again.stdout
    assert papers_json(cli, fetch_env) == rows


def test_an_item_without_a_code_link_has_none(fetch, api, cli, fetch_env):
    api.answer(DAY, Reply(body=[item("2611.00001", "Plain Paper", "No link here.")]))
    assert fetch("--date", DAY).code == 0
    assert papers_json(cli, fetch_env)["Plain Paper"]["code_url"] is None


def test_an_empty_day_is_a_normal_day(fetch, api, cli, fetch_env, workdir):
    api.answer(DAY, Reply(body=[]))
    result = fetch("--date", DAY)
    assert result.code == 0, result.stderr
    assert f"{DAY}: 0 paper(s)" in result.stdout and "1 day(s) without papers" in result.stdout
    assert (workdir / "seeds" / f"daily_papers-{DAY}.json").read_text() == "[]"
    assert papers_json(cli, fetch_env) == {}
    status = json.loads(cli("status", "--json", extra_env=fetch_env).stdout)
    assert status["fetches"][0] | {"fetched_at": None} == {
        "date": DAY,
        "fetched_at": None,
        "outcome": "ok",
        "papers": 0,
        "error": None,
    }


def test_an_empty_answer_does_not_replace_a_day_saved_with_papers(fetch, api, workdir):
    api.answer(DAY, Reply(body=NORMAL_DAY), Reply(body=[]))
    assert fetch("--date", DAY).code == 0
    later = fetch("--date", DAY)
    assert later.code == 0 and "kept the earlier answer" in later.stdout
    saved = json.loads((workdir / "seeds" / f"daily_papers-{DAY}.json").read_text())
    assert len(saved) == 2


def test_429_with_retry_after_is_waited_for_then_the_day_goes_in(fetch, api, cli, fetch_env):
    api.answer(
        DAY,
        Reply(429, {"error": "rate limited"}, headers={"Retry-After": "1"}),
        Reply(body=NORMAL_DAY),
    )
    result = fetch("--date", DAY)
    assert result.code == 0, result.stderr
    first, second = api.asked(DAY)
    assert second.at - first.at >= 1.0  # the server's Retry-After, not the 0.05 s back-off
    assert len(papers_json(cli, fetch_env)) == 2


def test_retry_after_as_an_http_date_is_honoured(fetch, api):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    api.answer(DAY, Reply(503, b"busy", headers={"Retry-After": when}), Reply(body=[]))
    assert fetch("--date", DAY).code == 0
    first, second = api.asked(DAY)
    assert second.at - first.at >= 0.5  # (an HTTP date has whole seconds)


def test_a_server_asking_for_a_long_pause_fails_the_day_at_once(fetch, api, workdir):
    api.answer(DAY, Reply(429, b"", headers={"Retry-After": "3600"}))
    result = fetch("--date", DAY)
    assert result.code == 1
    assert len(api.asked(DAY)) == 1
    assert f"fetch {DAY}: HTTP 429 Too Many Requests, asked to wait 3600 s" in result.stderr
    assert list((workdir / "seeds").iterdir()) == []


def test_500_on_every_try_fails_that_day_only(fetch, api, cli, fetch_env, workdir):
    api.answer("2026-11-23", Reply(500, b"<html>oops</html>"))
    api.answer(DAY, Reply(body=NORMAL_DAY))
    result = fetch("--date", DAY, "--days", "2")
    assert result.code == 1
    assert len(api.asked("2026-11-23")) == 3  # NEWSLETTER_FETCH_ATTEMPTS
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "fetch 2026-11-23: HTTP 500 Internal Server Error (3 attempts); nothing stored"
    ]
    assert [p.name for p in (workdir / "seeds").iterdir()] == [f"daily_papers-{DAY}.json"]
    assert len(papers_json(cli, fetch_env)) == 2  # the other day went in
    status = cli("status", extra_env=fetch_env)
    assert "2026-11-23" in status.stdout and "failed: HTTP 500" in status.stdout
    assert "2 paper(s)" in status.stdout


def test_malformed_json_stores_nothing_and_is_not_retried(fetch, api, cli, fetch_env, workdir):
    api.answer(DAY, Reply(body=b'[{"paper": {"id": "2611.01234", "title": "Cut'))
    result = fetch("--date", DAY)
    assert result.code == 1 and len(api.asked(DAY)) == 1
    assert result.stderr.strip() == (
        f"fetch {DAY}: answer, line 1: not JSON (Unterminated string starting at), "
        "not a Daily Papers answer; nothing stored"
    )
    assert list((workdir / "seeds").iterdir()) == []
    assert papers_json(cli, fetch_env) == {}


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"error": "Invalid date"}', "a JSON dict, expected a list of papers"),
        (b'[{"title": "No paper object"}]', 'item 1: expected an object with a "paper" object'),
        (
            json.dumps([item("2611.1", "Odd id")]).encode(),
            "item 1: paper.id '2611.1' is not an arXiv id",
        ),
        (b"<!DOCTYPE html><html>Hugging Face is down</html>", "line 1: not JSON"),
    ],
)
def test_an_answer_that_is_not_the_expected_list_is_one_line(fetch, api, workdir, body, reason):
    api.answer(DAY, Reply(body=body))
    result = fetch("--date", DAY)
    assert result.code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"fetch {DAY}: answer") and reason in line
    assert list((workdir / "seeds").iterdir()) == []


def test_a_timeout_is_retried_then_fails_the_day(fetch, api, workdir):
    api.answer(DAY, Reply(body=[], delay=1.5))
    result = fetch("--date", DAY, NEWSLETTER_FETCH_TIMEOUT="0.3", NEWSLETTER_FETCH_ATTEMPTS="2")
    assert result.code == 1
    assert len(api.asked(DAY)) == 2
    assert result.stderr.strip() == (
        f"fetch {DAY}: no answer within 0.3 s (2 attempts); nothing stored"
    )
    assert list((workdir / "seeds").iterdir()) == []


def test_an_api_that_cannot_be_reached_is_one_line(fetch):
    down = f"http://127.0.0.1:{free_port()}"
    result = fetch("--date", DAY, NEWSLETTER_PAPERS_API=down, NEWSLETTER_FETCH_ATTEMPTS="2")
    assert result.code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"fetch {DAY}: cannot reach {down}: ")
    assert line.endswith("(2 attempts); nothing stored")


def test_a_paper_of_a_seed_dump_is_one_paper_that_gains_its_id(fetch, api, cli, fetch_env, workdir):
    shutil.copy(next(SEEDS.glob("004_*.txt")), workdir / "seeds")
    assert cli("ingest", "--year", "2026", extra_env=fetch_env).code == 0
    before = papers_json(cli, fetch_env)
    title = (
        "Learning dynamic representations of the functional connectome in neurobiological networks"
    )
    assert before[title]["arxiv_id"] is None and before[title]["appearances"] == 1
    # The page's answer for that day, with the title cased and punctuated differently.
    api.answer(
        "2026-03-17",
        Reply(body=[item("2603.11111", title.upper() + ".", "A longer summary. " * 40, upvotes=5)]),
    )
    assert fetch("--date", "2026-03-17").code == 0
    after = papers_json(cli, fetch_env)
    assert len(after) == len(before)  # no second paper
    (gained,) = [row for row in after.values() if row["arxiv_id"]]
    assert gained["title"] == title.upper() + "."  # as the page shows it now
    assert gained["upvotes"] == 5 and gained["first_seen"] == "2026-03-17"
    assert gained["appearances"] == 1  # the same page: its appearance is replaced
    # The rest of that text dump is untouched.
    assert {t: r["appearances"] for t, r in after.items() if t != gained["title"]} == {
        t: r["appearances"] for t, r in before.items() if t != title
    }


def test_a_paper_keeps_its_id_when_its_title_is_edited_on_the_page(fetch, api, cli, fetch_env):
    api.answer("2026-11-23", Reply(body=[item("2611.05555", "Draft Title of a Paper", upvotes=1)]))
    api.answer(DAY, Reply(body=[item("2611.05555", "Final Title of the Paper", upvotes=9)]))
    assert fetch("--date", DAY, "--days", "2").code == 0
    rows = papers_json(cli, fetch_env)
    assert list(rows) == ["Final Title of the Paper"]
    paper = rows["Final Title of the Paper"]
    assert paper["arxiv_id"] == "2611.05555" and paper["appearances"] == 2
    assert paper["first_seen"] == "2026-11-23" and paper["upvotes"] == 9


def test_backfilling_a_week_fetches_each_day_oldest_first(fetch, api, cli, fetch_env):
    days = [date(2026, 11, 18 + i).isoformat() for i in range(7)]
    for i, day in enumerate(days):
        api.answer(day, Reply(body=[item(f"2611.{i:05d}", f"Paper of day {i}")]))
    result = fetch("--date", DAY, "--days", "7")
    assert result.code == 0, result.stderr
    assert [r.date for r in api.requests] == days
    rows = papers_json(cli, fetch_env)
    assert {r["first_seen"] for r in rows.values()} == set(days)


def test_the_email_links_the_paper_and_shows_authors_and_upvotes(
    fetch, api, cli, fetch_env, workdir
):
    api.answer(DAY, Reply(body=NORMAL_DAY))
    assert fetch("--date", DAY).code == 0
    write_list(
        workdir / "subscribers",
        "l.yaml",
        "subscribers:\n  - email: ada@example.org\n    topics: [quantization]\n",
    )
    result = cli("run", "--date", DAY, "--dry-run", extra_env=fetch_env)
    assert result.code == 0, result.stderr
    message = parse_eml(workdir / "outbox" / DAY / "ada@example.org.eml")
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert '<a href="https://arxiv.org/abs/2611.01234"' in html
    assert 'href="https://arxiv.org/pdf/2611.01234"' in html
    assert 'href="https://huggingface.co/papers/2611.01234"' in html
    assert "Quantized Attention &lt;b&gt;Kernels&lt;/b&gt; &amp; Friends" in html
    assert "<b>Kernels</b>" not in html
    assert "Zoë Müller, Łukasz Kaiser, 李华 et al." in html
    assert "Søren" not in html  # the fourth author is "et al."
    assert "87 upvotes" in html
    assert "   Zoë Müller, Łukasz Kaiser, 李华 et al." in text
    assert "PDF: https://arxiv.org/pdf/2611.01234" in text
    assert "Quantized Attention <b>Kernels</b> & Friends" in message["Subject"]


def test_the_excerpt_says_what_is_new_from_the_page_summary_or_the_contribution(
    fetch, api, cli, fetch_env, workdir
):
    background = "Quantization reduces the memory of large models. It is widely used in practice. "
    summarized = "INT4 kernels run quantized attention 3x faster on consumer GPUs."
    api.answer(
        DAY,
        Reply(
            body=[
                item(
                    "2611.02001",
                    "Fast Quantized Attention Kernels",
                    background + "We propose kernels for 4-bit attention.",
                    ai_summary=summarized,
                ),
                item(
                    "2611.02002",
                    "Quantization for Every Layer",
                    background + "In this work, we show that every layer can be quantized. "
                    "Code: https://anonymous.4open.science/r/QEL-527C{here}",
                ),
            ]
        ),
    )
    assert fetch("--date", DAY).code == 0
    write_list(
        workdir / "subscribers",
        "l.yaml",
        "subscribers:\n  - email: ada@example.org\n    topics: [quantization]\n",
    )
    assert cli("run", "--date", DAY, "--dry-run", extra_env=fetch_env).code == 0
    message = parse_eml(workdir / "outbox" / DAY / "ada@example.org.eml")
    html = message.get_body(("html",)).get_content()
    text = " ".join(message.get_body(("plain",)).get_content().split())
    assert summarized in html and summarized in text  # the page's summary, when it has one
    assert "In this work, we show that every layer can be quantized." in text
    assert "widely used in practice" not in text  # not the background
    # a LaTeX leftover makes a link that leads nowhere: not linked, in either part
    assert 'href="https://anonymous.4open.science' not in html
    assert "\n   Code: " not in message.get_body(("plain",)).get_content()


def test_run_with_fetch_sends_from_what_is_stored_when_the_api_is_down(cli, fetch_env, demo):
    down = f"http://127.0.0.1:{free_port()}"
    handler = FaultyHandler()
    with SmtpServer(handler) as server:
        result = cli(
            "run",
            "--date",
            "2026-03-11",
            extra_env={
                **fetch_env,
                "NEWSLETTER_FETCH": "true",
                "NEWSLETTER_PAPERS_API": down,
                "NEWSLETTER_FETCH_ATTEMPTS": "2",
                "NEWSLETTER_SMTP_HOST": "127.0.0.1",
                "NEWSLETTER_SMTP_PORT": str(server.port),
                "NEWSLETTER_SMTP_SECURITY": "none",
                "NEWSLETTER_SECRET_KEY": SECRET,
            },
        )
    assert result.code == 0, result.stderr
    assert "warning: fetch 2026-03-11: cannot reach" in result.stderr
    assert handler.received  # the digests went out from the stored dumps
    status = json.loads(cli("status", "--json", extra_env=fetch_env).stdout)
    (fetched,) = status["fetches"]
    assert fetched["date"] == "2026-03-11" and fetched["outcome"] == "failed"
    assert fetched["error"].startswith("cannot reach")
    assert status["runs"][0]["outcome"] == "ok"


def test_run_with_fetch_sends_the_fetched_day(cli, fetch_env, api, workdir):
    api.answer(DAY, Reply(body=NORMAL_DAY))
    write_list(
        workdir / "subscribers",
        "l.yaml",
        "subscribers:\n  - email: ada@example.org\n    topics: [graph neural networks]\n",
    )
    result = cli(
        "run", "--date", DAY, "--dry-run", extra_env={**fetch_env, "NEWSLETTER_FETCH": "true"}
    )
    assert result.code == 0, result.stderr
    message = parse_eml(workdir / "outbox" / DAY / "ada@example.org.eml")
    assert "Graph Rewiring Without Tears" in message["Subject"]
    assert (workdir / "seeds" / f"daily_papers-{DAY}.json").is_file()


# --- Hostile answers: each is taken or refused in one line for that day ------------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'[{"paper": {"id": "2611.01234", "title": "T", "upvotes": ' + b"9" * 5000 + b"}}]", ""),
        (b"\xff\xfe\x00garbage", ""),
    ],
)
def test_an_answer_no_parser_can_take_is_one_line_and_the_run_goes_on(
    fetch, api, cli, fetch_env, demo, body, reason
):
    api.answer("2026-03-11", Reply(body=body))
    result = fetch("--date", "2026-03-11")
    assert result.code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("fetch 2026-03-11: answer") and reason in line
    assert line.endswith("nothing stored")
    run = cli("run", "--dry-run", "--date", "2026-03-11", extra_env=fetch_env)
    assert run.code == 0 and "digest(s) written" in run.stdout


def test_odd_fields_are_taken_bounded_and_never_fail_a_later_run(fetch, api, cli, fetch_env):
    huge_author = "Mallory " * 800_000  # 6.4 MB
    odd = [
        item("2611.01234", "Lone \ud800 surrogate in a title", "About graphs.", upvotes=0),
        item("2611.04321", "Graph Upvotes Overflow", "Graph neural networks.", upvotes=0),
        item("2611.05555", "Huge Author", "Graphs again.", authors=(huge_author,)),
    ]
    odd[1]["paper"]["upvotes"] = 9223372036854775808  # one past the largest 64-bit integer
    api.answer(DAY, Reply(body=json.dumps(odd).encode()))  # "\\ud800" as the JSON escape
    assert fetch("--date", DAY).code == 0
    for _ in range(2):  # the saved answer is read again by every later command
        papers = papers_json(cli, fetch_env)
        assert set(papers) == {
            "Lone surrogate in a title",
            "Graph Upvotes Overflow",
            "Huge Author",
        }
        assert papers["Graph Upvotes Overflow"]["upvotes"] is None
        (author,) = papers["Huge Author"]["authors"]
        assert author.startswith("Mallory Mallory") and len(author) <= 200
        assert cli("ingest", extra_env=fetch_env).code == 0


def test_a_redirect_to_a_new_url_every_time_is_one_line(fetch, api, workdir):
    api.answer(DAY, Reply(302, headers={"Location": f"/api/daily_papers?date={DAY}&again=1"}))
    result = fetch("--date", DAY)
    assert result.code == 1
    assert result.stderr.strip() == f"fetch {DAY}: more than 5 redirects; nothing stored"
    assert list((workdir / "seeds").iterdir()) == []


def test_a_body_that_is_not_the_encoding_it_claims_is_one_line(fetch, api, workdir):
    api.answer(DAY, Reply(body=b"[not gzip]", headers={"Content-Encoding": "gzip"}))
    result = fetch("--date", DAY)
    assert result.code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"fetch {DAY}: unreadable answer") and line.endswith("nothing stored")


def test_a_retry_after_that_is_no_number_is_no_pause(fetch, api):
    api.answer(DAY, Reply(429, body=b"", headers={"Retry-After": "\xb2"}), Reply(body=NORMAL_DAY))
    result = fetch("--date", DAY)
    assert result.code == 0, result.stderr
    assert len(api.asked(DAY)) == 2


def test_a_server_that_trickles_its_headers_is_cut_off_at_the_deadline(fetch, api, workdir):
    api.answer(DAY, Reply(body=NORMAL_DAY, trickle=0.2))
    started = datetime.now(UTC)
    result = fetch("--date", DAY, NEWSLETTER_FETCH_TIMEOUT="0.5", NEWSLETTER_FETCH_ATTEMPTS="1")
    took = (datetime.now(UTC) - started).total_seconds()
    assert result.code == 1 and took < 5
    assert result.stderr.strip() == (
        f"fetch {DAY}: answer not complete within 1 s (1 attempt); nothing stored"
    )
    assert list((workdir / "seeds").iterdir()) == []


def test_an_answer_longer_than_any_page_is_not_saved(fetch, api, cli, fetch_env, workdir):
    many = [item(f"2611.{n:05d}", f"Paper {n}") for n in range(50_001)]
    api.answer(DAY, Reply(body=many))
    result = fetch("--date", DAY)
    assert result.code == 1
    assert "50,001 papers, more than a page lists; nothing stored" in result.stderr
    assert list((workdir / "seeds").iterdir()) == []
    status = json.loads(cli("status", "--json", extra_env=fetch_env).stdout)
    assert status["fetches"][0]["outcome"] == "failed"
