"""Full-page screenshots of a report and a leaderboard in headless Debian Chromium (as the tests open them).

    .venv/bin/python scripts/screenshot_pages.py report.html docs/report.png site/index.html docs/leaderboard.png

The leaderboard is shot as it opens: ranked rows first, then the partial runs' own section. (Pages from before
that section existed hid partial runs behind a "show partial runs" toggle, which is ticked when present.)
"""

from __future__ import annotations

import sys
from pathlib import Path

# The browser as tests/test_report_pages.py launches it (it imports these two).
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def main(report: str, report_png: str, leaderboard: str, leaderboard_png: str) -> None:
    from playwright.sync_api import sync_playwright  # imported here: the tests import this module without it

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        for html, png in ((report, report_png), (leaderboard, leaderboard_png)):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(Path(html).resolve().as_uri())
            if page.locator("#show-partial").count():
                page.check("#show-partial")
            page.screenshot(path=png, full_page=True)
        browser.close()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
