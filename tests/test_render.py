"""The fast paths give what the slow, obvious ones give: the template inlined once versus premailer
on every email, and MIME assembled directly versus the standard library's `EmailMessage`."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime

import lxml.html
import pytest

from newsletter.compose import Outgoing
from newsletter.config import load_settings
from newsletter.message import build_message, message_bytes, serialize
from newsletter.render import DigestContent, PaperCard, Renderer
from newsletter.workers import MessageFactory, digest_content

CARDS = (
    PaperCard(
        'Graph <b>Nets</b> & "Friends" — über ∑',
        'Abstract with <tags> & "quotes". ' * 20,
        ("graph neural networks", "R&D"),
        "https://github.com/a/b?x=1&y=2",
        3,
        2,
        date(2026, 3, 11),
    ),
    PaperCard("Plain Title", "", ("x",), None, 1, 14, date(2026, 3, 17)),
    PaperCard("T" * 150, "Short.", ("x",), None, 1, 1, date(2026, 3, 17)),
)
NAMES = ["Ada Lovelace", 'Ädä "<x>", Lovelace', "", "Eve Bcc: victim@example.org"]


def content(name: str, papers=CARDS, frequency="daily") -> DigestContent:
    return DigestContent(
        date(2026, 3, 17),
        "ada@example.org",
        name,
        ("graph neural networks", "x"),
        frequency,
        papers,
        "https://digest.example/unsubscribe/abc?d=1&e=2",
    )


def canonical(html: str) -> bytes:
    return lxml.html.tostring(lxml.html.document_fromstring(html), encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("papers", [CARDS, CARDS[1:2]], ids=["three", "one"])
def test_inlining_the_template_once_gives_the_same_html_as_premailer_per_email(name, papers):
    once = Renderer().render(content(name, papers))
    each = Renderer(inline_once=False).render(content(name, papers))
    assert (once.subject, once.text) == (each.subject, each.text)
    # The same document; the bytes differ only in how a quote in text is escaped (&#34; or ").
    assert canonical(once.html) == canonical(each.html)
    assert once.html.replace("&#34;", '"') == each.html


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "sender", ["Trending Papers <papers@digest.example>", "Trénding Päpers <papers@digest.example>"]
)
def test_fast_mime_parses_back_to_the_same_message_as_email_message(name, sender):
    settings = load_settings({"NEWSLETTER_FROM": sender, "NEWSLETTER_SECRET_KEY": "k"})
    rendered = Renderer().render(content(name))
    when = datetime(2026, 3, 17, 7, 0, tzinfo=UTC)
    args = (settings, rendered, "ada@example.org", name, "<digest.1@digest.example>", when)
    fast = email.message_from_bytes(message_bytes(*args), policy=email.policy.default)
    slow = email.message_from_bytes(serialize(build_message(*args)), policy=email.policy.default)
    assert fast.defects == [] and [p.defects for p in fast.walk()] == [[], [], []]
    assert fast.keys() == slow.keys()
    for header in slow:
        if header in ("From", "To"):
            assert [(a.display_name, a.addr_spec) for a in fast[header].addresses] == [
                (a.display_name, a.addr_spec) for a in slow[header].addresses
            ]
        else:
            assert str(fast[header]) == str(slow[header]), header
    assert fast.get_content_type() == slow.get_content_type() == "multipart/alternative"
    for a, b in zip(fast.iter_parts(), slow.iter_parts(), strict=True):
        assert a.get_content_type() == b.get_content_type()
        assert (
            a["Content-Transfer-Encoding"] == b["Content-Transfer-Encoding"] == "quoted-printable"
        )
        assert a.get_content() == b.get_content()
    raw = message_bytes(*args)
    assert raw.isascii() and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 78


@pytest.mark.parametrize(
    "subject",
    [
        "Trending papers — graph neural networks",
        "ü" * 200,
        "混合专家模型的稀疏训练与推理：一个系统的综述 " * 3,
        "Emoji 🧪🧬 and combining é and  spaces  inside",
        "A plain ASCII subject",
    ],
)
def test_fast_subject_encoding_decodes_to_the_subject(subject):
    settings = load_settings({"NEWSLETTER_SECRET_KEY": "k"})
    rendered = Renderer().render(content("Ada"))
    rendered = type(rendered)(**{**vars(rendered), "subject": subject})
    when = datetime(2026, 3, 17, 7, 0, tzinfo=UTC)
    raw = message_bytes(settings, rendered, "ada@example.org", "Ada", "<d.1@x.example>", when)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["Subject"]) == " ".join(subject.split())
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    (line,) = [h for h in raw.split(b"\r\n") if h.startswith(b"Subject: ")]
    for word in line.split()[1:]:
        assert len(word) <= 75 or b"=?" not in word  # RFC 2047: encoded-words of <= 75


READERS = [
    ("ada@example.org", "Ada Lovelace"),
    ("b+tag@example.org", ""),
    ("c.d@sub.example.org", 'Ädä "<x>" & Co'),
    ("e@example.org", "Émile " + "Zola" * 60),
    ("=f=@example.org", "Ünïcödé 名前 🧪"),
    ("jörg@example.org", "Jörg"),  # an internationalized address: the `email` package's path
]


@pytest.mark.parametrize("address, name", READERS)
def test_a_filled_shape_is_exactly_the_digest_rendered_for_that_reader(address, name):
    renderer = Renderer()
    url = "https://d.example/unsubscribe/t?a=1&b=2"
    reader = DigestContent(
        date(2026, 3, 17), address, name, ("graph neural networks", "x"), "weekly", CARDS, url
    )
    other = DigestContent(
        date(2026, 3, 17), "z@example.org", name and "Zed", reader.topics, "weekly", CARDS, "u"
    )
    assert renderer.shape(other).fill(name, address, url) == renderer.render(reader)


@pytest.mark.parametrize("papers", [CARDS, CARDS[1:2]], ids=["three", "one"])
def test_a_shared_shape_gives_each_reader_the_message_rendered_for_them_alone(papers):
    settings = load_settings(
        {"NEWSLETTER_SECRET_KEY": "k", "NEWSLETTER_BASE_URL": "https://d.example/a=b&c"}
    )
    factory = MessageFactory(settings)
    when = datetime(2026, 3, 17, 7, 0, tzinfo=UTC)
    for n, (address, name) in enumerate(READERS * 2):  # the second round comes from the cache
        outgoing = Outgoing(
            None,
            date(2026, 3, 17),
            address,
            name,
            ("graph neural networks", "x"),
            "daily",
            f"<digest.{n}@d.example>",
            papers,
        )
        subject, raw = factory.make(outgoing, when)
        rendered = Renderer().render(digest_content(settings, outgoing))
        reference = message_bytes(settings, rendered, address, name, outgoing.message_id, when)
        fast = email.message_from_bytes(raw, policy=email.policy.default)
        slow = email.message_from_bytes(reference, policy=email.policy.default)
        assert subject == rendered.subject
        assert [(k, str(v)) for k, v in fast.items()] == [(k, str(v)) for k, v in slow.items()]
        for a, b in zip(fast.iter_parts(), slow.iter_parts(), strict=True):
            assert a.defects == [] and a.get_content() == b.get_content()
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76  # RFC 2045's QP lines
    assert len(factory._shapes) == 2  # with a name and without
