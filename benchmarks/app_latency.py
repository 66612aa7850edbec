"""App latency in a real browser (Debian's Chromium through Playwright).

1. Start: from launching ``streamlit run app.py`` to the Home page being interactive
   (connected, script idle, the demo's button visible), over ``--starts`` cold starts.
2. Adapt: on the Home demo (its sinusoid MAML meta-trained to the end),
   from clicking "Adapt to this point" to the adapted curve with that point shown, over
   ``--clicks`` clicks at different x.

    python -m engine bench app_latency --starts 3 --clicks 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from statistics import median

import numpy as np

from .browser import CHROMIUM, IDLE, free_port, streamlit_command
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


def markdown(r: dict) -> str:
    return "\n".join(
        [
            "## App latency in the browser",
            "",
            "| measure | median | p95 | runs |",
            "|---|---|---|---|",
            f"| `streamlit run` to an interactive Home page (server start, torch import, first render) | {r['start_median_s']:.1f} s | {r['start_p95_s']:.1f} s | {len(r['start_s'])} |",
            f"| `streamlit run` to the first curve adapted by the ready model drawn (Home, no training) | "
            f"{r['first_adapted_median_s']:.1f} s | {r['first_adapted_p95_s']:.1f} s | {len(r['first_adapted_s'])} |",
            f"| click Adapt to the adapted curve shown (Home demo) | {1000 * r['adapt_median_s']:.0f} ms | "
            f"{1000 * r['adapt_p95_s']:.0f} ms | {len(r['adapt_s'])} |",
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
    ap.add_argument("--no-write", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        measured = [measure_start(p) for _ in range(args.starts)]
        adapts = measure_adapt(p, args.clicks) if args.clicks else [float("nan")]  # --clicks 0: starts only
    starts = [m[0] for m in measured]
    firsts = [m[1] for m in measured]
    result = {
        "first_adapted_s": firsts,
        "first_adapted_median_s": median(firsts),
        "first_adapted_p95_s": float(np.percentile(firsts, 95)),
        "start_s": starts,
        "start_median_s": median(starts),
        "start_p95_s": float(np.percentile(starts, 95)),
        "adapt_s": adapts,
        "adapt_median_s": median(adapts),
        "adapt_p95_s": float(np.percentile(adapts, 95)),
    }
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    if not args.no_write:
        write_result("app_latency", result, 0)
        saved = json.loads((ROOT / "benchmarks" / "results" / "app_latency.json").read_text())
        update_markdown_section("app_latency", markdown(saved))
    return result


if __name__ == "__main__":
    main()
