"""The static HTML reports opened in headless Chromium (Playwright, /usr/bin/chromium; never `playwright install`):
they render their pictures offline, ask for nothing over the network, and show withheld cells as withheld."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None, reason="no Chromium at /usr/bin/chromium"
)


def opened(path: Path) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri())
            found = {
                "title": page.title(),
                "svgs": page.locator("svg").count(),
                "bars": page.locator("svg rect.bar").count(),
                "withheld": page.locator("svg rect.withheld").count(),
                "lines": page.locator("svg line.reference").count(),
                "text": page.inner_text("body"),
                "widths": page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)"),
                "requests": [u for u in requests if not u.startswith("file://")],
            }
        finally:
            browser.close()
    return found


def test_the_population_report_renders_offline(out: Path) -> None:
    seen = opened(out / "population.html")
    assert seen["requests"] == []
    assert seen["title"] == "Chronic absence: district, schools, grades and months"
    assert seen["svgs"] == 4  # schools sorted, grades, months, reasons
    assert all(w > 100 for w in seen["widths"])  # type: ignore[attr-defined]
    assert seen["bars"] >= 4 + 9 + 8  # every school, every grade and month of the district
    assert seen["lines"] >= 2  # the district rate across the schools, the policy threshold across the months
    text = str(seen["text"])
    assert "Maple Grove K-8 School" in text and "withheld" in text and "essa threshold" in text


def test_the_evaluation_report_shows_before_and_after(result: Path) -> None:
    seen = opened(result / "evaluation.html")
    assert seen["requests"] == []
    assert seen["svgs"] == 3
    assert seen["bars"] >= 4 * 2 + 3  # four bars for each days-absent picture, the chronic rates not withheld
    assert seen["withheld"] >= 1  # the cohort's chronic count after the start is 0: withheld
    text = str(seen["text"])
    assert "asthma-program" in text and "34 CFR 99.31(a)(6)" in text and "-6.79" in text
