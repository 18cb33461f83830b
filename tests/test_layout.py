"""What a person sees: every demo digest laid out in headless Chromium at phone and desktop widths,
with and without its `<style>` block; and what a spam filter sees: SpamAssassin's score."""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from newsletter.digests.daily import run_day

from .browser import chromium, html_part, measure, without_style_blocks
from .conftest import ROOT, SECRET, SEEDS, TODAY

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (make test installs Debian's chromium)"
)
needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="SpamAssassin is not installed (make test installs Debian's spamassassin)",
)


@pytest.fixture(scope="module")
def digests(tmp_path_factory) -> list[Path]:
    """The demo's digests: the seeds and the shipped lists, dry-run for the latest dump date."""
    from newsletter.config import load_settings
    from newsletter.store.db import Database

    work = tmp_path_factory.mktemp("demo")
    shutil.copytree(SEEDS, work / "seeds")
    shutil.copytree(ROOT / "subscribers", work / "subscribers")
    settings = load_settings(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{work / 'db.sqlite'}",
            "NEWSLETTER_SEEDS_DIR": str(work / "seeds"),
            "NEWSLETTER_SUBSCRIBERS_DIR": str(work / "subscribers"),
            "NEWSLETTER_OUTBOX_DIR": str(work / "outbox"),
            "NEWSLETTER_FROM": "Trending Papers <papers@digest.example>",
            "NEWSLETTER_BASE_URL": "https://digest.example",
            "NEWSLETTER_SECRET_KEY": SECRET,
        }
    )
    db = Database(settings.database_url)
    run_day(db, settings, date(2026, 8, 8), today=TODAY, dry_run=True)
    db.close()
    files = sorted((work / "outbox" / "2026-08-08").glob("*.eml"))
    assert len(files) >= 3
    return files


@needs_chromium
@pytest.mark.parametrize("strip_style", [False, True], ids=["with-style", "style-stripped"])
def test_no_horizontal_scrolling_on_a_phone(digests, strip_style):
    pages = [html_part(eml) for eml in digests]
    results = measure([without_style_blocks(p) if strip_style else p for p in pages], 375)
    for eml, result in zip(digests, results, strict=True):
        assert result["frame"] == 375, (eml.name, result)
        assert result["scroll"] <= 375, (eml.name, result)
        assert result["widest"] <= 375, (eml.name, result)


@needs_chromium
@pytest.mark.parametrize("strip_style", [False, True], ids=["with-style", "style-stripped"])
def test_a_centred_column_on_the_desktop(digests, strip_style):
    pages = [html_part(eml) for eml in digests]
    results = measure([without_style_blocks(p) if strip_style else p for p in pages], 1024)
    for eml, result in zip(digests, results, strict=True):
        column = result["column"]
        assert result["scroll"] <= 1024
        assert column["width"] <= 600
        assert abs(column["left"] - (1024 - column["right"])) <= 2, (eml.name, column)


def test_the_html_is_email_client_safe(digests):
    page = html_part(digests[0])
    assert re.search(r"<html[^>]*\blang=\"en\"[^>]*\bdir=\"ltr\"", page)
    assert 'role="presentation"' in page and "max-width:600px" in page.replace(" ", "")
    assert 'name="color-scheme"' in page and "prefers-color-scheme: dark" in page
    assert "@media only screen and (max-width: 480px)" in page and "a:focus" in page
    assert "<script" not in page.lower() and "<img" not in page.lower()  # nothing remote to load
    assert "display:none" in page.replace(" ", "")  # the hidden preheader


@needs_spamassassin
def test_spamassassin_finds_nothing_in_the_content(digests, tmp_path):
    # every digest in one mbox: one SpamAssassin (its rules take seconds to load) for them all
    box = mailbox.mbox(tmp_path / "digests.mbox")
    for eml in digests:
        box.add(eml.read_bytes())
    box.flush()
    done = subprocess.run(
        ["spamassassin", "-t", "-L", "--mbox"],
        input=(tmp_path / "digests.mbox").read_bytes(),
        capture_output=True,
        timeout=120,
    )
    report = done.stdout.decode("utf-8", "replace")
    totals = [float(t) for t in re.findall(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)]
    assert len(totals) == len(digests), report[-2000:]
    for eml, total, analysis in zip(
        digests, totals, report.split("Content analysis")[1:], strict=True
    ):
        table = analysis.split("X-Spam-Status: ")[0]
        rules = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", table, flags=re.M)
        penalty = sum(float(points) for points, _ in rules if float(points) > 0)
        assert total <= 1.0 and penalty <= 1.0, (eml.name, rules)
