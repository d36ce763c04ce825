"""The HTML report as a reader sees it: headless Chromium at 1280 px and 700 px.

Fails on console errors, images that do not load, and any element wider than the viewport, folded and
with every ``<details>`` (report cards, metadata) open. Screenshots
are saved in the test's temporary folder. Chromium comes from the system's packages (``.ci/run``
installs Debian's ``chromium`` when it is missing); without it the test is skipped with that message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from synthetic import synthetic_table, write_run

from optprobe.report import build_report

WIDTHS = (1280, 700)
_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

#: Elements wider than the viewport (a table or figure that forces horizontal scrolling), as JavaScript.
_OVERFLOW = """(width) => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1 && getComputedStyle(e).display !== 'none'
          && !e.closest('details:not([open])'))
  .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
            + ' right=' + Math.round(e.getBoundingClientRect().right))"""
_BROKEN_IMAGES = "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)"


def _browser() -> str:
    for name in _BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine: apt-get install chromium (.ci/run does) to check the report")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for label, seed in (("sgdm", 0), ("adamw", 1)):
        write_run(root / "local_convexity" / label, synthetic_table(steps=90, seed=seed),
                  experiment="local_convexity", label=label, finding="Convex on average.",
                  random_scaling=True)
    return build_report([root], tmp_path_factory.mktemp("report"))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_renders_cleanly_in_chromium(report: Path, width: int, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
    executable = _browser()
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.as_uri(), wait_until="load")
        page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
        broken, too_wide = page.evaluate(_BROKEN_IMAGES), page.evaluate(_OVERFLOW, width)
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        page.screenshot(path=str(tmp_path / f"report-{width}-open.png"), full_page=True)
        too_wide_open = page.evaluate(_OVERFLOW, width)  # the report cards and metadata, unfolded
        scroll_width = max(scroll_width, page.evaluate("() => document.documentElement.scrollWidth"))
        browser.close()
    assert errors == [], f"console errors at {width} px: {errors}"
    assert broken == [], f"images that did not load at {width} px: {broken}"
    assert too_wide == [] and scroll_width <= width, f"wider than {width} px: {too_wide[:10]}"
    assert too_wide_open == [], f"wider than {width} px with every <details> open: {too_wide_open[:10]}"
