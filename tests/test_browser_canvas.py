"""Draw to adapt in headless Chromium: strokes drawn with the mouse on the Home page's canvases.

Three example symbols (a circle, a cross, a vertical bar), then test drawings: a second circle
of another size at another place must be labelled as the circle's class, a second cross as the
cross's. Uses the ready Omniglot model (assets/models/omniglot_proto): its absence is a failure.
The screenshot goes to tests/screenshots/draw.png (docs/screenshots/ with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS, circle_points, line_points, mouse_stroke
from benchmarks.browser import DRAWING_CANVAS as CANVAS
from engine.ready_models import ready_model
from tests.browser_helpers import (
    full_page_screenshot,
    main_button,
    no_exception,
    require_browser,
    streamlit_app,
    wait_idle,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "tests") / "screenshots"
WIDTH = 1400


def draw(pg, index: int, strokes: list[list[tuple[float, float]]]) -> None:
    canvas = pg.locator(CANVAS).nth(index)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 50, f"canvas {index} is not on the page"
    for points in strokes:
        mouse_stroke(pg, canvas, points)
        wait_idle(pg, 300)  # each stroke-up reruns the page


def predicted(pg) -> str:
    pg.wait_for_selector("h3:has-text('Predicted:')", timeout=60_000)
    return pg.locator("h3:has-text('Predicted:')").first.inner_text()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    require_browser()
    model = ready_model("omniglot_proto")
    assert model.exists(), f"the ready Omniglot model is missing from {model.path} (assets/models/README.md makes it)"
    from playwright.sync_api import sync_playwright

    with streamlit_app(tmp_path_factory.mktemp("streamlit") / "server.log") as (_, url):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            pg.set_default_timeout(60_000)
            pg.goto(url)
            wait_idle(pg)
            pg.wait_for_selector(CANVAS, timeout=90_000)
            yield pg
            browser.close()


def test_draw_three_symbols_then_label_test_drawings(page):
    pg = page
    assert pg.locator(CANVAS).count() == 4  # three examples and the test symbol
    draw(pg, 0, [circle_points(0.5, 0.5, 0.35)])
    # strokes start below the top quarter: the canvas's toolbar shows over it while the mouse hovers
    draw(pg, 1, [line_points((0.2, 0.25), (0.8, 0.85)), line_points((0.8, 0.25), (0.2, 0.85))])
    draw(pg, 2, [line_points((0.5, 0.25), (0.5, 0.9))])
    no_exception(pg)
    draw(pg, 3, [circle_points(0.4, 0.6, 0.22)])  # smaller, off-centre
    assert predicted(pg).startswith("Predicted: A"), predicted(pg)
    # one probability bar per symbol, the predicted one's share as in the heading
    share = predicted(pg).rsplit("(", 1)[1].rstrip(")")
    bars = [b.inner_text() for b in pg.locator('[data-testid="stProgress"]').all()]
    assert [b.split(":")[0] for b in bars if b[:2] in ("A:", "B:", "C:")] == ["A", "B", "C"], bars
    assert f"A: {share}" in bars, (share, bars)
    no_exception(pg)
    full_page_screenshot(pg, SHOTS / "draw.png", WIDTH)

    main_button(pg, "Clear").nth(3).click()
    wait_idle(pg)
    pg.wait_for_selector("h3:has-text('Predicted:')", state="detached", timeout=30_000)
    draw(pg, 3, [line_points((0.3, 0.35), (0.75, 0.8)), line_points((0.75, 0.3), (0.3, 0.85))])
    assert predicted(pg).startswith("Predicted: B"), predicted(pg)
    no_exception(pg)
