"""A reload keeps the work, in headless Chromium: the workspace id stays in the URL, a running job is
found again by the reloaded page, and its run is listed from the run store after another reload.
Needs Debian's Chromium (skipped otherwise)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS
from tests.browser_helpers import goto, main_button, no_exception, require_browser, streamlit_app, wait_idle
from ui.run_store import workspace_id_problem

pytestmark = pytest.mark.browser

RUN = "kept over a reload"


def ws_of(pg) -> str:
    return parse_qs(urlparse(pg.url).query).get("ws", [""])[-1]


def sidebar_stop(pg):
    return pg.locator('[data-testid="stSidebar"]').get_by_role("button", name="Stop", exact=True)


def test_a_reload_reattaches_to_the_running_job_and_keeps_the_run(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    env = {"CAUSAL_EXPLORER_HEARTBEAT_TIMEOUT": "20", "CAUSAL_EXPLORER_STORE": str(tmp_path / "store")}
    with streamlit_app(tmp_path / "server.log", env=env) as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1300, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(url)
        wait_idle(pg)
        ws = ws_of(pg)
        assert workspace_id_problem(ws) is None, pg.url

        goto(pg, "Meta-train")
        assert ws_of(pg) == ws  # page links keep the workspace in the URL
        iterations = pg.get_by_label("Meta-training iterations", exact=True)
        iterations.fill("100000")
        iterations.press("Enter")
        wait_idle(pg)
        name = pg.get_by_label("run name", exact=True)
        name.fill(RUN)
        name.press("Enter")
        wait_idle(pg)
        main_button(pg, "Start").click()
        sidebar_stop(pg).wait_for(state="visible")

        pg.reload()  # a new browser session of the same workspace
        wait_idle(pg)
        no_exception(pg)
        assert ws_of(pg) == ws
        sidebar_stop(pg).wait_for(state="visible")  # the job still runs, and this page found it
        pg.wait_for_function(
            "() => /meta-training: \\d+ \\/ 100000/.test(document.querySelector('[data-testid=\"stSidebar\"]').innerText)"
        )
        sidebar_stop(pg).click()
        sidebar_stop(pg).wait_for(state="detached", timeout=30_000)
        wait_idle(pg)

        pg.reload()
        wait_idle(pg)
        no_exception(pg)
        main = pg.locator('[data-testid="stMain"]')
        main.get_by_text("Stored runs", exact=True).wait_for()
        assert main.get_by_text(RUN, exact=True).count() >= 1
        main_button(pg, "Delete").first.wait_for()  # widgets render a moment after the text on a fresh load
        assert main_button(pg, "Delete").count() == 1
        sidebar = pg.locator('[data-testid="stSidebar"]').inner_text()
        assert "Restored 1 run(s)" in sidebar, sidebar
        # the stopped run did not replace the ready model in use, which a reload picks again (it is not stored)
        assert "Model: ready sinusoid Meta-SGD model" in sidebar, sidebar

        other = browser.new_page(viewport={"width": 1300, "height": 1000})  # no ?ws=: a new workspace
        other.goto(url)
        wait_idle(other)
        assert ws_of(other) not in ("", ws)
        goto(other, "Meta-train")
        main_button(other, "Start").wait_for()
        assert other.locator('[data-testid="stMain"]').get_by_text(RUN, exact=True).count() == 0
        assert main_button(other, "Delete").count() == 0
        browser.close()
