"""The fast paths give what the slow, obvious ones give: the template inlined once versus premailer
on every email, and MIME assembled directly versus the standard library's `EmailMessage`."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime

import lxml.html
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.compose import Outgoing
from newsletter.config import load_settings
from newsletter.message import build_message, message_bytes, serialize, unsubscribe_url
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


# --- No character of any input can crash a message or move a reader's values -----------------


# Characters that have broken message building before, mixed into arbitrary Unicode: the shapes'
# private-use stand-ins, encoded-words, line breaks, right-to-left marks, combining marks, emoji.
TRICKY = [
    "\ue000",
    "\ue001",
    "\ue002",
    "\ue0ff",
    "=?utf-8?b?8J+UkiBBY2NvdW50IGxvY2tlZA==?=",
    "\r\n",
    "\u202e",
    "e\u0301",
    "🧪",
    "=",
    ".",
    "&amp;",
    "<b>",
    "x" * 120,
]
any_text = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=12), st.sampled_from(TRICKY)
    ),
    max_size=6,
).map("".join)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=any_text, abstract=any_text, topic=any_text, name=any_text, matched=any_text)
def test_any_text_gives_each_reader_their_own_message(title, abstract, topic, name, matched):
    settings = load_settings({"NEWSLETTER_SECRET_KEY": "k" * 40})
    card = PaperCard(title or "t", abstract, (matched or "m",), None, 1, 1, date(2026, 3, 17))
    factory = MessageFactory(settings)
    when = datetime(2026, 3, 17, 7, 0, tzinfo=UTC)
    for n, address in enumerate(["ada@example.org", "bob@example.org"]):  # one shape, two readers
        outgoing = Outgoing(
            None,
            date(2026, 3, 17),
            address,
            name,
            (topic or "x",),
            "daily",
            f"<digest.{n}@d.example>",
            (card,),
        )
        subject, raw = factory.make(outgoing, when)
        rendered = Renderer().render(digest_content(settings, outgoing))
        reference = message_bytes(settings, rendered, address, name, outgoing.message_id, when)
        ours = email.message_from_bytes(raw, policy=email.policy.default)
        theirs = email.message_from_bytes(
            serialize(build_message(settings, rendered, address, name, outgoing.message_id, when)),
            policy=email.policy.default,
        )
        assert ours.defects == [] and subject == rendered.subject
        # Every header reads back as the standard library's message has it; the Subject as the
        # title was written (an encoded-word in a title is not decoded by the reader's client).
        assert [(k, str(v)) for k, v in ours.items()] == [(k, str(v)) for k, v in theirs.items()]
        assert str(ours["Subject"]) == " ".join(rendered.subject.split())
        for part, other in zip(ours.iter_parts(), theirs.iter_parts(), strict=True):
            assert part.defects == [] and part.get_content() == other.get_content()
        assert reference.split(b"\r\n\r\n", 1)[1] == raw.split(b"\r\n\r\n", 1)[1] or all(
            a.get_content() == b.get_content()
            for a, b in zip(
                ours.iter_parts(),
                email.message_from_bytes(reference, policy=email.policy.default).iter_parts(),
                strict=True,
            )
        )
        url = unsubscribe_url(settings, address)
        text = ours.get_body(("plain",)).get_content()
        assert url in text and url in str(ours["List-Unsubscribe"])
        other_url = unsubscribe_url(settings, "bob@example.org" if n == 0 else "ada@example.org")
        assert other_url not in raw.decode("ascii", "replace")
