"""Browser fixtures for the review console's tests: Debian chromium driven by Playwright.

Importing this module skips the importing test module when chromium or Playwright is missing
(and fails it on CI, which must have them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.consoles import PASSWORD, RunningConsole

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and os.environ.get("CI"):
    pytest.fail(f"CI must install Debian chromium at {CHROMIUM} (.ci/run does)", pytrace=False)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Debian chromium at {CHROMIUM}; apt-get install chromium", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 20_000


# Named apart from their fixture names, so a test module imports them without shadowing them.
@pytest.fixture(scope="module", name="browser")
def browser_fixture():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(name="contexts")
def contexts_fixture(browser):
    """New browser contexts (separate cookie jars), closed at teardown."""
    made = []

    def make():
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(WAIT_MS)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def log_in(context, console: RunningConsole, name: str, password: str = PASSWORD):
    page = context.new_page()
    page.goto(f"{console.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login button[type=submit]")
    return page


def claim(page, console: RunningConsole, queue: str = "spam") -> str | None:
    """Open the queue, claim the next task; the claimed task's key, or None when none came."""
    page.goto(f"{console.url}/queue/{queue}")
    if page.locator("#claim").count():
        with page.expect_navigation(url=f"{console.url}/queue/{queue}"):
            page.keyboard.press("n")
    task = page.locator("#task")
    return task.get_attribute("data-task-key") if task.count() else None
