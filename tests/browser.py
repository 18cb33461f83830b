"""Render an email's HTML in headless Chromium inside an iframe of a given width (a headless window
cannot be narrower than 500 px), measure it, and take screenshots.

    python -m tests.browser OUTBOX_DATE_DIR ARTIFACTS_DIR   # screenshots of every .eml there
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
]
MEASURE = """
window.addEventListener('load', () => {
  const results = [];
  for (const frame of document.querySelectorAll('iframe')) {
    const doc = frame.contentDocument;
    const root = doc.documentElement;
    const column = doc.querySelector('.column');
    const box = column ? column.getBoundingClientRect() : null;
    let widest = 0, who = '';
    for (const el of doc.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width && r.right > widest) { widest = r.right; who = el.tagName + '.' + el.className; }
    }
    results.push({
      frame: frame.clientWidth, scroll: Math.max(root.scrollWidth, doc.body.scrollWidth),
      column: box && {left: box.left, right: box.right, width: box.width}, widest, who});
  }
  document.body.setAttribute('data-result', JSON.stringify(results));
});
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def html_part(eml: Path) -> str:
    with eml.open("rb") as file:
        message = email.message_from_binary_file(file, policy=email.policy.default)
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def without_style_blocks(page: str) -> str:
    """What a client that strips `<style>` shows: only the inlined styles are left."""
    return re.sub(r"<style\b.*?</style>", "", page, flags=re.S | re.I)


def _harness(pages: list[str], width: int, height: int, measure: bool) -> str:
    script = f"<script>{MEASURE}</script>" if measure else ""
    frames = "".join(
        f"<iframe style='width:{width}px;height:{height}px;border:0;display:block' "
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
        for page in pages
    )
    body = f"<body style='margin:0;background:#888'>{frames}{script}</body>"
    return f"<!DOCTYPE html><html>{body}</html>"


def _run(args: list[str], harness: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "harness.html"
        page.write_text(harness, encoding="utf-8")
        done = subprocess.run(
            [
                chromium() or "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={folder}/profile",
                "--virtual-time-budget=5000",
                *args,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout


def measure(pages: list[str], width: int) -> list[dict]:
    """Widths as laid out in a `width`-px frame, for each page (one Chromium for them all):
    scroll width, the column's box, the widest element."""
    dom = _run(["--dump-dom"], _harness(pages, width, 900, measure=True))
    found = re.search(r"data-result=\"([^\"]*)\"", dom)
    if not found:
        raise RuntimeError("Chromium did not report a measurement")
    results = json.loads(html.unescape(found.group(1)))
    if len(results) != len(pages):
        raise RuntimeError(f"Chromium measured {len(results)} of {len(pages)} pages")
    return results


def screenshot(page: str, width: int, path: Path, height: int = 1800) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    window = max(width, 500)
    _run(
        [f"--screenshot={path.resolve()}", f"--window-size={window},{height}"],
        _harness([page], width, height, measure=False),
    )
    return path


def main(outbox: Path, artifacts: Path) -> None:
    for eml in sorted(outbox.glob("*.eml")):
        page = html_part(eml)
        for label, width in (("phone", 375), ("desktop", 1024)):
            shot = screenshot(page, width, artifacts / f"{eml.stem}-{label}.png")
            print(shot)
        print(
            screenshot(without_style_blocks(page), 375, artifacts / f"{eml.stem}-phone-nostyle.png")
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
