"""Storing dumps: one paper per title, every appearance, first-seen dates, idempotence, refusals."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from datetime import date

from sqlalchemy import event, func, select

from newsletter.ingest.intake import ingest_paths
from newsletter.ranking import embed
from newsletter.store.db import Appearance, Dump, Paper, PaperVector

from .conftest import SEEDS, TODAY, abstract_about, make_dump


def table_counts(db):
    with db.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Dump, Paper, Appearance)
        )


def test_seed_papers_new_per_date(seeded_db):
    with seeded_db.session() as session:
        firsts = Counter(session.scalars(select(Paper.first_seen)))
    # The three Mar 11 dumps overlap; Mar 17 and Aug 8 bring papers of their own.
    assert firsts == {date(2026, 3, 11): 155, date(2026, 3, 17): 16, date(2026, 8, 8): 11}
    assert table_counts(seeded_db) == (5, 182, 229)


def test_every_appearance_is_kept(seeded_db):
    with seeded_db.session() as session:
        paper = session.scalar(
            select(Paper).where(Paper.title.startswith("SSDTrain: An Activation Offloading"))
        )
        seen = sorted((a.seen_on, a.position) for a in paper.appearances)
    assert seen[-1] == (date(2026, 8, 8), 1)
    assert paper.first_seen == seen[0][0]


def test_ingesting_twice_changes_nothing(seeded_db, tmp_path):
    before = table_counts(seeded_db)
    again = ingest_paths(seeded_db, [SEEDS], TODAY)
    assert again.stored == [] and len(again.unchanged) == 5
    crlf = tmp_path / "same-dump-crlf.txt"
    crlf.write_bytes(next(SEEDS.glob("001_*")).read_bytes().replace(b"\n", b"\r\n"))
    assert ingest_paths(seeded_db, [crlf], TODAY).unchanged == [str(crlf)]
    assert table_counts(seeded_db) == before


def test_bad_files_store_nothing_and_do_not_stop_the_others(db, tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a_empty.txt").write_bytes(b"")
    (folder / "b_binary.txt").write_bytes(b"\x00\x01\x02 PK zip")
    (folder / "c_notes.txt").write_text("shopping list\n\nmilk\n\neggs\n")
    (folder / "d_good.txt").write_text(
        make_dump("Mar 12", [("Good Paper", abstract_about("graph neural networks"))])
    )
    (folder / "README.md").write_text("not a .txt file: folders only take *.txt")
    report = ingest_paths(db, [folder], TODAY)
    assert [re.split(r"[:,]", e)[0] for e in report.errors] == [
        f"{folder}/a_empty.txt",
        f"{folder}/b_binary.txt",
        f"{folder}/c_notes.txt",
    ]
    assert all("\n" not in e for e in report.errors)
    assert [s.name for s in report.stored] == ["d_good.txt"]
    assert table_counts(db) == (1, 1, 1)


def test_first_seen_is_the_earliest_date_whatever_the_ingest_order(db, tmp_path):
    later = tmp_path / "later.txt"
    earlier = tmp_path / "earlier.txt"
    later.write_text(
        make_dump("Mar 20", [("Shared Paper", abstract_about("x")), ("Only Later", "")])
    )
    earlier.write_text(make_dump("Mar 10", [("Shared  paper", abstract_about("x"))]))
    ingest_paths(db, [later], TODAY)
    ingest_paths(db, [earlier], TODAY)
    with db.session() as session:
        firsts = dict(session.execute(select(Paper.title, Paper.first_seen)).all())
    assert firsts == {"Shared Paper": date(2026, 3, 10), "Only Later": date(2026, 3, 20)}


def test_a_cut_abstract_is_completed_by_a_later_dump(db, tmp_path):
    full = abstract_about("diffusion models")
    (tmp_path / "a.txt").write_text(make_dump("Mar 10", [("P", full[:40])]))
    (tmp_path / "b.txt").write_text(make_dump("Mar 11", [("P", full)]))
    ingest_paths(db, [tmp_path], TODAY)
    with db.session() as session:
        assert session.scalar(select(Paper.abstract)) == full


def test_year_option_and_inference(db, tmp_path):
    (tmp_path / "dec.txt").write_text(make_dump("Dec 31", [("Old Paper", abstract_about("x"))]))
    ingest_paths(db, [tmp_path / "dec.txt"], date(2027, 1, 2))
    (tmp_path / "may.txt").write_text(make_dump("May 5", [("Forced Year", abstract_about("y"))]))
    ingest_paths(db, [tmp_path / "may.txt"], TODAY, year=2021)
    with db.session() as session:
        assert sorted(session.scalars(select(Dump.dump_date))) == [
            date(2021, 5, 5),
            date(2026, 12, 31),
        ]


def test_a_page_saved_again_is_the_same_page(db, tmp_path):
    papers = [(f"Paper number {n}", abstract_about("topic", unique=f"p{n}")) for n in range(12)]
    (tmp_path / "a.txt").write_text(make_dump("Mar 12", papers))
    corrected = [*papers]
    corrected[3] = (papers[3][0], "A corrected abstract about topic. It is shorter now.")
    (tmp_path / "b.txt").write_text(make_dump("Mar 12", corrected))
    report = ingest_paths(db, [tmp_path], TODAY)
    assert len(report.stored) == 2 and not report.errors
    with db.session() as session:
        per_paper = Counter(session.scalars(select(Appearance.paper_id)))
        assert set(per_paper.values()) == {1}  # not a second appearance each
        abstract = session.scalar(select(Paper.abstract).where(Paper.title == "Paper number 3"))
    assert abstract.startswith("A corrected abstract")
    again = ingest_paths(db, [tmp_path], TODAY)  # both files are still there: nothing moves
    assert len(again.unchanged) == 2 and table_counts(db)[2] == 12


def test_control_characters_never_reach_titles(db, tmp_path):
    title = "Evil \x1b]0;pwned\x07Title \x1b[31mred\x1b[0m\ttabbed\x85"
    (tmp_path / "c.txt").write_text(make_dump("Mar 12", [(title, abstract_about("x\x1b[2J"))]))
    ingest_paths(db, [tmp_path], TODAY)
    with db.session() as session:
        paper = session.scalar(select(Paper))
    assert paper.title == "Evil ]0;pwnedTitle [31mred[0m tabbed"
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", paper.title + paper.abstract)


def test_a_big_dump_is_taken_in_chunks_and_a_huge_one_refused_in_one_line(
    db, tmp_path, monkeypatch
):
    from newsletter.ingest import intake as ingest
    from newsletter.ranking import embed

    monkeypatch.setattr(embed, "load", lambda: None)  # words only: 1,200 papers' vectors cost 10 s
    if db.engine.dialect.name == "sqlite":  # as old SQLite builds have it: 999 variables
        limit = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
        event.listen(db.engine, "connect", lambda connection, _: connection.setlimit(limit, 999))
        db.engine.dispose()
    papers = [(f"Paper {n} on topic", f"About topic {n}. " * 3) for n in range(1200)]
    (tmp_path / "big.txt").write_text(make_dump("Mar 12", papers))
    report = ingest_paths(db, [tmp_path / "big.txt"], TODAY)
    assert not report.errors and report.stored[0].new_papers == 1200
    monkeypatch.setattr(ingest, "MAX_DUMP_PAPERS", 1000)
    (tmp_path / "huge.txt").write_text(make_dump("Mar 13", papers))
    (tmp_path / "fine.txt").write_text(make_dump("Mar 14", papers[:5]))
    report = ingest_paths(db, [tmp_path / "huge.txt", tmp_path / "fine.txt"], TODAY)
    assert report.errors == [
        f"{tmp_path}/huge.txt: 1,200 papers, more than a Daily Papers page holds "
        "(at most 1,000 are taken); not ingested"
    ]
    assert [d.name for d in report.stored] == ["fine.txt"]
    monkeypatch.setattr(ingest, "MAX_DUMP_BYTES", 100)
    report = ingest_paths(db, [tmp_path / "huge.txt"], TODAY)
    assert "too large for a Daily Papers dump" in report.errors[0]


def stored_vectors(db) -> dict[str, tuple[str, int]]:
    with db.session() as session:
        rows = session.execute(
            select(Paper.title, PaperVector.text_sha256, PaperVector.vectors).join(
                PaperVector, PaperVector.paper_id == Paper.id
            )
        )
        return {title: (sha, len(embed.unpack(blob))) for title, sha, blob in rows}


def test_every_paper_gets_its_sentence_vectors_once(seeded_db, tmp_path):
    vectors = stored_vectors(seeded_db)
    assert len(vectors) == 182
    # the whole paper, its title and each sentence of its abstract
    assert min(count for _, count in vectors.values()) >= 3
    again = ingest_paths(seeded_db, [SEEDS], TODAY)
    assert again.embedded == 0 and stored_vectors(seeded_db) == vectors


def test_a_completed_abstract_gets_new_vectors(db, tmp_path):
    cut = make_dump("Mar 11", [("Sparse Attention Kernels", "We propose fast kernels.")])
    full = make_dump(
        "Mar 12",
        [("Sparse Attention Kernels", "We propose fast kernels. They run on any accelerator.")],
    )
    (tmp_path / "a.txt").write_text(cut)
    assert ingest_paths(db, [tmp_path / "a.txt"], TODAY).embedded == 1
    before = stored_vectors(db)["Sparse Attention Kernels"]
    (tmp_path / "b.txt").write_text(full)
    assert ingest_paths(db, [tmp_path / "b.txt"], TODAY).embedded == 1
    after = stored_vectors(db)["Sparse Attention Kernels"]
    assert after[0] != before[0] and after[1] == before[1] + 1  # one sentence more


def test_papers_stored_without_the_extra_get_vectors_once_it_is_installed(db, monkeypatch):
    monkeypatch.setattr(embed, "model_dir", lambda: None)
    embed.load.cache_clear()
    try:
        report = ingest_paths(db, [SEEDS], TODAY)
        assert report.embedded == 0 and "embedded" not in report.summary
        assert stored_vectors(db) == {}
    finally:
        monkeypatch.undo()
        embed.load.cache_clear()
    report = ingest_paths(db, [SEEDS], TODAY)  # the dumps are known; their papers are not done
    assert report.embedded == 182 and "182 paper(s) embedded" in report.summary
    assert len(stored_vectors(db)) == 182


def api_answer(*items: tuple[str, str, str]) -> str:
    """A saved Daily Papers answer: (arXiv id, title, summary) per item, in page order."""
    return json.dumps(
        [
            {"paper": {"id": i, "title": t, "summary": s, "authors": [{"name": "Zoë"}]}, "title": t}
            for i, t, s in items
        ]
    )


def test_api_answers_are_read_beside_text_dumps_and_a_bad_one_stores_nothing(db, tmp_path):
    full = abstract_about("graph rewiring", sentences=4)
    (tmp_path / "a.txt").write_text(
        make_dump("Mar 12", [("Graph Rewiring", full[:60]), ("Other Paper", "Text.")])
    )
    (tmp_path / "daily_papers-2026-03-12.json").write_text(
        api_answer(("2603.00001", "Graph rewiring!", full), ("2603.00002", "Other Paper", "Text."))
    )
    (tmp_path / "daily_papers-2026-03-13.json").write_text(
        '[{"paper": {"id": "2603.00003", "title": "Fine"}}, {"paper": {"title": "No id"}}]'
    )
    (tmp_path / "notes.json").write_text("{}")  # not an answer's name: not a dump, not read
    report = ingest_paths(db, [tmp_path], TODAY)
    assert report.errors == [
        f"{tmp_path}/daily_papers-2026-03-13.json, item 2: paper.id None is not an arXiv id"
    ]
    assert len(report.stored) == 2
    with db.session() as session:
        papers = {p.key: p for p in session.scalars(select(Paper))}
        appearances = session.scalar(select(func.count()).select_from(Appearance))
    assert set(papers) == {"graph rewiring", "other paper"}  # nothing of the bad answer
    assert papers["graph rewiring"].arxiv_id == "2603.00001"
    assert papers["graph rewiring"].abstract == full  # the API's summary completes the cut one
    assert papers["graph rewiring"].authors == ["Zoë"]
    assert appearances == 2  # the answer is the same page as the text dump: no second appearance
    again = ingest_paths(db, [tmp_path], TODAY)
    assert again.stored == [] and len(again.unchanged) == 2


def test_a_text_dump_after_the_api_answer_does_not_shorten_its_summary(db, tmp_path):
    full = abstract_about("sparse attention", sentences=4)
    (tmp_path / "daily_papers-2026-03-12.json").write_text(
        api_answer(("2603.00001", "Sparse Attention", full))
    )
    assert not ingest_paths(db, [tmp_path / "daily_papers-2026-03-12.json"], TODAY).errors
    (tmp_path / "b.txt").write_text(make_dump("Mar 12", [("Sparse Attention", full[:50])]))
    assert not ingest_paths(db, [tmp_path / "b.txt"], TODAY).errors
    with db.session() as session:
        (paper,) = session.scalars(select(Paper))
    assert paper.abstract == full and paper.arxiv_id == "2603.00001"
