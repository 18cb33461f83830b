"""Simulated readers: does "More / Fewer like this" make the next digests better?

For each labelled topic, two readers subscribe with that topic alone (weekly, 5 papers): one
gives feedback, the other is the control. All 182 seed papers are new in the week of DAY. The
run of DAY composes and stores both readers' digests, the same five papers. The feedback reader
opens each paper's link from their message (made by the code that makes the real messages) and
POSTs it to the real endpoint (`web.create_app`): "More like this" on the papers the topic's
labels grade relevant, "Fewer like this" on the others. Then both readers' residual rankings, the
papers they have not seen, as `newsletter rank --for EMAIL --date DAY+1 --limit 10 --all` lists
them (the next digest, then the near misses best first), are scored by nDCG@10 against the
labels of the unseen papers.

    python -m bench.feedback            # report: tuning, test, holdout and final topics
    python -m bench.feedback --tune     # choose the learner's constants on the tuning topics

The learner's constants (`ranking.learn.LEARNER`) are chosen on the tuning topics only; the test
topics are reported. A topic is measured when its reader got a first digest (else there is
nothing to mark) and a relevant paper is left unseen (else there is nothing to find); the others
are counted.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from statistics import mean
from typing import Any

from bench.ranking import (
    FINAL,
    HOLDOUT,
    ROOT,
    SEED_YEAR_END,
    TEST,
    TUNING,
    load_labels,
    ndcg_at,
)

DAY = date(2026, 8, 10)  # a Monday after the last seed day: weekly readers are due
FIRST_DIGEST = 5  # papers in the digest the reader marks
K = 10
_MORE = re.compile(r"^More like this: (\S+)$", re.M)
_LESS = re.compile(r"^Fewer like this: (\S+)$", re.M)


def build(work: Path, topics: list[str]) -> tuple[Any, Any, dict[str, int]]:
    """A store with the seed papers all new in DAY's week and two readers per topic; the run of
    DAY composed. (settings, db, stored paper ids by title)"""
    import yaml
    from sqlalchemy import update

    from newsletter.config import load_settings
    from newsletter.digests.compose import compose_day
    from newsletter.ingest.intake import ingest_paths
    from newsletter.store.db import Database, Paper
    from newsletter.subscribers.lists import load_lists
    from newsletter.subscribers.sync import sync_subscribers

    (work / "subscribers").mkdir()
    settings = load_settings(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{work / 'feedback.db'}",
            "NEWSLETTER_SEEDS_DIR": str(ROOT / "seeds"),
            "NEWSLETTER_SUBSCRIBERS_DIR": str(work / "subscribers"),
            "NEWSLETTER_OUTBOX_DIR": str(work / "outbox"),
            "NEWSLETTER_SECRET_KEY": "bench-" + "0" * 40,
            "NEWSLETTER_BASE_URL": "https://digest.example",
        }
    )
    db = Database(settings.database_url)
    ingest_paths(db, [ROOT / "seeds"], SEED_YEAR_END, year=SEED_YEAR_END.year)
    with db.session() as session:  # one pool: every seed paper new in DAY's week
        session.execute(update(Paper).values(first_seen=DAY - timedelta(days=1)))
        titles = {
            t: i
            for i, t in session.execute(
                Paper.__table__.select().with_only_columns(Paper.id, Paper.title)
            )
        }
    readers = [
        {
            "email": f"{kind}-{n}@sim.example",
            "topics": [topic],
            "frequency": "weekly",
            "max_papers": FIRST_DIGEST,
        }
        for n, topic in enumerate(topics)
        for kind in ("feedback", "control")
    ]
    (work / "subscribers" / "sim.yaml").write_text(yaml.safe_dump({"subscribers": readers}))
    sync_subscribers(db, load_lists([work / "subscribers"]))
    compose_day(db, settings, DAY, persist=True)
    return settings, db, titles


def give_feedback(
    settings: Any, db: Any, grades: dict[str, dict[int, int]], topics: list[str]
) -> int:
    """Each feedback reader marks every paper of their DAY digest through the endpoint, as the
    links in their message say; how many POSTs were recorded."""
    from starlette.testclient import TestClient

    from newsletter.delivery.workers import MessageFactory
    from newsletter.digests.compose import stored_digests
    from newsletter.web import create_app

    factory = MessageFactory(settings)
    client = TestClient(create_app(db, settings))
    wanted = {f"feedback-{n}@sim.example": topic for n, topic in enumerate(topics)}
    posted = 0
    for batch in stored_digests(db, settings, DAY):
        for outgoing in batch:
            topic = wanted.get(outgoing.email)
            if topic is None:
                continue
            _, raw = factory.make(outgoing, None)
            body = message_from_bytes(raw, policy=policy.default).get_body(("plain",))
            text = body.get_content().replace("\r\n", "\n")
            more, less = _MORE.findall(text), _LESS.findall(text)
            assert len(more) == len(less) == len(outgoing.cards)
            for card, up, down in zip(outgoing.cards, more, less, strict=True):
                url = up if grades[topic].get(card.paper_id, 0) > 0 else down
                answer = client.post(url.removeprefix(settings.base_url))
                assert answer.status_code == 200, answer.text
                posted += 1
    return posted


def residual(records: list[dict[str, Any]], titles: dict[str, int], seen: set[int]) -> list[int]:
    ranked = [titles[r["title"]] for r in records]
    return [pid for pid in ranked if pid not in seen]


def seen_by(db: Any, email: str) -> set[int]:
    from sqlalchemy import select

    from newsletter.store.db import Digest, DigestPaper, Subscriber

    with db.session() as session:
        return set(
            session.scalars(
                select(DigestPaper.paper_id)
                .join(Digest, Digest.id == DigestPaper.digest_id)
                .join(Subscriber, Subscriber.id == Digest.subscriber_id)
                .where(Subscriber.email == email)
            )
        )


@dataclass
class Readers:
    """One topic's two readers the day after the first digest."""

    feedback: Any  # the feedback reader's `ReaderDay`
    control: Any  # the control reader's
    seen: set[int]  # the papers both were sent
    control_ndcg: float | None = None  # the control's residual nDCG@10 (no learner moves it)


def views(db: Any, topics: list[str]) -> dict[str, Readers]:
    """Per topic: both readers as `rank --for` reads them the day after the first digest."""
    from newsletter.digests.for_reader import ReaderDay

    found = {}
    for n, topic in enumerate(topics):
        fb, ctl = f"feedback-{n}@sim.example", f"control-{n}@sim.example"
        seen = seen_by(db, fb)
        assert seen == seen_by(db, ctl)
        found[topic] = Readers(
            ReaderDay.read(db, fb, DAY + timedelta(days=1)),
            ReaderDay.read(db, ctl, DAY + timedelta(days=1)),
            seen,
        )
    return found


def scores(
    found: dict[str, Readers],
    grades: dict[str, dict[int, int]],
    titles: dict[str, int],
    learner: Any,
) -> dict[str, tuple[float, float]]:
    """Per topic with a relevant unseen paper: (control, feedback) residual nDCG@10."""
    from newsletter.digests.for_reader import records_for

    result = {}
    for topic, readers in found.items():
        seen = readers.seen
        unseen = {p: g for p, g in grades[topic].items() if p not in seen and g > 0}
        if not unseen or readers.feedback.feedback is None:  # (no digest: nothing to mark)
            continue
        if readers.control_ndcg is None:
            control = residual(records_for(readers.control, K, True, learner), titles, seen)
            readers.control_ndcg = ndcg_at(control, unseen)
        with_feedback = residual(records_for(readers.feedback, K, True, learner), titles, seen)
        result[topic] = (readers.control_ndcg, ndcg_at(with_feedback, unseen))
    return result


def run_set(path: Path) -> tuple[dict[str, Readers], dict, dict, int]:
    from bench.ranking import seed_papers

    papers = seed_papers()
    work = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    topics = list(load_labels(path, papers).grades)
    settings, db, titles = build(work, topics)
    from newsletter.records import PaperText

    stored = [PaperText(i, t, "", 1, 1) for t, i in titles.items()]
    grades = load_labels(path, stored).grades
    posted = give_feedback(settings, db, grades, topics)
    return views(db, topics), grades, titles, posted


def report(name: str, result: dict[str, tuple[float, float]], topics: int, posted: int) -> dict:
    print(
        f"\n{name}: {len(result)} of {topics} topics measured (a first digest to mark, and a"
        f" relevant paper not in it); {posted} clicks"
    )
    print(f"  {'topic':48} control  feedback  change")
    for topic, (control, fb) in sorted(result.items(), key=lambda kv: kv[1][1] - kv[1][0]):
        print(f"  {topic[:48]:48} {control:7.3f}  {fb:8.3f}  {fb - control:+.3f}")
    control = mean(c for c, _ in result.values())
    fb = mean(f for _, f in result.values())
    gains = [f - c for c, f in result.values()]
    low, high = bootstrap(gains)
    print(
        f"  {'mean':48} {control:7.3f}  {fb:8.3f}  {fb - control:+.3f}   worst topic"
        f" {min(gains):+.3f}; 95% of resampled means {low:+.3f} .. {high:+.3f}"
    )
    return {"control": control, "feedback": fb, "gain": fb - control, "worst": min(gains)}


def bootstrap(gains: list[float], draws: int = 10_000) -> tuple[float, float]:
    """The middle 95 % of the mean gain over topic sets resampled with replacement (how much
    the mean owes to which topics happen to be labelled)."""
    pick = random.Random(0)
    means = sorted(mean(pick.choices(gains, k=len(gains))) for _ in range(draws))
    return means[int(draws * 0.025)], means[int(draws * 0.975) - 1]


# Rocchio's weights, each with the closeness effects off, mild, or as strong as the first tuning
# chose (`near` above 1: no paper comes on closeness alone).
ROCCHIO_GRID = {"more": [0.0, 0.5, 1.0, 2.0], "less": [0.0, 0.25, 0.5]}
CLOSENESS = {
    "off": {"floor": 0.15, "lift": 0.0, "push": 0.0, "near": 1.01, "listing": 0.0},
    "mild": {"floor": 0.15, "lift": 4.0, "push": 4.0, "near": 0.7, "listing": 0.3},
    "strong": {"floor": 0.15, "lift": 16.0, "push": 8.0, "near": 0.5, "listing": 2.0},
    # the probability moved, nothing comes on closeness alone, the listing order as it was
    "lift only": {"floor": 0.15, "lift": 16.0, "push": 8.0, "near": 1.01, "listing": 0.0},
    "lift and order": {"floor": 0.15, "lift": 16.0, "push": 8.0, "near": 1.01, "listing": 1.0},
    # the same with the logit's move capped (the topic's own evidence keeps a say)
    **{
        f"lift and order, cap {cap:g}": {
            "floor": 0.15,
            "lift": 16.0,
            "push": 8.0,
            "near": 1.01,
            "listing": 1.0,
            "cap": cap,
        }
        for cap in (1.0, 2.0, 4.0)
    },
}
POOLS = ("max", "mean")


def _objective(gains: list[float]) -> float:
    """The mean gain, with the part of a topic's loss beyond 0.05 counted twice."""
    return mean(gains) + mean(min(g + 0.05, 0.0) for g in gains)


def tune(paths: tuple[Path, ...] = (TUNING,)) -> None:
    """Every learner of the grid on every topic of `paths` (the tuning topics, unless
    `--all-sets`); how each family generalises across them (leave-one-topic-out: each topic
    scored with the family's learner chosen on the others); the family that did best, and its
    best constants on all the topics; and the whole choice estimated with each topic left out of
    all of it (nested)."""
    from newsletter.ranking.learn import Learner

    learners = [
        (family, Learner(**dict(zip(ROCCHIO_GRID, values, strict=True)), **effects, pool=pool))
        for values in itertools.product(*ROCCHIO_GRID.values())
        for family, effects in CLOSENESS.items()
        for pool in POOLS
        if pool == "max" or effects["lift"] > 0  # (the pooling matters only with closeness)
    ]
    table: list[dict[tuple[str, str], tuple[float, float]]] = [{} for _ in learners]
    for path in paths:
        found, grades, titles, _ = run_set(path)
        for n, (_, learner) in enumerate(learners):
            for topic, pair in scores(found, grades, titles, learner).items():
                table[n][path.stem, topic] = pair
    topics = list(table[0])

    def gains(n: int, among: list[tuple[str, str]]) -> list[float]:
        return [table[n][t][1] - table[n][t][0] for t in among]

    families: dict[tuple[str, str], list[int]] = {}
    for n, (family, learner) in enumerate(learners):
        families.setdefault((family, learner.pool), []).append(n)

    def constants(rows: list[int], among: list[tuple[str, str]]) -> int:
        return max(rows, key=lambda n: _objective(gains(n, among)))

    def left_out(rows: list[int], among: list[tuple[str, str]]) -> list[float]:
        """Each topic of `among` scored with the constants chosen on the others."""
        return [
            gains(constants(rows, [t for t in among if t != topic]), [topic])[0] for topic in among
        ]

    def choice(among: list[tuple[str, str]]) -> int:
        """The whole choice on these topics: the family that did best on topics left out,
        then its constants."""
        family = max(families, key=lambda f: _objective(left_out(families[f], among)))
        return constants(families[family], among)

    for family, rows in families.items():
        held_out = left_out(rows, topics)
        print(
            f"{family}: leave-one-topic-out gain {mean(held_out):+.3f},"
            f" worst {min(held_out):+.3f}, {sum(g < -0.05 for g in held_out)} of"
            f" {len(held_out)} topics worse by more than 0.05"
            f" (objective {_objective(held_out):+.3f})"
        )
    best = choice(topics)
    chosen = gains(best, topics)
    print(
        f"chosen on {len(topics)} topics of {', '.join(p.stem for p in paths)}:"
        f" {learners[best][1]} (mean gain {mean(chosen):+.3f}, objective"
        f" {_objective(chosen):.4f})"
    )
    # The family too was chosen on these topics: the choice as a whole, each topic left out of
    # all of it (nested), is the honest estimate of what a topic nobody tuned on gains.
    nested = [gains(choice([t for t in topics if t != topic]), [topic])[0] for topic in topics]
    print(
        f"the whole choice, each topic left out of it (nested): gain {mean(nested):+.3f},"
        f" worst {min(nested):+.3f}, {sum(g < -0.05 for g in nested)} of {len(nested)} topics"
        f" worse by more than 0.05"
    )


def cost(found: dict[str, Readers]) -> None:
    """What a reader's feedback costs their ranking: each feedback reader's next digest ranked
    with their feedback and without it (the shared ranking of readers without any)."""
    views = [r.feedback for r in found.values() if r.feedback.feedback]
    timings = {}
    for name, strip in (("without feedback", True), ("with feedback", False)):
        started = time.perf_counter()
        for view in views:
            wants = view.due.preferences
            view.index.rank(
                wants.topics,
                view.due.candidates,
                limit=K,
                feedback=None if strip else view.feedback,
            )
        timings[name] = (time.perf_counter() - started) / len(views) * 1000
    per = ", ".join(f"{name} {ms:.2f} ms" for name, ms in timings.items())
    papers = len(views[0].papers)
    print(f"\nranking a reader's digest over {papers} papers ({len(views)} readers): {per}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true")
    parser.add_argument(
        "--all-sets",
        action="store_true",
        help="with --tune: choose on the topics of all four labelled sets (leave-one-topic-out)",
    )
    args = parser.parse_args()
    if args.tune:
        tune((TUNING, TEST, HOLDOUT, FINAL) if args.all_sets else (TUNING,))
        return
    from newsletter.ranking.learn import LEARNER

    print(f"learner: {LEARNER}")
    sets = (
        ("tuning topics", TUNING),
        ("test topics", TEST),
        ("holdout topics", HOLDOUT),
        ("final topics", FINAL),
    )
    for name, path in sets:
        found, grades, titles, posted = run_set(path)
        report(name, scores(found, grades, titles, LEARNER), len(found), posted)
        if path == TUNING:
            cost(found)


if __name__ == "__main__":
    main()
