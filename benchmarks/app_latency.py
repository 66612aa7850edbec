"""App latency in a real browser (Debian's Chromium through Playwright).

1. Start: from launching ``streamlit run app.py`` to the Home page being interactive
   (connected, script idle, the demo's button visible), over ``--starts`` cold starts.
2. Adapt: on the Home demo (its sinusoid MAML meta-trained to the end),
   from clicking "Adapt to this point" to the adapted curve with that point shown, over
   ``--clicks`` clicks at different x.
3. Stroke-up -> label: on the Home page's "Draw three symbols" (the ready Omniglot model), three
   example symbols drawn once, then ``--strokes`` times: the test canvas cleared, one stroke drawn
   (a circle or a bar, in turn), measured in the browser from the mouse-up to the predicted label
   shown (the canvas sending its picture, the rerun, preprocessing, adaptation, prediction, redraw).

    python -m engine bench app_latency --starts 3 --clicks 20 --strokes 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from statistics import median

import numpy as np

from .browser import (
    CHROMIUM,
    DRAWING_CANVAS,
    IDLE,
    circle_points,
    free_port,
    line_points,
    mouse_stroke,
    streamlit_command,
)
from .browser import CHROMIUM_ARGS as ARGS
from .common import ROOT, machine_line, update_markdown_section, write_result

TRAIN_YOUR_OWN = "Meta-train your own (replaces the ready model for this session)"  # ui.ready's button
# A chart in the page holds a drawn adapted curve (plotly has rendered it: its SVG path exists).
FIRST_ADAPTED = """() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
    (el.data || []).some(t => t.name === 'after one-shot adaptation' && (t.x || []).length > 0)
    && el.querySelector('.scatterlayer .trace path'))"""


def _server(port: int) -> subprocess.Popen:
    cmd = streamlit_command(port)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))


def _button(pg, name: str):
    return pg.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


def measure_start(p) -> tuple[float, float]:
    """Seconds from launching the server to an interactive Home page, and to the first adapted curve drawn."""
    port = free_port()
    t0 = time.perf_counter()
    proc = _server(port)
    try:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page()
        while True:
            try:
                pg.goto(f"http://127.0.0.1:{port}", timeout=2000)
                break
            except Exception:  # server not listening yet
                if time.perf_counter() - t0 > 120:
                    raise
                time.sleep(0.1)
        pg.wait_for_function(FIRST_ADAPTED, timeout=120_000)
        first_adapted = time.perf_counter() - t0
        pg.wait_for_selector(IDLE, timeout=120_000)
        _button(pg, TRAIN_YOUR_OWN).wait_for(state="visible", timeout=120_000)
        elapsed = time.perf_counter() - t0
        browser.close()
        return elapsed, first_adapted
    finally:
        proc.terminate()
        proc.wait(15)


def measure_adapt(p, clicks: int) -> list[float]:
    port = free_port()
    proc = _server(port)
    try:
        browser, pg = _open_home(p, port)
        _button(pg, TRAIN_YOUR_OWN).click()
        _button(pg, "Stop").wait_for(state="visible")
        _button(pg, "Stop").wait_for(state="detached", timeout=600_000)  # the whole demo run
        pg.wait_for_selector(IDLE)
        try:
            _button(pg, "Adapt to this point").wait_for(state="visible")
        except Exception:
            pg.screenshot(path="/tmp/app_latency_fail.png", full_page=True)
            raise
        times = []
        for x in np.linspace(-4.5, 4.5, clicks):
            pg.get_by_label("x", exact=True).fill(f"{x:.2f}")
            pg.get_by_label("x", exact=True).press("Tab")
            pg.wait_for_selector(IDLE)
            pg.wait_for_timeout(300)
            t0 = time.perf_counter()
            _button(pg, "Adapt to this point").click()
            pg.wait_for_function(
                """(x) => [...document.querySelectorAll('.js-plotly-plot')].some(el => (el.data || []).some(
                       t => t.name === 'your point' && t.x && Math.abs(t.x[t.x.length - 1] - x) < 0.01))""",
                arg=float(f"{x:.2f}"),
            )
            times.append(time.perf_counter() - t0)
        browser.close()
        return times
    finally:
        proc.terminate()
        proc.wait(15)


def _open_home(p, port: int):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(120_000)
    for _ in range(600):
        try:
            pg.goto(f"http://127.0.0.1:{port}", timeout=2000)
            break
        except Exception:
            time.sleep(0.2)
    pg.wait_for_selector(IDLE)
    return browser, pg


def _idle(pg) -> None:
    pg.wait_for_timeout(300)
    pg.wait_for_selector(IDLE)


def measure_strokes(p, strokes: int) -> list[float]:
    """Seconds from mouse-up on the test canvas to the predicted label, ``strokes`` times."""
    port = free_port()
    proc = _server(port)
    try:
        browser, pg = _open_home(p, port)
        canvases = pg.locator(DRAWING_CANVAS)
        canvases.nth(3).wait_for(state="visible")
        examples = [  # strokes start below the top quarter, where the canvas's toolbar shows on hover
            [circle_points(0.5, 0.5, 0.35)],
            [line_points((0.2, 0.25), (0.8, 0.85)), line_points((0.8, 0.25), (0.2, 0.85))],
            [line_points((0.5, 0.25), (0.5, 0.9))],
        ]
        for i, shape in enumerate(examples):
            canvases.nth(i).scroll_into_view_if_needed()
            for points in shape:
                mouse_stroke(pg, canvases.nth(i), points)
                _idle(pg)
        label = pg.locator("h3:has-text('Predicted:')")
        times = []
        for k in range(strokes):
            if k:
                _button(pg, "Clear").nth(3).click()
                label.wait_for(state="detached")
                _idle(pg)
            test = circle_points(0.45, 0.55, 0.25) if k % 2 == 0 else line_points((0.5, 0.3), (0.5, 0.85))
            canvases.nth(3).scroll_into_view_if_needed()
            mouse_stroke(pg, canvases.nth(3), test, release=False)
            t0 = time.perf_counter()
            pg.mouse.up()
            label.wait_for(state="visible")
            times.append(time.perf_counter() - t0)
            _idle(pg)
        browser.close()
        return times
    finally:
        proc.terminate()
        proc.wait(15)


def _stats(values: list[float], name: str) -> dict:
    if not values:
        return {}
    return {f"{name}_median_s": median(values), f"{name}_p95_s": float(np.percentile(values, 95))}


def _rows(r: dict) -> list[str]:
    rows = []
    if r.get("start_s"):
        rows.append(
            f"| `streamlit run` to an interactive Home page (server start, torch import, first render) | "
            f"{r['start_median_s']:.1f} s | {r['start_p95_s']:.1f} s | {len(r['start_s'])} |"
        )
    if r.get("first_adapted_s"):
        rows.append(
            f"| `streamlit run` to the first curve adapted by the ready model drawn (Home, no training) | "
            f"{r['first_adapted_median_s']:.1f} s | {r['first_adapted_p95_s']:.1f} s | {len(r['first_adapted_s'])} |"
        )
    if r.get("adapt_s"):
        rows.append(
            f"| click Adapt to the adapted curve shown (Home demo) | {1000 * r['adapt_median_s']:.0f} ms | "
            f"{1000 * r['adapt_p95_s']:.0f} ms | {len(r['adapt_s'])} |"
        )
    if r.get("stroke_s"):
        rows.append(
            f"| stroke-up on the test canvas to the predicted label (Home, draw to adapt, ready Omniglot model; "
            f"measured in the browser) | {1000 * r['stroke_median_s']:.0f} ms | {1000 * r['stroke_p95_s']:.0f} ms | "
            f"{len(r['stroke_s'])} |"
        )
    return rows


def markdown(r: dict) -> str:
    return "\n".join(
        [
            "## App latency in the browser",
            "",
            "| measure | median | p95 | runs |",
            "|---|---|---|---|",
            *_rows(r),
            "",
            "The adapt time includes the Streamlit rerun, the engine's adaptation (a few ms) and the browser "
            "redrawing the charts.",
            "",
            f"Machine: {machine_line(r['machine'])}. Command: `{r['command']}`.",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--strokes", type=int, default=10, help="stroke-up -> label measurements (0: skip)")
    ap.add_argument("--no-write", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        measured = [measure_start(p) for _ in range(args.starts)]
        adapts = measure_adapt(p, args.clicks) if args.clicks else []
        strokes = measure_strokes(p, args.strokes) if args.strokes else []
    result = {
        "start_s": [m[0] for m in measured],
        "first_adapted_s": [m[1] for m in measured],
        "adapt_s": adapts,
        "stroke_s": strokes,
    }
    for name in ("start", "first_adapted", "adapt", "stroke"):
        result.update(_stats(result[f"{name}_s"], name))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    if not args.no_write:
        write_result("app_latency", result, 0)
        saved = json.loads((ROOT / "benchmarks" / "results" / "app_latency.json").read_text())
        update_markdown_section("app_latency", markdown(saved))
    return result


if __name__ == "__main__":
    main()
