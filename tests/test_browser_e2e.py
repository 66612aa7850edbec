"""End to end in headless Chromium: the guided demo, an upload, every page, screenshots.

Starts ``streamlit run app.py`` on a free port and drives it with Playwright. Needs
Debian's Chromium at /usr/bin/chromium (CI installs it; Playwright cannot download one
here). Screenshots go to tests/screenshots/ (ignored by git); with UPDATE_SCREENSHOTS=1
they go to docs/screenshots/, where the README's pictures live.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS
from tests.browser_helpers import (
    full_page_screenshot,
    goto,
    main_button,
    no_exception,
    require_browser,
    streamlit_app,
    wait_idle,
)
from ui.ready import TRAIN_YOUR_OWN

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "tests") / "screenshots"
WIDTH = 1400

# Data of every plotly chart on the page: [[trace name, number of points], ...] per chart.
CHART_DATA = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(el => (el.data || []).map(t => [t.name || '', (t.x || []).length]))"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_browser()
    # The demo's 400 iterations can end in a few seconds on an idle machine, before the checks of
    # a running demo (live growth, progress bar, Stop); a longer demo keeps them about a running one.
    env = {"CAUSAL_EXPLORER_DEMO_ITERATIONS": "2000"}
    with streamlit_app(tmp_path_factory.mktemp("streamlit") / "server.log", env=env) as (_, url):
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(app_url)
        wait_idle(pg)
        yield pg
        browser.close()


# ---------------------------------------------------------------------------------------------- helpers


def screenshot(pg, name: str) -> None:
    full_page_screenshot(pg, SHOTS / f"{name}.png", WIDTH)
    pg.wait_for_timeout(200)


def train_to_the_end(pg, timeout_ms: int = 180_000) -> None:
    """Press Start on the Meta-train page and wait until this run has finished."""
    main_button(pg, "Start").click()
    main_button(pg, "Stop").wait_for(state="visible", timeout=60_000)
    main_button(pg, "Stop").wait_for(state="detached", timeout=timeout_ms)
    wait_idle(pg)
    pg.wait_for_selector("text=Training finished", timeout=30_000)
    no_exception(pg)


def train_points(pg) -> int:
    """Points in the live training chart's first trace (the per-iteration train loss)."""
    for chart in pg.evaluate(CHART_DATA):
        if chart and chart[0][0] == "train":
            return chart[0][1]
    return 0


def points_when(pg, condition, timeout_s: float) -> int:
    """The training chart's point count once ``condition`` holds for it (polled; while Streamlit
    redraws the chart a reading can find no chart, which counts as 0). The last reading on time-out."""
    deadline = time.monotonic() + timeout_s
    n = train_points(pg)
    while not condition(n) and time.monotonic() < deadline:
        pg.wait_for_timeout(300)
        n = train_points(pg)
    return n


def chart_with(pg, trace_name: str):
    for chart in pg.evaluate(CHART_DATA):
        names = [t[0] for t in chart]
        if trace_name in names:
            return dict(chart)
    return None


# ---------------------------------------------------------------------------------------------- tests


def test_guided_demo(page):
    pg = page
    no_exception(pg)
    main_button(pg, TRAIN_YOUR_OWN).click()
    pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=60_000)
    # the live chart grows while training runs, and the UI stays responsive
    first = points_when(pg, lambda n: n >= 3, timeout_s=60)
    second = points_when(pg, lambda n: n > first, timeout_s=20)
    assert second > first >= 3, (first, second)
    assert pg.locator('[data-testid="stProgress"]').count() >= 1
    no_exception(pg)

    # Stop stops it within a second or two, and the curve stops growing
    main_button(pg, "Stop").click()
    pg.wait_for_selector("text=Training stopped", timeout=10_000)
    wait_idle(pg)
    stopped = points_when(pg, lambda n: n > 0, timeout_s=10)
    pg.wait_for_timeout(1500)
    assert points_when(pg, lambda n: n > 0, timeout_s=10) == stopped
    # a stopped run never replaces the model in use: still the ready one
    assert "ready sinusoid" in pg.locator('[data-testid="stSidebar"]').inner_text()
    no_exception(pg)

    # one typed point adapts the curve
    pg.get_by_label("x", exact=True).fill("2")
    main_button(pg, "Adapt to this point").click()
    wait_idle(pg)
    sine = chart_with(pg, "after one-shot adaptation")
    assert sine is not None and sine["after one-shot adaptation"] == 200 and sine["your point"] == 1
    assert pg.locator('[data-testid="stMetric"]', has_text="adaptation time").count() >= 1
    no_exception(pg)

    # a full demo run for the screenshot: meta-train again and let it finish
    main_button(pg, TRAIN_YOUR_OWN).click()
    main_button(pg, "Stop").wait_for(state="visible", timeout=60_000)
    main_button(pg, "Stop").wait_for(state="detached", timeout=180_000)
    wait_idle(pg)
    pg.wait_for_selector("text=Training finished", timeout=30_000)
    no_exception(pg)

    # one clicked point adapts the curve
    charts = pg.locator('[data-testid="stPlotlyChart"]')
    target = None
    for i in range(charts.count()):
        if "click to choose a point" in pg.evaluate(
            "(i) => (document.querySelectorAll('.js-plotly-plot')[i].data || []).map(t => t.name).join('|')", i
        ):
            target = charts.nth(i)
    assert target is not None
    target.scroll_into_view_if_needed()
    box = target.locator(".nsewdrag").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.3
    pg.mouse.move(x, y)
    pg.wait_for_timeout(200)
    pg.mouse.move(x + 1, y + 1)
    pg.wait_for_timeout(200)
    pg.mouse.click(x + 1, y + 1)
    pg.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
             (el.data || []).some(t => t.name === 'your point' && t.x && t.x[0] < 0))""",
        timeout=20_000,
    )
    wait_idle(pg)
    no_exception(pg)
    pg.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
    screenshot(pg, "home")


def test_upload_csv_through_the_file_input(page, tmp_path):
    pg = page
    goto(pg, "Tasks")
    pg.get_by_text("Upload a CSV", exact=True).click()
    wait_idle(pg)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    pg.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(bad))
    pg.wait_for_selector("text=at least a feature column", timeout=30_000)
    wait_idle(pg)
    no_exception(pg)
    pg.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        str(ROOT / "assets" / "example_tasks.csv")
    )
    pg.wait_for_selector("text=target column", timeout=30_000)
    wait_idle(pg)
    assert pg.locator('[data-testid="stAlertContentError"]').count() == 0
    main_button(pg, "Use this task source").click()
    pg.wait_for_selector("text=Now using CSV", timeout=30_000)
    wait_idle(pg)
    no_exception(pg)
    screenshot(pg, "tasks_csv")


def test_every_page_and_screenshots(page):
    pg = page
    # Tasks: the SCM with its true graph, and Omniglot episodes
    goto(pg, "Tasks")
    pg.get_by_text("SCM tasks (true causal graph known)", exact=True).click()
    wait_idle(pg)
    no_exception(pg)
    screenshot(pg, "tasks_scm")
    pg.get_by_text("Omniglot characters (minimal sets)", exact=True).click()
    wait_idle(pg)
    pg.wait_for_selector('[data-testid="stImage"]', timeout=30_000)
    no_exception(pg)
    screenshot(pg, "tasks")
    # use Omniglot and meta-train a prototypical learner (recommended settings, ~60 iterations)
    main_button(pg, "Use this task source").click()
    pg.wait_for_selector("text=Now using images", timeout=30_000)
    wait_idle(pg)
    goto(pg, "Meta-train")
    train_to_the_end(pg)
    screenshot(pg, "train")

    goto(pg, "One-shot adapt")
    main_button(pg, "Adapt and label the query drawings").click()
    pg.wait_for_selector("text=Predictions on the query pictures", timeout=30_000)
    wait_idle(pg)
    no_exception(pg)
    screenshot(pg, "adapt")

    goto(pg, "Interventions")
    slider = pg.locator('[data-testid="stSlider"] input[type="range"]').first
    slider.focus()
    for _ in range(20):  # step 0.05: from 1 to 0, i.e. do(mechanism 0 off)
        pg.keyboard.press("ArrowLeft")
    wait_idle(pg)
    no_exception(pg)
    assert float(slider.input_value()) == 0.0
    assert pg.locator('[data-testid="stMetric"]', has_text="with intervention").count() == 1
    main_button(pg, "Measure the effect of each mechanism").click()
    wait_idle(pg)
    no_exception(pg)
    main_button(pg, "Adapt level by level").click()
    wait_idle(pg)
    no_exception(pg)
    screenshot(pg, "interventions")

    # SCM tasks: meta-train, then discover mechanisms by intervention and draw their graph
    goto(pg, "Tasks")
    pg.get_by_text("SCM tasks (true causal graph known)", exact=True).click()
    wait_idle(pg)
    main_button(pg, "Use this task source").click()
    pg.wait_for_selector("text=Now using scm", timeout=30_000)
    wait_idle(pg)
    goto(pg, "Meta-train")
    iterations = pg.get_by_label("Meta-training iterations", exact=True)
    iterations.fill("150")  # enough for the graph; keeps the test short
    iterations.press("Enter")
    wait_idle(pg)
    train_to_the_end(pg)
    goto(pg, "Mechanisms")
    for label, presses in (("tasks", 2), ("held-out tasks", 1)):  # 16 -> 8 tasks, 8 -> 4 held out
        pg.locator(f'[data-testid="stSlider"] input[type="range"][aria-label="{label}"]').focus()
        for _ in range(presses):
            pg.keyboard.press("ArrowLeft")
        wait_idle(pg)
    main_button(pg, "Run discovery").click()
    pg.wait_for_selector("text=Last discovery", timeout=180_000)
    wait_idle(pg)
    no_exception(pg)
    # the pyvis graph is drawn offline: vis-network paints a canvas inside the iframe
    frame = pg.frame_locator('[data-testid="stMain"] iframe').first
    frame.locator("canvas").first.wait_for(state="attached", timeout=30_000)
    pg.wait_for_timeout(1500)
    painted = frame.locator("canvas").first.evaluate(
        """c => { if (!c.width) return 0;
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                     return n; }"""
    )
    assert painted > 500, f"the mechanism graph canvas is blank ({painted} painted pixels)"
    screenshot(pg, "mechanisms")

    goto(pg, "Causal direction")
    main_button(pg, "Run").click()
    pg.wait_for_selector("text=Median σ(γ) here", timeout=120_000)
    wait_idle(pg)
    no_exception(pg)
    screenshot(pg, "causal_direction")


def test_screenshots_exist(page):
    for name in ("home", "tasks", "train", "adapt", "mechanisms", "interventions", "causal_direction"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, name
