"""Two browser sessions and one worker process, in headless Chromium: the second session's Home demo
waits in the queue with its position shown, Stop takes it out of the queue at once, and when started
again it runs after the first and both sessions get their own trained model.

Jobs run in worker processes here (the app's default); CAUSAL_EXPLORER_WORKERS=1 makes a queue with two
sessions. Needs Debian's Chromium (skipped otherwise)."""

from __future__ import annotations

import pytest

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS
from tests.browser_helpers import main_button, require_browser, streamlit_app, wait_idle
from ui.ready import TRAIN_YOUR_OWN

pytestmark = pytest.mark.browser

ARGS = [*CHROMIUM_ARGS, "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
DEMO_ITERATIONS = 300
QUEUED = "text=/queued, position 1/"


def main_text(pg) -> str:
    return pg.locator('[data-testid="stMain"]').inner_text()


def test_a_second_session_queues_with_its_position_can_leave_the_queue_and_runs_after_the_first(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    env = {"CAUSAL_EXPLORER_WORKERS": "1", "CAUSAL_EXPLORER_DEMO_ITERATIONS": str(DEMO_ITERATIONS)}
    with streamlit_app(tmp_path / "server.log", env=env) as (_pid, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        a, b = (browser.new_context(viewport={"width": 1300, "height": 1000}).new_page() for _ in range(2))
        for pg in (a, b):
            pg.set_default_timeout(90_000)
            pg.goto(url)
            wait_idle(pg)

        main_button(a, TRAIN_YOUR_OWN).click()
        a.wait_for_function("() => /Training \\d+ \\/ \\d+/.test(document.body.innerText)")  # A runs
        main_button(b, TRAIN_YOUR_OWN).click()
        b.wait_for_selector(QUEUED)  # B waits, and says where it is

        # Stop while queued: out of the queue at once, A goes on
        main_button(b, "Stop").click()
        b.wait_for_selector("text=Training stopped", timeout=10_000)
        assert "queued" not in main_text(b)
        assert main_button(a, "Stop").is_visible()

        # queued again, it runs once A's job is done
        wait_idle(b)
        main_button(b, TRAIN_YOUR_OWN).click()
        b.wait_for_selector(QUEUED)
        a.wait_for_selector("text=Training finished", timeout=180_000)
        b.wait_for_function("() => /Training \\d+ \\/ \\d+/.test(document.body.innerText)", timeout=60_000)
        b.wait_for_selector("text=Training finished", timeout=180_000)
        for pg in (a, b):
            wait_idle(pg)
            sidebar = pg.locator('[data-testid="stSidebar"]').inner_text()
            assert f"{DEMO_ITERATIONS} iterations" in sidebar, sidebar
        browser.close()
