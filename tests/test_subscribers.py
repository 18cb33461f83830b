"""Subscriber lists: YAML and CSV, every bad row named by file and line, all or nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from newsletter.errors import NewsletterError, SubscriberListError
from newsletter.records import Preferences
from newsletter.store.db import UNSUBSCRIBED, Subscriber
from newsletter.subscribers.lists import load_lists
from newsletter.subscribers.sync import sync_subscribers

from .conftest import ROOT, write_list

GOOD_YAML = """\
subscribers:
  - email: Ada@Example.org
    name: Ada Lovelace
    topics: [quantization, efficient LLM inference]
    exclude: [survey]
    max_papers: 3
  - email: bob@example.org
    topics: diffusion models; 3D rendering
    frequency: Weekly
"""
GOOD_CSV = """\
email,name,topics,exclude,max_papers,frequency
carol@example.net,"Carol, PhD",vision transformers;pruning,,5,daily
dan@example.net,,graph neural networks,survey;benchmark,,
"""


def test_yaml_and_csv_lists_load_with_defaults(tmp_path):
    write_list(tmp_path, "a.yaml", GOOD_YAML)
    write_list(tmp_path, "b.csv", GOOD_CSV)
    rows = {row.email: row for row in load_lists([tmp_path])}
    assert set(rows) == {
        "ada@example.org",
        "bob@example.org",
        "carol@example.net",
        "dan@example.net",
    }
    ada, bob, carol, dan = (rows[e] for e in sorted(rows))
    assert ada.preferences == Preferences(
        ("quantization", "efficient LLM inference"), ("survey",), 3, "daily"
    )
    assert ada.source.endswith("a.yaml, line 2")
    assert bob.preferences.topics == ("diffusion models", "3D rendering")
    assert bob.preferences.frequency == "weekly"
    assert carol.name == "Carol, PhD"
    assert carol.preferences.topics == ("vision transformers", "pruning")
    assert dan.preferences.max_papers == 10
    assert dan.preferences.exclude == ("survey", "benchmark")
    assert dan.source.endswith("b.csv, line 3")


def test_shipped_example_lists_are_valid():
    rows = load_lists([ROOT / "subscribers"])
    assert len(rows) >= 6
    assert {row.preferences.frequency for row in rows} == {"daily", "weekly"}


@pytest.mark.parametrize(
    "name, text, expected",
    [
        (
            "l.yaml",
            "subscribers:\n  - email: not-an-address\n    topics: [x]\n",
            "l.yaml, line 2: invalid address 'not-an-address'",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x]\n    frequency: hourly\n",
            "l.yaml, line 2: frequency 'hourly' is not one of daily, weekly",
        ),
        (
            "l.csv",
            "email,topics,on_empty\na@example.org,x,trending\nb@example.org,y,popular\n",
            "l.csv, line 3: on_empty 'popular' is not one of skip, trending",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x]\n    max_papers: -3\n",
            "l.yaml, line 2: max_papers -3 must be from 1 to 100",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x]\n    colour: blue\n",
            "l.yaml, line 2: unknown field 'colour'",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n",
            "l.yaml, line 2: topics: at least one",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x]\n"
            "  - email: A@example.org\n    topics: [y]\n",
            "l.yaml, line 4: duplicate address a@example.org (first at",
        ),
        ("l.yaml", "subscribers:\n  - email: [unclosed\n", "l.yaml, line 3: invalid YAML"),
        (
            "l.csv",
            "email,topics,shoe_size\na@example.org,x,42\n",
            "l.csv, line 1: unknown column 'shoe_size'",
        ),
        (
            "l.csv",
            "email,topics\na@example.org,x\nb@example,y\n",
            "l.csv, line 3: invalid address 'b@example'",
        ),
        (
            "l.csv",
            "email,topics,max_papers\na@example.org,x,lots\n",
            "l.csv, line 2: max_papers 'lots'",
        ),
        ("l.csv", "name,topics\nAda,x\n", "l.csv, line 1: missing column 'email'"),
        # Silent coercions are errors naming the place now.
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x]\n    topics: [y]\n",
            "l.yaml, line 4: invalid YAML: key 'topics' given twice (first on line 3)",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    name: {first: Ada}\n    topics: [x]\n",
            "l.yaml, line 2: name must be a single value",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x, ~]\n",
            "l.yaml, line 2: topics: '~' has no word in it",
        ),
        (
            "l.yaml",
            "subscribers:\n  - email: a@example.org\n    topics: [x, {y: z}]\n",
            "l.yaml, line 2: topics: each item must be text",
        ),
        (
            "l.csv",
            "email,topics,email\na@example.org,x,b@example.org\n",
            "l.csv, line 1: column 'email' given twice",
        ),
        (
            "l.yaml",
            "base: &t [a, b]\nsubscribers:\n  - email: a@example.org\n    topics: *t\n",
            "l.yaml, line 4: invalid YAML: aliases (*name) are not allowed",
        ),
    ],
)
def test_bad_rows_are_named_by_file_and_line(tmp_path, name, text, expected):
    path = write_list(tmp_path, name, text)
    with pytest.raises(SubscriberListError) as raised:
        load_lists([path])
    assert str(path.parent / expected) in raised.value.problems[0]
    assert all("\n" not in problem for problem in raised.value.problems)


def test_a_list_with_bad_rows_changes_nothing(db, tmp_path):
    write_list(tmp_path, "a.yaml", GOOD_YAML)
    sync_subscribers(db, load_lists([tmp_path]))
    write_list(tmp_path, "a.yaml", GOOD_YAML.replace("max_papers: 3", "max_papers: 4"))
    write_list(tmp_path, "b.csv", "email,topics\nnew@example.org,x\nbroken,y\n")
    with pytest.raises(SubscriberListError):
        load_lists([tmp_path])
    with db.session() as session:
        rows = {s.email: s.max_papers for s in session.scalars(select(Subscriber))}
    assert rows == {"ada@example.org": 3, "bob@example.org": 10}


def test_sync_updates_delists_and_keeps_unsubscribes(db, tmp_path):
    write_list(tmp_path, "a.yaml", GOOD_YAML)
    first = sync_subscribers(db, load_lists([tmp_path]))
    assert (first.added, first.updated) == (2, 0)
    with db.session() as session:
        ada = session.scalar(select(Subscriber).where(Subscriber.email == "ada@example.org"))
        ada.status = UNSUBSCRIBED
    write_list(
        tmp_path,
        "a.yaml",
        GOOD_YAML.replace("max_papers: 3", "max_papers: 7").split("  - email: bob")[0],
    )
    second = sync_subscribers(db, load_lists([tmp_path]), allow_drop=True)  # bob: 1 of 1 active
    assert (second.added, second.updated, second.delisted) == (0, 1, 1)
    with db.session() as session:
        rows = {
            s.email: (s.status, s.listed, s.max_papers) for s in session.scalars(select(Subscriber))
        }
    assert rows == {
        "ada@example.org": ("unsubscribed", True, 7),
        "bob@example.org": ("active", False, 10),
    }


def test_names_cannot_carry_line_breaks(tmp_path):
    write_list(
        tmp_path,
        "a.yaml",
        'subscribers:\n  - email: eve@example.org\n    name: "Eve\\r\\nBcc: victim@example.org"\n'
        "    topics: [x]\n",
    )
    (row,) = load_lists([tmp_path])
    assert row.name == "Eve Bcc: victim@example.org"


def test_yaml_words_are_taken_as_written(tmp_path):
    write_list(
        tmp_path,
        "a.yaml",
        "subscribers:\n  - email: a@example.org\n    name: No\n"
        "    topics: [yes, no, on, 1.10, 2024-05-01, null models]\n    max_papers: 010\n",
    )
    (row,) = load_lists([tmp_path])
    assert row.name == "No"
    assert row.preferences.topics == ("yes", "no", "on", "1.10", "2024-05-01", "null models")
    assert row.preferences.max_papers == 10


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        bomb.append(
            f"{'abcdefghi'[n]}: &{'abcdefghi'[n]} ["
            + ", ".join([f"*{'abcdefghi'[n - 1]}"] * 9)
            + "]"
        )
    text = "\n".join(bomb) + "\nsubscribers:\n  - email: a@example.org\n    topics: *i\n"
    write_list(tmp_path, "bomb.yaml", text)
    with pytest.raises(SubscriberListError, match="aliases"):
        load_lists([tmp_path])


def test_csv_list_cells_split_at_semicolons_only(tmp_path):
    write_list(
        tmp_path,
        "l.csv",
        'email,name,topics\na@example.org,"Lovelace; Ada","graph networks, GNNs;""C; C++"";Rust"\n',
    )
    (row,) = load_lists([tmp_path])
    assert row.name == "Lovelace; Ada"
    assert row.preferences.topics == ("graph networks, GNNs", "C; C++", "Rust")


def test_an_empty_or_missing_folder_delists_nobody(db, tmp_path):
    write_list(tmp_path, "a.yaml", GOOD_YAML)
    sync_subscribers(db, load_lists([tmp_path]))
    (tmp_path / "a.yaml").unlink()
    with pytest.raises(NewsletterError, match="no subscriber lists"):
        load_lists([tmp_path])
    with pytest.raises(NewsletterError, match="no such file or folder"):
        load_lists([tmp_path / "gone"])
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.listed))) == {True}


def test_a_sync_that_drops_most_readers_is_refused_unless_asked(db, tmp_path):
    rows = "".join(f"r{n}@example.org,x\n" for n in range(10))
    write_list(tmp_path, "l.csv", "email,topics\n" + rows)
    sync_subscribers(db, load_lists([tmp_path]))
    write_list(tmp_path, "l.csv", "email,topics\n" + rows.split("\n", 4)[-1])  # 6 of 10 left
    assert sync_subscribers(db, load_lists([tmp_path])).delisted == 4
    write_list(tmp_path, "l.csv", "email,topics\nr9@example.org,x\n")
    with pytest.raises(NewsletterError, match="no longer name 5 of the 6 active subscribers"):
        sync_subscribers(db, load_lists([tmp_path]))
    with db.session() as session:
        assert session.scalar(select(func.count()).where(Subscriber.listed)) == 6
    assert sync_subscribers(db, load_lists([tmp_path]), allow_drop=True).delisted == 5


def test_syncing_one_file_leaves_the_other_files_readers_alone(db, tmp_path):
    write_list(tmp_path, "a.yaml", GOOD_YAML)
    write_list(tmp_path, "b.csv", GOOD_CSV)
    sync_subscribers(db, load_lists([tmp_path]))
    one = tmp_path / "b.csv"
    report = sync_subscribers(db, load_lists([one]), scope=[one])
    assert report.delisted == 0 and report.unchanged == 2
    with db.session() as session:
        assert set(session.scalars(select(Subscriber.listed))) == {True}


LIST_PIECES = [
    "subscribers:\n",
    "  - email: a@example.org\n",
    "    topics: [x, yes, ~]\n",
    "    name: ",
    "&a ",
    "*a",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "\n",
    "\t",
    "email,topics\n",
    "b@example.org,x;y\n",
    '"',
    ",",
    ";",
    "\x00",
    "\ue0ff",
    "jörg@bücher.example",
    "!!python/object:os.system ",
    "max_papers: 010\n",
    "frequency: weekly\n",
    "<<: *a\n",
]


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["l.yaml", "l.csv"]),
    st.lists(st.one_of(st.sampled_from(LIST_PIECES), st.text(max_size=10)), max_size=25),
)
def test_any_list_text_loads_or_is_refused_line_by_line(tmp_path_factory, name, pieces):
    folder = tmp_path_factory.mktemp("lists")
    (folder / name).write_text("".join(pieces), encoding="utf-8", errors="surrogatepass")
    try:
        rows = load_lists([folder])
    except SubscriberListError as error:
        assert all("\n" not in p and p.startswith(str(folder / name)) for p in error.problems)
        return
    for row in rows:  # whatever loads is text as written, never a guessed type
        assert all(
            isinstance(t, str) and t for t in row.preferences.topics + row.preferences.exclude
        )
        assert isinstance(row.name, str) and "\n" not in row.name


ADDRESS_PIECES = [
    "a",
    "Z",
    "0",
    ".",
    "..",
    "@",
    "@@",
    "+",
    "-",
    "_",
    "'",
    '"',
    " ",
    "é",
    "ü",
    "xn--bcher-kva",
    "example",
    ".org",
    ".ORG",
    "b" * 64,
    "c" * 70,
    "localhost",
    "[",
    "]",
    "(",
    ")",
    ",",
    "\\",
    "=",
    "~",
    "!",
    "%",
    "*",
    "`",
]


@example("Ada@Example.ORG")
@example("a.b+tag@sub.example.org")
@example("user@xn--bcher-kva.example")
@example("user@BÜCHER.example")
@example("a..b@example.org")
@example(".a@example.org")
@example("a.@example.org")
@example("a@example")
@example("a@localhost")
@example("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@example.org")
@example("ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc@example.org")
@example(
    "x@ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd.eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff.gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg.org"
)
@example("a@-example.org")
@example("o'brien@example.ie")
@example("a@example.org.")
@example("a b@example.org")
@example('"quoted"@example.org')
@example("jörg@example.org")
@hypothesis_settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ADDRESS_PIECES), min_size=1, max_size=12).map("".join))
def test_the_quick_address_check_agrees_with_email_validator(text):
    from newsletter.subscribers.addresses import _validated, normalize_address

    try:  # (an address is read without the spaces around it: "a@a.org " is a@a.org)
        expected = _validated(text.strip())
    except NewsletterError:
        expected = None
    try:
        ours = normalize_address(text)
    except NewsletterError:
        ours = None
    assert ours == expected
