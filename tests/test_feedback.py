"""A digest's own links, followed as a reader (and a link scanner) would: "More / Fewer like
this" (GET never records, the POST does, once; the other replaces it; forged tokens change
nothing), what that feedback does to the next digest, the digest as a web page, the Atom feed."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import feedparser
import lxml.html
import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.digests.compose import compose_day, compose_for
from newsletter.digests.daily import run_day
from newsletter.digests.for_reader import rank_for
from newsletter.mail.feed import _xml_text, atom_feed
from newsletter.mail.render import PaperCard
from newsletter.mail.tokens import paper_token, reader_token
from newsletter.store.db import Feedback, Subscriber
from newsletter.web import create_app

from .browser import chromium, measure
from .conftest import TODAY, parse_eml, write_list

SECRET = "feedback-test-secret-0123456789-0123456789"
DAY = date(2026, 3, 11)  # the seeds' first day: 155 new papers
NEXT = date(2026, 3, 17)  # 16 more
LAST = date(2026, 8, 8)  # 11 more
MORE_LINE = re.compile(r"^More like this: (\S+)$", re.M)
LESS_LINE = re.compile(r"^Fewer like this: (\S+)$", re.M)


@pytest.fixture
def site(env, seeded_db, workdir):
    """Settings with a real key, readers subscribed, and the web app on the test's store."""
    settings = load_settings({**env, "NEWSLETTER_SECRET_KEY": SECRET})
    write_list(
        workdir / "subscribers",
        "readers.yaml",
        "subscribers:\n"
        "  - {email: ada@example.org, name: Ada, topics: [quantization], max_papers: 4}\n"
        "  - {email: alan@example.org, topics: [quantization], max_papers: 4}\n",
    )
    return settings, seeded_db, TestClient(create_app(seeded_db, settings))


def digest_text(settings, db, workdir, address: str, day: date = DAY) -> tuple[str, str]:
    """(plain text, HTML) of the reader's digest of `day` as a dry-run writes it."""
    run_day(db, settings, day, today=TODAY, dry_run=True)
    message = parse_eml(workdir / "outbox" / day.isoformat() / f"{address}.eml")
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return text, message.get_body(("html",)).get_content()


def verdicts(db) -> list[tuple[str, str]]:
    with db.session() as session:
        return sorted(
            session.execute(
                select(Subscriber.email, Feedback.verdict).join(
                    Subscriber, Subscriber.id == Feedback.subscriber_id
                )
            ).all()
        )


def path_of(url: str, settings) -> str:
    assert url.startswith(settings.base_url + "/")
    return url.removeprefix(settings.base_url)


@pytest.mark.both_backends
def test_a_get_shows_the_paper_and_records_nothing_a_post_records_once(site, workdir, cli):
    settings, db, client = site
    text, html = digest_text(settings, db, workdir, "ada@example.org")
    more, less = MORE_LINE.findall(text), LESS_LINE.findall(text)
    titles = re.findall(r"^\d+\. (.+)$", text, re.M)
    assert len(more) == len(less) == len(titles) == 4
    # the HTML card carries the same two links, in the same order
    anchors = lxml.html.document_fromstring(html).xpath("//a")
    links = {a.text_content(): [] for a in anchors}
    for a in anchors:
        links[a.text_content()].append(a.get("href"))
    assert links["More like this"] == more and links["Fewer like this"] == less

    page = client.get(path_of(more[0], settings))  # a link scanner, or the reader's first click
    assert page.status_code == 200 and "<button" in page.text
    assert titles[0].split()[0] in page.text
    assert verdicts(db) == []

    assert client.post(path_of(more[0], settings)).status_code == 200
    assert client.post(path_of(more[0], settings), content=b"anything").status_code == 200
    assert verdicts(db) == [("ada@example.org", "more")]  # twice is once
    assert "already" in client.get(path_of(more[0], settings)).text

    assert client.post(path_of(less[0], settings)).status_code == 200  # changed their mind
    assert client.post(path_of(less[1], settings)).status_code == 200
    assert verdicts(db) == [("ada@example.org", "less"), ("ada@example.org", "less")]
    listed = json.loads(cli("subscribers", "--json").stdout)
    counts = {row["email"]: row["feedback"] for row in listed}
    assert counts["ada@example.org"] == {"more": 0, "less": 2}
    assert counts["alan@example.org"] == {"more": 0, "less": 0}


def test_forged_edited_or_foreign_tokens_get_400_and_record_nothing(site, workdir):
    settings, db, client = site
    text, _ = digest_text(settings, db, workdir, "ada@example.org")
    good = path_of(MORE_LINE.findall(text)[0], settings).removeprefix("/more/")
    reader, day, paper, signature = good.split("-")
    with db.session() as session:
        alan = session.scalar(select(Subscriber.id).where(Subscriber.email == "alan@example.org"))
    subscriber_id, paper_id = int(reader, 36), int(paper, 36)
    forged = [
        f"{reader}-{day}-{paper}-{signature[:-2]}aa",  # altered signature
        f"{alan:x}-{day}-{paper}-{signature}",  # ada's signature on alan's id
        f"{reader}-{day}-{int(paper, 36) + 1:x}-{signature}",  # another paper
        paper_token("another key-0123456789-0123456789-0123", subscriber_id, DAY, paper_id),
        reader_token(SECRET, "unsubscribe", subscriber_id, DAY),  # ours, for another purpose
        reader_token(SECRET, "view", subscriber_id, DAY),
        f"{reader}-{day}-{signature}",
        "not-a-token",
    ]
    for token in forged:
        for verdict in ("more", "less"):
            for method in ("GET", "POST"):
                answer = client.request(method, f"/{verdict}/{token}")
                assert answer.status_code == 400, (token, verdict, method)
    assert verdicts(db) == []


def test_no_link_of_a_digest_carries_the_readers_address(site, workdir):
    settings, db, _ = site
    text, html = digest_text(settings, db, workdir, "ada@example.org")
    urls = re.findall(r"https?://[^\s\"'<>]+", text + html)
    ours = [u for u in urls if u.startswith(settings.base_url)]
    assert {u.split("/")[3] for u in ours} >= {"more", "less", "digest", "feed", "unsubscribe"}
    for url in ours:
        for form in ("ada@example.org", "ada%40example.org", "YWRhQGV4YW1wbGUub3Jn"):
            assert form.lower() not in url.lower()


def reader_mark(settings, db, client, address: str, verdict: str) -> int:
    """The reader marks every paper of their stored digest of DAY through its links; how many."""
    from newsletter.delivery.workers import MessageFactory
    from newsletter.digests.compose import stored_digests

    factory = MessageFactory(settings)
    marked = 0
    for batch in stored_digests(db, settings, DAY):
        for outgoing in batch:
            if outgoing.email != address:
                continue
            _, raw = factory.make(outgoing, None)
            body = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",))
            text = body.get_content().replace("\r\n", "\n")
            line = MORE_LINE if verdict == "more" else LESS_LINE
            for url in line.findall(text):
                assert client.post(path_of(url, settings)).status_code == 200
                marked += 1
    return marked


def near_misses(db, name: str) -> list[dict]:
    """`rank --for <name> --date NEXT --limit 0 --all`: the papers new in their digest's window
    (none of them marked: the marked ones are of DAY), each with its probability."""
    rows = rank_for(db, f"{name}@example.org", NEXT, 0, True)
    new = [r for r in rows if r["kept_out"].startswith(("below the cut", "past max_papers (0)"))]
    assert len(new) == 16
    return new


def test_feedback_changes_the_next_digests_and_says_why(env, seeded_db, workdir):
    """Three readers of one topic get the same digest of DAY. One marks every paper "more",
    one "fewer", one says nothing. Their next digests then differ: "more" brings papers close
    to the liked ones, saying why, on a day the topic alone brings nothing; "fewer" pushes back
    that whole kind of paper, not only the ones marked; the silent reader's digests are what
    they would have been with nobody giving feedback."""
    settings = load_settings({**env, "NEWSLETTER_SECRET_KEY": SECRET})
    write_list(
        workdir / "subscribers",
        "readers.yaml",
        "subscribers:\n"
        + "".join(
            f"  - {{email: {name}@example.org, topics: [efficient LLM inference]}}\n"
            for name in ("liker", "critic", "silent")
        ),
    )
    db = seeded_db
    client = TestClient(create_app(db, settings))
    run_day(db, settings, DAY, today=TODAY, dry_run=True)  # (syncs the lists)
    compose_day(db, settings, DAY, persist=True)
    later = (NEXT, LAST)
    before = {day: compose_for(db, settings, "silent@example.org", day) for day in later}
    marked = reader_mark(settings, db, client, "liker@example.org", "more")
    assert marked >= 5 and reader_mark(settings, db, client, "critic@example.org", "less") == marked

    def titles(name: str, day: date) -> list[str]:
        digest = compose_for(db, settings, f"{name}@example.org", day)
        return [card.title for card in digest.cards] if digest else []

    for day in later:
        assert titles("silent", day) == (
            [c.title for c in before[day].cards] if before[day] else []
        )
    # the next day's papers, none of them marked: "more" raises every one's probability, or
    # leaves it (none is closer to a liked paper); "fewer" lowers them, a whole kind of paper
    chance = {
        name: {r["title"]: r["probability"] for r in near_misses(db, name)}
        for name in ("liker", "critic", "silent")
    }
    assert chance["silent"].keys() == chance["liker"].keys() == chance["critic"].keys()
    up = [t for t in chance["silent"] if chance["liker"][t] > chance["silent"][t]]
    down = [t for t in chance["silent"] if chance["critic"][t] < chance["silent"][t]]
    assert all(chance["liker"][t] >= chance["silent"][t] for t in chance["silent"])
    assert all(chance["critic"][t] <= chance["silent"][t] for t in chance["silent"])
    assert len(up) >= 3 and len(down) >= 3
    # what the silent reader gets next, the critic's feedback keeps out, and `rank --for --all`
    # says so
    critic = {r["title"]: r for r in rank_for(db, "critic@example.org", NEXT, None, True)}
    pushed = [
        t
        for t in titles("silent", NEXT)
        if critic[t].get("kept_out", "").endswith("fewer like this")
    ]
    assert pushed and all(critic[t]["in_digest"] or t in pushed for t in titles("silent", NEXT))
    # a day the topic alone brings nothing: papers close to the liked ones, and why
    assert titles("silent", LAST) == []
    liked = compose_for(db, settings, "liker@example.org", LAST)
    assert liked is not None and len(liked.cards) >= 2
    for card in liked.cards:
        assert any(re.fullmatch(r"close to ‘.+’ you marked more like this", w) for w in card.why)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 2 * marked


def test_the_view_in_browser_page_is_the_readers_digest_and_its_shared_link_has_no_buttons(
    site, workdir
):
    settings, db, client = site
    text, html = digest_text(settings, db, workdir, "ada@example.org")
    (view,) = re.findall(r"^View in browser: (\S+)$", text, re.M)
    assert path_of(view, settings).startswith("/digest/")
    emailed = lxml.html.document_fromstring(html)
    page = client.get(path_of(view, settings))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    shown = lxml.html.document_fromstring(page.text)
    titles = [a.text_content() for a in emailed.xpath("//h2[@class='title']/a")]
    assert len(titles) == 4
    assert [a.text_content() for a in shown.xpath("//h2[@class='title']/a")] == titles
    hrefs = {a.text_content(): a.get("href") for a in shown.xpath("//a")}
    assert "View in browser" not in hrefs  # (it is the browser view)
    assert "More like this" in hrefs and "Unsubscribe" in hrefs  # the reader's own page
    shared = hrefs["this link"]
    assert path_of(shared, settings) != path_of(view, settings)

    passed_on = client.get(path_of(shared, settings))
    assert passed_on.status_code == 200
    other = lxml.html.document_fromstring(passed_on.text)
    assert [a.text_content() for a in other.xpath("//h2[@class='title']/a")] == titles
    words = {a.text_content() for a in other.xpath("//a")}
    assert not words & {"More like this", "Fewer like this", "Unsubscribe", "this link"}
    assert "ada@example.org" in page.text and "Hi Ada" in page.text
    assert "ada@example.org" not in passed_on.text and "Ada" not in passed_on.text

    token = path_of(view, settings).removeprefix("/digest/")
    for forged in (token[:-2] + "aa", "not-a-token"):
        assert client.get(f"/digest/{forged}").status_code == 400


def test_the_feed_is_valid_atom_with_the_papers_of_the_readers_last_30_days(site, workdir):
    settings, db, _ = site
    client = TestClient(create_app(db, settings, today=lambda: DAY + timedelta(days=29)))
    text, html = digest_text(settings, db, workdir, "ada@example.org")
    (feed,) = re.findall(r"^Your feed \(Atom\): (\S+)$", text, re.M)
    assert path_of(feed, settings).startswith("/feed/") and feed.endswith(".atom")
    empty = feedparser.parse(client.get(path_of(feed, settings)).content)
    assert not empty.bozo and empty.entries == []  # a dry-run stores no digest

    compose_day(db, settings, DAY, persist=True)  # stored, as a real run stores it
    compose_day(db, settings, NEXT, persist=True)
    answer = client.get(path_of(feed, settings))
    assert answer.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(answer.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.version == "atom10" and "quantization" in parsed.feed.title
    emailed = lxml.html.document_fromstring(html).xpath("//h2[@class='title']/a")
    titles = [" ".join(a.text_content().split()) for a in emailed]
    entries = [" ".join(e.title.split()) for e in parsed.entries]
    assert len(titles) == 4 and entries[-len(titles) :] == titles  # newest first
    for entry in parsed.entries:
        assert entry.link.startswith("https://arxiv.org/") and "Why: " in entry.summary
        assert entry.id.startswith(feed + "#")
    assert client.get("/feed/not-a-token.atom").status_code == 400
    later = TestClient(create_app(db, settings, today=lambda: DAY + timedelta(days=30)))
    recent = feedparser.parse(later.get(path_of(feed, settings)).content).entries
    # by then DAY's digest is older than 30 days
    assert [e.id for e in recent] == [e.id for e in parsed.entries if f"#{DAY}-" not in e.id]
    assert len(recent) < len(parsed.entries)


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (make test installs it)")
def test_the_browser_view_reads_on_a_phone_and_a_desktop(site, workdir):
    """The web page, the reader's own and the one passed on, laid out in headless Chromium."""
    settings, db, client = site
    text, _ = digest_text(settings, db, workdir, "ada@example.org")
    (view,) = re.findall(r"^View in browser: (\S+)$", text, re.M)
    own = client.get(path_of(view, settings)).text
    shared = lxml.html.document_fromstring(own).xpath("//a[text()='this link']")[0].get("href")
    pages = [own, client.get(path_of(shared, settings)).text]
    for width in (375, 1024):
        for result in measure(pages, width):
            assert result["scroll"] <= width and result["widest"] <= width, result
            assert result["column"]["width"] <= 600


# (no lone surrogates: ingest drops them, see tests/test_fetch.py)
TEXT = st.characters(exclude_categories=("Cs",))


@given(title=st.text(TEXT, min_size=1), abstract=st.text(TEXT), why=st.text(TEXT, min_size=1))
@example(title="\x00\x0b<b>&</b>\x1b]", abstract="\ufffe", why="]]>")
@example(title="Â¡ 0\x850 \x80", abstract="", why="0")  # (found by this test)
@hypothesis_settings(max_examples=60, deadline=None)
def test_no_character_of_a_paper_breaks_the_feed(title, abstract, why):
    """Titles, abstracts and reasons are anything the dumps hold: the feed stays valid Atom,
    each entry's title the paper's, less what XML cannot carry."""
    card = PaperCard(title, abstract, None, 1, 1, DAY, why=(why,), paper_id=7)
    other = PaperCard("Plain", "", None, 1, 2, DAY, why=("x",), paper_id=8)
    feed = atom_feed(
        "https://digest.example/feed/t.atom",
        "Trending Papers",
        (why,),
        [(DAY, card), (DAY, other)],
        datetime(2026, 3, 11, tzinfo=UTC),
        lambda day: datetime(day.year, day.month, day.day, 7, tzinfo=UTC),
    )
    parsed = feedparser.parse(feed)
    assert not parsed.bozo, parsed.bozo_exception
    assert [e.id.rsplit("-", 1)[1] for e in parsed.entries] == ["7", "8"]
    # the titles as the standard library reads them (feedparser "repairs" what looks like
    # mojibake, "Â¡" -> "¡"): the paper's, as the email shows it, less what XML cannot carry
    atom = "{http://www.w3.org/2005/Atom}"
    titles = [e.findtext(f"{atom}title") for e in ElementTree.fromstring(feed).iter(f"{atom}entry")]
    assert titles == [_xml_text(" ".join(title.split())) or "(untitled)", "Plain"]
