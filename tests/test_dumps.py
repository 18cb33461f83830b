"""The dump parser on the real seeds and on every messy variant a real dump shows."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.errors import DumpError
from newsletter.ingest.apidumps import parse_api_dump
from newsletter.ingest.dumps import find_code_url, infer_date, parse_dump
from newsletter.text import CONTROL, normalize_title

from .conftest import SEEDS, make_dump, seed_bytes

PAPER_COUNTS = {"000": 24, "001": 37, "002": 57, "003": 79, "004": 32}


@pytest.mark.parametrize("prefix", sorted(PAPER_COUNTS))
def test_every_seed_parses_into_alternating_titles_and_abstracts(prefix):
    dump = parse_dump(seed_bytes(prefix), prefix)
    assert len(dump.papers) == PAPER_COUNTS[prefix]
    assert [p.position for p in dump.papers] == list(range(1, len(dump.papers) + 1))
    for paper in dump.papers:
        assert len(paper.title) < 200, paper.title
        assert len(paper.abstract) > 300, paper.title


def test_seed_header_date_and_first_paper():
    dump = parse_dump(seed_bytes("000"), "000")
    assert (dump.month, dump.day) == (8, 8)
    assert dump.papers[0].title.startswith("SSDTrain: An Activation Offloading Framework")
    assert dump.papers[0].abstract.startswith("The growth rate of the GPU memory capacity")


def test_title_with_roman_numerals_and_full_stops_stays_a_title():
    dump = parse_dump(seed_bytes("004"), "004")
    titles = [p.title for p in dump.papers]
    assert any(
        t.startswith("The Zwicky Transient Facility Bright Transient Survey. III.") for t in titles
    )


def variants_of(raw: bytes) -> dict[str, bytes]:
    text = raw.decode("utf-8")
    return {
        "crlf": text.replace("\n", "\r\n").encode(),
        "bom": b"\xef\xbb\xbf" + raw,
        "trailing spaces": "\n".join(line + "  \t" for line in text.split("\n")).encode(),
        "stray blank lines": text.replace("\n\n", "\n\n \n\n", 7).encode(),
        "all of them": (
            b"\xef\xbb\xbf"
            + "\n".join(line + " " for line in text.split("\n")).replace("\n", "\r\n").encode()
        ),
    }


@pytest.mark.parametrize("variant", list(variants_of(b"x")))
def test_messy_variants_of_a_real_dump_parse_the_same(variant):
    raw = seed_bytes("001")
    clean = parse_dump(raw, "clean")
    messy = parse_dump(variants_of(raw)[variant], variant)
    assert messy.papers == clean.papers
    assert (messy.month, messy.day) == (clean.month, clean.day)
    assert messy.sha256 == clean.sha256  # the same dump, however it was saved


def test_missing_optional_header_lines():
    text = seed_bytes("001").decode().replace("byAK and the research community\n\n", "")
    dump = parse_dump(text.encode(), "no-byline")
    assert len(dump.papers) == 37
    bare = make_dump("Mar 11", [("A Title", "An abstract. " * 40)], header=False)
    assert parse_dump(bare.encode(), "bare").papers[0].title == "A Title"


def test_last_abstract_cut_mid_sentence_is_kept():
    text = seed_bytes("000").decode()
    cut = text[: text.rindex("Our method combines") + len("Our method comb")]
    dump = parse_dump(cut.encode(), "cut")
    assert len(dump.papers) == 24
    assert dump.papers[-1].abstract.endswith("Our method comb")


def test_title_at_the_end_without_abstract_is_a_paper():
    text = seed_bytes("000").decode().rstrip() + "\n\nA Final Paper Whose Abstract Was Cut Off\n"
    dump = parse_dump(text.encode(), "cut-title")
    assert len(dump.papers) == 25
    assert dump.papers[-1].title == "A Final Paper Whose Abstract Was Cut Off"
    assert dump.papers[-1].abstract == ""


def test_a_missing_abstract_in_the_middle_does_not_shift_the_rest():
    papers = [
        ("First Paper", "First abstract sentence. " * 20),
        ("Second Paper Without Abstract", ""),
        ("Third Paper", "Third abstract sentence. " * 20),
    ]
    dump = parse_dump(make_dump("Mar 11", papers).encode(), "gap")
    assert [(p.title, bool(p.abstract)) for p in dump.papers] == [
        ("First Paper", True),
        ("Second Paper Without Abstract", False),
        ("Third Paper", True),
    ]


def test_unicode_and_html_special_characters_in_titles():
    titles = ['I&S-ViT: <Inclusive> & "Stable" ViTs', "Über-Réseaux: 深度学习 ∑ attention"]
    dump = parse_dump(
        make_dump("Mar 11", [(t, "Abstract text here. " * 20) for t in titles]).encode(), "u"
    )
    assert [p.title for p in dump.papers] == titles


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"   \n\n  \r\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("Mar 11\n\nTitle\n\nAbstract".encode("utf-16"), "binary"),
        (b"\xff\xfe\xfa not utf-8 at all\n", "not UTF-8"),
        (b"Just some notes\n\nabout nothing in particular\n", "no date line"),
        (b"new\n\nSubscribe\n\nFeb 30\n\nTitle\n\nAbstract\n", "is not a date"),
        (b"new\n\nSubscribe\n\nMar 11\n\n", "no papers"),
    ],
)
def test_files_that_are_not_dumps_are_refused_with_one_line(data, message):
    with pytest.raises(DumpError) as raised:
        parse_dump(data, "seeds/bad.txt")
    text = str(raised.value)
    assert text.startswith("seeds/bad.txt")
    assert message in text
    assert "\n" not in text


def test_date_far_down_a_text_is_not_a_dump_date():
    text = "\n\n".join(f"Line {n} of some essay" for n in range(20)) + "\n\nMar 11\n\nTitle\n\nText"
    with pytest.raises(DumpError, match="no date line"):
        parse_dump(text.encode(), "essay.txt")


@pytest.mark.parametrize(
    "month, day, today, expected",
    [
        (3, 11, date(2026, 11, 24), date(2026, 3, 11)),
        (12, 31, date(2027, 1, 2), date(2026, 12, 31)),  # Dec 31 ingested on Jan 2: last year
        (11, 24, date(2026, 11, 24), date(2026, 11, 24)),  # today itself
        (11, 25, date(2026, 11, 24), date(2026, 11, 25)),  # tomorrow: the page's day ahead
        (11, 26, date(2026, 11, 24), date(2026, 11, 26)),  # two days ahead: still this year
        (11, 27, date(2026, 11, 24), date(2025, 11, 27)),  # three days ahead: a year ago
        (1, 1, date(2026, 12, 31), date(2027, 1, 1)),  # New Year's page seen on Dec 31
        (1, 3, date(2026, 12, 31), date(2026, 1, 3)),
        (2, 29, date(2026, 11, 24), date(2024, 2, 29)),  # the latest leap year
    ],
)
def test_year_inference(month, day, today, expected):
    assert infer_date(month, day, today) == expected


def test_explicit_year_overrides_and_impossible_dates_are_refused():
    dump = parse_dump(make_dump("Feb 29", [("T", "Abstract. " * 40)]).encode(), "leap.txt")
    assert dump.date(date(2026, 11, 24), year=2024) == date(2024, 2, 29)
    with pytest.raises(DumpError, match="leap.txt, line 11"):
        dump.date(date(2026, 11, 24), year=2025)


def test_a_dump_dated_in_the_far_future_is_refused():
    dump = parse_dump(make_dump("Mar 11, 2999", [("T", "Abstract. " * 40)]).encode(), "far.txt")
    with pytest.raises(DumpError, match=r"far.txt, line 11: dated 2999-03-11, in the future"):
        dump.date(date(2026, 11, 24))


def test_code_links_from_abstracts():
    assert find_code_url("Code is available at https://github.com/hustvl/ViG.") == (
        "https://github.com/hustvl/ViG"
    )
    assert find_code_url("See (https://gitlab.com/a/b), thanks") == "https://gitlab.com/a/b"
    assert (
        find_code_url("Our code: https://example.org/project/x") == "https://example.org/project/x"
    )
    assert find_code_url("Data at https://example.org/data only") is None
    # a LaTeX \\href leftover is no link (the seeds' TangleNAS abstract)
    tangle = (
        "The code for our work is openly accessible https://anonymous.4open.science/r/T-527C{here}"
    )
    assert find_code_url(tangle) is None
    dump = parse_dump(seed_bytes("004"), "004")
    assert dump.papers[0].code_url == "https://github.com/dyballa/dynamic-connectomes"


def test_normalized_titles_identify_a_paper():
    assert normalize_title("Gated  Linear Attention:\u00a0Transformers!") == normalize_title(
        "gated linear attention transformers"
    )
    assert normalize_title("I&S-ViT") != normalize_title("IS-ViT")


def test_all_seed_files_are_present():
    assert len(list(SEEDS.glob("*.txt"))) == 5


# --- No input can crash ingest --------------------------------------------------------------------


PIECES = [
    "Mar 11",
    "\n",
    "\n\n",
    "\r\n",
    "\ufeff",
    "\x00",
    "\x1b[31m",
    "\ue0ff",
    "https://github.com/a/b",
    "=?utf-8?b?8J+UkiA=?=",
    "Title",
    "We study things. It works. Code is here.",
    " " * 3,
    "é",
]


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=20)), max_size=30))
def test_any_text_is_a_dump_or_one_line_refusal(pieces):
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    try:
        dump = parse_dump(data, "x.txt")
    except DumpError as error:
        assert "\n" not in str(error) and str(error).startswith("x.txt")
        return
    assert dump.papers and all(p.title for p in dump.papers)
    for paper in dump.papers:  # no control character survives into what is stored and shown
        assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", paper.title + paper.abstract)


# --- Daily Papers API answers (`daily_papers-D.json`) -------------------------------------------

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
API_ITEM = st.fixed_dictionaries(
    {
        "paper": st.fixed_dictionaries(
            {
                "id": st.sampled_from(["2503.01234", "2503.0123v2", "hep-th/9901001"])
                | st.text(max_size=12),
                "title": st.text(min_size=1, max_size=30),
                "summary": st.text(max_size=40),
                "authors": st.lists(
                    st.fixed_dictionaries({"name": st.text(max_size=15)}) | ANY_JSON, max_size=4
                ),
                "upvotes": st.integers(-5, 10**6) | ANY_JSON,
            },
            optional={"githubRepo": st.text(max_size=30) | st.just("https://github.com/a/b")},
        ),
    },
    optional={"title": st.text(max_size=30), "numComments": ANY_JSON},
)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(API_ITEM, max_size=5) | st.lists(API_ITEM | ANY_JSON, max_size=3))
def test_any_api_answer_is_its_papers_or_one_line_refusal(answer):
    data = json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        parsed, day = parse_api_dump(data, "a.json", "daily_papers-2026-11-24.json")
    except DumpError as error:
        assert "\n" not in str(error) and str(error).startswith("a.json")
        return
    assert day == date(2026, 11, 24) and len(parsed.papers) == len(answer)
    expected = json.loads(data)  # the standard library's reading of the same bytes
    for position, (paper, item) in enumerate(zip(parsed.papers, expected, strict=True), start=1):
        shown = " ".join(CONTROL.sub(" ", item.get("title") or "").split())
        assert paper.position == position and paper.arxiv_id == item["paper"]["id"]
        assert paper.title == (shown or " ".join(CONTROL.sub(" ", item["paper"]["title"]).split()))
        for text in (paper.title, paper.abstract, *paper.authors):
            assert not CONTROL.search(text) and text == text.strip()
        assert paper.upvotes is None or paper.upvotes >= 0


def test_an_api_answer_is_named_by_its_date():
    answer = json.dumps([]).encode()
    with pytest.raises(DumpError, match=r"^papers\.json: a Daily Papers answer is named"):
        parse_api_dump(answer, "papers.json", "papers.json")
    with pytest.raises(DumpError, match=r"2026-02-30 is not a date"):
        parse_api_dump(answer, "x", "daily_papers-2026-02-30.json")


HOSTILE_TEXT = st.text(st.characters(codec=None, categories=None), max_size=20) | st.just(
    "x\ud800y"
)
HOSTILE_ITEM = st.fixed_dictionaries(
    {
        "paper": st.fixed_dictionaries(
            {
                "id": st.just("2503.01234"),
                "title": HOSTILE_TEXT,
                "summary": HOSTILE_TEXT,
                "authors": st.lists(st.fixed_dictionaries({"name": HOSTILE_TEXT}), max_size=3),
                "upvotes": st.integers() | st.integers(2**63 - 2, 2**64) | ANY_JSON,
            }
        )
    }
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HOSTILE_ITEM, max_size=4), st.integers(0, 3000))
def test_any_escaped_answer_is_stored_text_or_one_line(answer, depth):
    """JSON escapes can say what UTF-8 cannot (lone surrogates), numbers can be any size and
    nesting any depth: every answer is papers whose every field a database and a mail can hold,
    or one line."""
    data = ("[" * depth + json.dumps(answer) + "]" * depth).encode()
    try:
        parsed, _ = parse_api_dump(data, "a.json", "daily_papers-2026-11-24.json")
    except DumpError as error:
        assert "\n" not in str(error) and str(error).startswith("a.json")
        return
    for paper in parsed.papers:
        for text in (paper.title, paper.abstract, *paper.authors):
            text.encode("utf-8")  # no lone surrogate is left
            assert not CONTROL.search(text) and len(text) <= 10_000
        assert paper.upvotes is None or 0 <= paper.upvotes < 2**63


def test_brackets_inside_text_are_not_nesting():
    """Depth is counted before parsing (the parser's own limit prints noise from deep in its
    stack); brackets in a title, even after an escaped quote, are text, not depth."""
    title = 'Sets \\" ' + "[{" * 80
    answer = json.dumps([{"paper": {"id": "2503.01234", "title": title, "summary": "s"}}])
    parsed, _ = parse_api_dump(answer.encode(), "a.json", "daily_papers-2026-11-24.json")
    assert parsed.papers[0].title == title
    deep = ("[" * 65 + "]" * 65).encode()
    with pytest.raises(DumpError, match=r"^a\.json: JSON nested too deeply"):
        parse_api_dump(deep, "a.json", "daily_papers-2026-11-24.json")
