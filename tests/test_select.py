"""Selection across dates: first digests, catch-up, the 7-day cap, weekly Mondays, already-sent
papers and exclusions, observed through the digests a run composes."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import update

from newsletter.digests.compose import compose_day
from newsletter.ingest.intake import ingest_paths
from newsletter.store.db import SENT, Digest
from newsletter.subscribers.lists import load_lists
from newsletter.subscribers.sync import sync_subscribers

from .conftest import TODAY, abstract_about, make_dump, write_list

# March 2026: the 2nd and the 9th are Mondays.
DAYS = [date(2026, 3, d) for d in range(2, 21)]


def gnn_title(day: date) -> str:
    return f"Graph Neural Networks for Molecules, Part {day.day}"


@pytest.fixture(autouse=True)
def words_only(monkeypatch):
    """Which papers a date's digests may hold is what these tests check, not how relevance is
    judged: the ranker goes by words alone here (as without the `semantic` extra), which spares
    embedding 38 made-up papers. Ranking by meaning is tested in test_rank and on the seeds."""
    from newsletter.ranking import embed

    monkeypatch.setattr(embed, "load", lambda: None)


@pytest.fixture
def daily_papers(db, tmp_path):
    """One on-topic and one off-topic paper new on each day of March 2-20."""
    for day in DAYS:
        path = tmp_path / f"dump-{day.isoformat()}.txt"
        path.write_text(
            make_dump(
                f"Mar {day.day}",
                [
                    (
                        gnn_title(day),
                        abstract_about(
                            "graph neural networks", "message passing", unique=f"g{day.day}x"
                        ),
                    ),
                    (
                        f"Protein Folding Benchmarks {day.day}",
                        abstract_about("protein structure", unique=f"p{day.day}x"),
                    ),
                ],
            )
        )
    report = ingest_paths(db, [tmp_path], TODAY, year=2026)
    assert not report.errors
    return db


def subscribe(db, tmp_path, frequency="daily", exclude="", email="ada@example.org"):
    folder = tmp_path / "lists"
    folder.mkdir(exist_ok=True)
    write_list(
        folder,
        "list.yaml",
        (
            f"subscribers:\n  - email: {email}\n    topics: [graph neural networks]\n"
            f"    frequency: {frequency}\n    exclude: [{exclude}]\n"
        ),
    )
    sync_subscribers(db, load_lists([folder]))


def titles_on(db, settings, day, send=True):
    """The titles of the one digest composed for `day`; marks it sent as delivery would."""
    composition = compose_day(db, settings, day, persist=True)
    if send:
        with db.session() as session:
            session.execute(update(Digest).where(Digest.digest_date == day).values(state=SENT))
    if not composition.outgoing:
        return None
    (outgoing,) = composition.outgoing
    return [card.title for card in outgoing.cards]


def test_first_daily_digest_holds_the_papers_new_that_day(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path)
    assert titles_on(daily_papers, settings, date(2026, 3, 4)) == [gnn_title(date(2026, 3, 4))]


def test_a_missed_day_is_caught_up_by_the_next_run(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path)
    titles_on(daily_papers, settings, date(2026, 3, 4))
    caught_up = titles_on(daily_papers, settings, date(2026, 3, 6))
    assert sorted(caught_up) == sorted([gnn_title(date(2026, 3, 5)), gnn_title(date(2026, 3, 6))])


def test_catch_up_never_reaches_more_than_seven_days_back(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path)
    titles_on(daily_papers, settings, date(2026, 3, 3))
    late = titles_on(daily_papers, settings, date(2026, 3, 20))
    assert sorted(late) == sorted(gnn_title(date(2026, 3, d)) for d in range(14, 21))


def test_weekly_subscribers_get_the_last_seven_days_on_mondays_only(
    daily_papers, settings, tmp_path
):
    subscribe(daily_papers, tmp_path, frequency="weekly")
    tuesday = compose_day(daily_papers, settings, date(2026, 3, 10), persist=True)
    assert (tuesday.outgoing, tuesday.not_due) == ([], 1)
    monday = titles_on(daily_papers, settings, date(2026, 3, 9))
    assert sorted(monday) == sorted(gnn_title(date(2026, 3, d)) for d in range(3, 10))


def test_papers_already_sent_are_not_sent_again(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path, frequency="daily")
    titles_on(daily_papers, settings, date(2026, 3, 6))
    subscribe(daily_papers, tmp_path, frequency="weekly")  # they switch to the weekly digest
    monday = titles_on(daily_papers, settings, date(2026, 3, 9))
    assert gnn_title(date(2026, 3, 6)) not in monday
    assert len(monday) == 6


def test_excluded_papers_are_never_sent(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path, exclude="part 5")
    titles_on(daily_papers, settings, date(2026, 3, 4))
    assert titles_on(daily_papers, settings, date(2026, 3, 5)) is None
    assert titles_on(daily_papers, settings, date(2026, 3, 6)) == [gnn_title(date(2026, 3, 6))]


def test_nothing_relevant_means_no_digest(daily_papers, settings, tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    write_list(
        folder, "l.yaml", "subscribers:\n  - email: x@example.org\n    topics: [volcanology]\n"
    )
    sync_subscribers(daily_papers, load_lists([folder]))
    composition = compose_day(daily_papers, settings, date(2026, 3, 4), persist=True)
    assert (composition.outgoing, composition.skipped) == ([], 1)


def test_composing_the_same_date_again_reuses_the_stored_digest(daily_papers, settings, tmp_path):
    subscribe(daily_papers, tmp_path)
    first = compose_day(daily_papers, settings, date(2026, 3, 4), persist=True)
    again = compose_day(daily_papers, settings, date(2026, 3, 4), persist=True)
    assert again.outgoing == first.outgoing
    assert first.outgoing[0].digest_id is not None
