"""What a reader's client gets: the template inlined once gives what premailer on every email
gives; a digest rendered once and filled in for each reader gives what rendering it for that
reader alone gives; and each message, read back with the standard library's `email` parser, is
exactly that reader's digest, whatever the titles, abstracts, names and topics hold."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
import string
from dataclasses import replace
from datetime import UTC, date, datetime
from email.header import decode_header, make_header
from email.utils import parseaddr

import lxml.html
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.config import load_settings
from newsletter.delivery.workers import MessageFactory, digest_content
from newsletter.mail.mime import _qp_piece, _value_piece
from newsletter.mail.outgoing import Outgoing
from newsletter.mail.render import DigestContent, PaperCard, ReaderLinks, Renderer
from newsletter.mail.tokens import mailbox_address, reader_links
from newsletter.text import clean_name

CARDS = (
    PaperCard(
        'Graph <b>Nets</b> & "Friends" — über ∑',
        'Abstract with <tags> & "quotes". ' * 20,
        "https://github.com/a/b?x=1&y=2",
        3,
        2,
        date(2026, 3, 11),
        why=("graph neural networks", "R&D"),
        paper_id=1,
    ),
    PaperCard("Plain Title", "", None, 1, 14, date(2026, 3, 17), why=("x",), paper_id=2),
    PaperCard("T" * 150, "Short.", None, 1, 1, date(2026, 3, 17), why=("x",), paper_id=3),
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
        links("https://digest.example", "abc?d=1&e=2", papers),
    )


def links(base: str, token: str, papers) -> ReaderLinks:
    """Links as a reader's would be (any text: the renderer only places them)."""
    return ReaderLinks(
        f"{base}/unsubscribe/{token}",
        f"{base}/digest/{token}",
        f"{base}/feed/{token}.atom",
        tuple(f"{base}/more/{token}{card.paper_id}" for card in papers),
        tuple(f"{base}/less/{token}{card.paper_id}" for card in papers),
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


def parse(raw: bytes) -> email.message.EmailMessage:
    if raw.isascii():
        return email.message_from_bytes(raw, policy=email.policy.default)
    # RFC 6532: UTF-8 in the headers (the bytes parser reads headers as ASCII)
    return email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)


def as_decoded(text: str) -> str:
    """A part's text as a reader's client gets it back: line ends as LF, ending in one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def raw_field(raw: bytes, field: str) -> str:
    """A header field's value as written, unfolded."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8") + "\r\n"
    value = re.search(rf"^{field}: (.*?)\r\n(?! )", head, re.M | re.S).group(1)
    return value.replace("\r\n ", " ")


def display_name(raw: bytes, field: str) -> str:
    """The display name of an address field as RFC 2047 has it read (`decode_header` joins
    adjacent encoded-words; the newer header parser puts a space between them in a phrase)."""
    display = raw_field(raw, field).rpartition(" <")[0]
    if "=?" not in display:
        return parseaddr(f"{display} <x@y>")[0]
    return str(make_header(decode_header(display)))


def check_message(settings, raw: bytes, outgoing: Outgoing, subject: str) -> None:
    """`raw` parses back, with the standard library, to the digest rendered for this reader
    alone: every header, both parts; every line within the RFCs' limits."""
    address = mailbox_address(outgoing.email)
    rendered = Renderer().render(digest_content(settings, replace(outgoing, email=address)))
    message = parse(raw)
    assert subject == rendered.subject
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    assert str(message["Subject"]) == " ".join(rendered.subject.split())
    (to,) = message["To"].addresses
    assert (display_name(raw, "To"), to.addr_spec) == (clean_name(outgoing.name), address)
    (sender,) = message["From"].addresses
    assert (display_name(raw, "From"), sender.addr_spec) == parseaddr(settings.sender)
    assert message["Message-ID"] == outgoing.message_id
    ids = tuple(card.paper_id for card in outgoing.cards)
    own = reader_links(settings, outgoing.subscriber_id, outgoing.day, ids)
    url = own.unsubscribe
    assert str(message["List-Unsubscribe"]).startswith(f"<{url}>, <mailto:")
    # no address of the reader's in any of our URLs, in any encoding
    for link in re.findall(r"https?://[^\s\"'<>]+", rendered.html + rendered.text + str(url)):
        for form in _encodings(outgoing.email):
            assert form not in link.lower(), (form, link)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text["Content-Transfer-Encoding"] == html["Content-Transfer-Encoding"]
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert as_decoded(text.get_content()) == as_decoded(rendered.text)
    assert as_decoded(html.get_content()) == as_decoded(rendered.html)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # RFC 2045's QP lines
    for line in head.split(b"\r\n"):
        words = re.findall(rb"=\?[^?]*\?[bBqQ]\?[^?]*\?=", line)
        assert all(len(word) <= 75 for word in words)  # RFC 2047 §2
        assert not words or len(line) <= 76
        assert len(line) <= 998


def _encodings(address: str) -> set[str]:
    """The address as it could hide in a URL: as is, %-escaped, in base64 (any padding or
    alphabet), hex."""
    import base64
    import urllib.parse

    raw = address.encode()
    forms = {address.lower(), urllib.parse.quote(address).lower(), raw.hex()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
        forms.add(encode(raw).decode().rstrip("=").lower()[:12])
    local = address.split("@")[0].lower()
    return {f for f in forms if len(f) >= 6} | ({local} if len(local) >= 6 else set())


def outgoing_for(address: str, name: str, papers=CARDS, n: int = 0, topics=None) -> Outgoing:
    return Outgoing(
        None,
        n + 1,
        date(2026, 3, 17),
        address,
        name,
        topics or ("graph neural networks", "x"),
        "daily",
        f"<digest.{n}@d.example>",
        papers,
    )


WHEN = datetime(2026, 3, 17, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "sender", ["Trending Papers <papers@digest.example>", "Trénding Päpers <papers@digest.example>"]
)
def test_a_message_parses_back_to_the_digest_rendered_for_its_reader(name, sender):
    settings = load_settings({"NEWSLETTER_FROM": sender, "NEWSLETTER_SECRET_KEY": "k"})
    outgoing = outgoing_for("ada@example.org", name)
    subject, raw = MessageFactory(settings).make(outgoing, WHEN)
    check_message(settings, raw, outgoing, subject)
    assert raw.isascii()


@pytest.mark.parametrize(
    "title",
    [
        "Trending papers — graph neural networks",
        "ü" * 200,
        "混合专家模型的稀疏训练与推理：一个系统的综述 " * 3,
        "Emoji 🧪🧬 and combining é and  spaces  inside",
        "A plain ASCII title, " * 5,
        "=?utf-8?b?8J+UkiBBY2NvdW50IGxvY2tlZA==?= looks encoded",
    ],
)
def test_a_subject_is_folded_encoded_words_that_decode_to_it(title):
    settings = load_settings({"NEWSLETTER_SECRET_KEY": "k"})
    card = PaperCard(title, "", None, 1, 1, date(2026, 3, 17), why=("x",), paper_id=1)
    outgoing = outgoing_for("ada@example.org", "Ada", papers=(card,))
    subject, raw = MessageFactory(settings).make(outgoing, WHEN)
    check_message(settings, raw, outgoing, subject)
    assert str(parse(raw)["Subject"]) == " ".join(subject.split())
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    field = re.search(r"^Subject: .*?(?=\r\n\S)", head, re.M | re.S).group(0)
    assert max(len(line) for line in field.split("\r\n")) <= 76
    assert raw_field(raw, "Subject") in field.replace("\r\n ", " ")
    if "=?" in title or not title.isascii():
        assert "=?utf-8?b?" in field and title not in field  # never written as it is


def test_the_plain_text_signature_is_dash_dash_space_and_outlook_gets_a_fixed_column():
    settings = load_settings({"NEWSLETTER_SECRET_KEY": "k"})
    _, raw = MessageFactory(settings).make(outgoing_for("ada@example.org", "Ada"), WHEN)
    text, html = (part.get_content() for part in parse(raw).iter_parts())
    lines = text.splitlines()
    assert lines.count("-- ") == 1 and "--" not in lines
    assert lines[lines.index("-- ") + 1].startswith("You receive this daily digest")
    # Outlook for Windows ignores max-width: a 600 px table in conditional comments holds the
    # column there, and only there.
    opened = html.index('<!--[if mso]><table role="presentation" align="center" width="600"')
    column = html.index('class="column"')
    closed = html.index("<!--[if mso]></td></tr></table><![endif]-->")
    assert opened < column < closed and html.count("<!--[if mso]>") == 2
    assert "max-width:600px" in html.replace(" ", "")


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
    url = links("https://d.example", "t?a=1&b=2", CARDS)
    reader = DigestContent(
        date(2026, 3, 17), address, name, ("graph neural networks", "x"), "weekly", CARDS, url
    )
    other = DigestContent(
        date(2026, 3, 17),
        "z@example.org",
        name and "Zed",
        reader.topics,
        "weekly",
        CARDS,
        links("u", "v", CARDS),
    )
    assert renderer.shape(other).fill(name, address, url) == renderer.render(reader)


@pytest.mark.parametrize("papers", [CARDS, CARDS[1:2]], ids=["three", "one"])
def test_a_shared_shape_gives_each_reader_the_message_rendered_for_them_alone(papers):
    settings = load_settings(
        {"NEWSLETTER_SECRET_KEY": "k", "NEWSLETTER_BASE_URL": "https://d.example/a=b&c"}
    )
    factory = MessageFactory(settings)
    for n, (address, name) in enumerate(READERS * 2):  # the second round comes from the cache
        outgoing = outgoing_for(address, name, papers, n)
        subject, raw = factory.make(outgoing, WHEN)
        check_message(settings, raw, outgoing, subject)
        assert raw.isascii() == address.isascii()  # only a UTF-8 address is written as UTF-8
    assert len(factory._shapes) == 2  # with a name and without


# --- No character of any input can crash a message or move a reader's values -----------------


# Characters that have broken message building before, mixed into arbitrary Unicode: the
# private-use characters older versions reserved, encoded-words, line breaks, right-to-left
# marks, combining marks, emoji, quoted-printable's "=", SMTP's leading ".".
TRICKY = [
    "\ue000",
    "\ue001",
    "\ue002",
    "\ue0ff",
    "=?utf-8?b?8J+UkiBBY2NvdW50IGxvY2tlZA==?=",
    "\r\n",
    "\r",
    "\u202e",
    "e\u0301",
    "🧪",
    "=",
    ".",
    "&amp;",
    "<b>",
    "{{ email }}",
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
# found by this test: a line ending in a space before a line break came out 78 characters long
@example(title="\r", abstract="", topic="\x80", name="", matched="")
def test_any_text_gives_each_reader_their_own_message(title, abstract, topic, name, matched):
    settings = load_settings({"NEWSLETTER_SECRET_KEY": "k" * 40})
    card = PaperCard(
        title or "t", abstract, None, 1, 1, date(2026, 3, 17), why=(matched or "m",), paper_id=1
    )
    factory = MessageFactory(settings)
    readers = ["ada@example.org", "zoë@example.org"]  # (SMTPUTF8 for the second)
    for n, address in enumerate(readers):  # one shape, two readers
        outgoing = outgoing_for(address, name, (card,), n, topics=(topic or "x",))
        subject, raw = factory.make(outgoing, WHEN)
        check_message(settings, raw, outgoing, subject)
        for other in readers:
            if other != address:
                n_other = readers.index(other)
                others = reader_links(settings, n_other + 1, WHEN.date(), (1,))
                for link in others.values().values():
                    assert link.encode() not in raw
    assert len(factory._shapes) == 1


@pytest.mark.parametrize(
    "abstract, starts",
    [
        (
            "Large models are costly. Many methods exist. We propose X, which halves the cost. "
            "It works.",
            "We propose X, which halves the cost. It works.",
        ),
        (
            "Weight sharing is a fundamental concept in NAS. This paper aims to bridge the gap by "
            "proposing a scheme.",
            "This paper aims to bridge the gap by proposing a scheme.",
        ),
        ("Background only. Nothing more is said here.", "Background only."),
        ("We introduce Y. More follows.", "We introduce Y."),
    ],
)
def test_the_excerpt_starts_at_the_sentence_that_states_the_contribution(abstract, starts):
    card = PaperCard("T", abstract, None, 1, 1, date(2026, 3, 17), why=("x",), paper_id=1)
    assert card.excerpt.startswith(starts)


def test_a_page_summary_is_the_excerpt_and_a_malformed_code_link_is_not_a_link():
    card = PaperCard(
        "T",
        "Background. We propose Z.",
        "https://anonymous.4open.science/r/TangleNAS-527C{here",
        1,
        1,
        date(2026, 3, 17),
        ai_summary="Z makes search 10x cheaper.",
        why=("x",),
        paper_id=1,
    )
    assert card.excerpt == "Z makes search 10x cheaper."
    assert card.code_link is None
    rendered = Renderer().render(content("Ada", papers=(card,)))
    assert "4open.science" not in rendered.html and "4open.science" not in rendered.text
    good = replace(card, code_url="https://github.com/org/repo_name-1.0")
    assert good.code_link == good.code_url
    assert (
        'href="https://github.com/org/repo_name-1.0"'
        in Renderer().render(content("Ada", papers=(good,))).html
    )


@given(value=st.text(alphabet=st.sampled_from(".=-/:?&é €\t" + string.ascii_letters), max_size=90))
@example(value=".")
@example(value="https://digest.example/more/1-7hy-2o-oyucpptfms5hfvbp")
def test_a_readers_link_is_encoded_as_the_encoder_would(value):
    """Links skip the quoted-printable encoder (they are their own encoding); anything that is
    not left as it is still goes through it, byte for byte the same."""
    assert _value_piece(value or "x") == _qp_piece((value or "x").encode("utf-8"))
