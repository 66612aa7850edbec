"""Injection in a real browser: names from uploads are shown as text, never run as markup.

A CSV and an image zip are built here whose file names, task names, class labels, column
(feature) names and folder names carry HTML, script, markdown, LaTeX and template syntax.
They are uploaded through the app's file inputs in headless Chromium, and every page that
shows those names is visited (Tasks, Meta-train, Mechanisms with its pyvis graph iframe,
Interventions, One-shot adapt). On each page, in the main document and in every iframe:

* ``window.__pwned`` stays undefined (every payload would set it if it ran);
* no element built from a name exists: no ``<img src=x>``, no script or event handler that
  mentions ``__pwned``, no bold/strong "bold" or "strong", no link whose text hides its
  target, no KaTeX formula of ``x^2``, no ``:red[...]`` coloured span, no bold tspan in a
  Plotly chart (a bare URL that Streamlit's GFM shows as a link to itself is allowed);
* the markup itself is visible as text (e.g. ``<b>bold</b>``);
* no stException.

Needs Debian's Chromium at /usr/bin/chromium (skipped otherwise, like test_browser_e2e.py).
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

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

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "tests" / "screenshots"
WIDTH = 1400

IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=1</script>"
BOLD = '"><b>bold</b>'
TEMPLATE = "{{7*7}}"
MARKDOWN = "**strong** ![pic](x) [link](https://example.invalid/) $x^2$ :red[red]"

# CSV: columns are task, four features, target (the app guesses task = first text column,
# target = last column). Classes depend on every feature, so discovery finds each of them.
TASK_COLUMN = f"task {TEMPLATE}"
TARGET_COLUMN = f"{BOLD} label"
FEATURES = [IMG, SCRIPT, BOLD, MARKDOWN]
CLASSES = [IMG, "<b>bold</b>", f"{TEMPLATE} **strong**"]
TASKS = [SCRIPT, f"{BOLD} task", f"{IMG} task", f"{TEMPLATE} task", f"{MARKDOWN} task", "plain task"]
# Chromium writes '"' in an uploaded file name as %22 (multipart form encoding): unquoted here.
IMG_UNQUOTED = "<img src=x onerror=window.__pwned=1>"
CSV_NAME = f"{IMG_UNQUOTED} {TEMPLATE}.csv"

# Image zip: folder names cannot hold "/", so no closing tags here.
ZIP_GROUPS = [f"{IMG} alphabet", "**strong** group"]
ZIP_CLASS_STEMS = [IMG, "**strong**", "![pic](x)", "$x^2$", ":red[red]", TEMPLATE]
ZIP_NAME = f"{IMG_UNQUOTED} {TEMPLATE}.zip"

# Elements that exist only if a name was interpreted as HTML / markdown / LaTeX / Plotly markup.
FIND_INJECTED = r"""() => {
  const found = [];
  const add = (what, el) => found.push(what + ': ' + (el.outerHTML || '').slice(0, 160));
  for (const el of document.querySelectorAll('*')) {
    // Values (aria-label, value, title) may hold names; handlers and script links may not.
    for (const a of el.attributes) {
      const script = (a.name === 'href' || a.name === 'src') && /^\s*javascript:/i.test(a.value);
      if ((a.name.startsWith('on') && a.value.includes('__pwned')) || script) add('attribute ' + a.name, el);
    }
    // A link whose text hides its target ([link](https://example.invalid/)). Streamlit's GFM
    // turns a bare URL into a link showing exactly that URL (even when escaped): allowed.
    const href = el.getAttribute('href') || '';
    if (el.tagName === 'A' && href.includes('example.invalid') && el.textContent.trim() !== href) add('link', el);
  }
  for (const el of document.querySelectorAll('img')) {
    const src = el.getAttribute('src') || '';
    if (src === 'x' || /\/x$/.test(src)) add('img', el);
  }
  for (const el of document.querySelectorAll('script')) {
    if ((el.textContent || '').trim() === 'window.__pwned=1') add('script', el);
  }
  for (const el of document.querySelectorAll('b, strong, em, i')) {
    const t = (el.textContent || '').trim();
    if (t === 'bold' || t === 'strong') add('bold', el);
  }
  for (const el of document.querySelectorAll('tspan')) {
    const t = (el.textContent || '').trim();
    if ((t === 'bold' || t === 'strong') && /bold/.test(el.getAttribute('style') || '')) add('plotly bold', el);
  }
  for (const el of document.querySelectorAll('.katex annotation')) {
    if ((el.textContent || '').includes('x^2')) add('katex', el);
  }
  for (const el of document.querySelectorAll('span')) {
    if ((el.textContent || '') === 'red' && el.children.length === 0) add('colored span', el);
  }
  return found;
}"""


# ---------------------------------------------------------------------------------------------- data


def evil_csv() -> bytes:
    rng = np.random.default_rng(0)
    rows = []
    for ti, task in enumerate(TASKS):
        for ci, label in enumerate(CLASSES):
            for _ in range(12):
                x = rng.normal(size=4) + ci * np.array([2.0, -2.0, 1.5, 1.5]) + 0.1 * ti
                rows.append({TASK_COLUMN: task, **dict(zip(FEATURES, x.round(4), strict=True)), TARGET_COLUMN: label})
    return pd.DataFrame(rows).to_csv(index=False).encode()


def evil_zip() -> bytes:
    """12 classes (2 groups x 6), 8 drawings each: 2-way tasks have 2 test classes."""
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for g, group in enumerate(ZIP_GROUPS):
            for c, stem in enumerate(ZIP_CLASS_STEMS):
                base = np.zeros((28, 28), np.uint8)
                base[4 + 3 * c : 8 + 3 * c, 2 + 10 * g : 16 + 10 * g] = 255  # a class-specific bar
                for i in range(8):
                    img = np.roll(base, int(rng.integers(-2, 3)), axis=1) | (rng.random((28, 28)) > 0.97) * 255
                    png = io.BytesIO()
                    Image.fromarray(img.astype(np.uint8)).save(png, format="PNG")
                    zf.writestr(f"evil_root/{group}/{stem} {g}/{i}.png", png.getvalue())
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    require_browser()
    from playwright.sync_api import sync_playwright

    log = tmp_path_factory.mktemp("streamlit-injection") / "server.log"
    with streamlit_app(log) as (_pid, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        pg.set_default_timeout(90_000)
        pg.goto(url)
        wait_idle(pg)
        yield pg
        browser.close()


# ---------------------------------------------------------------------------------------------- checks


def main_text(pg) -> str:
    """What the page shows as text, with the values of its inputs (select boxes show theirs there)."""
    values = pg.evaluate("() => [...document.querySelectorAll('input, textarea')].map(i => i.value).join('\\n')")
    return pg.locator('[data-testid="stApp"]').inner_text() + "\n" + values


def assert_inert(pg, *literals: str) -> None:
    """Nothing ran, nothing was built from a name, and each literal is shown as text."""
    wait_idle(pg)
    # On a loaded machine the browser can draw an element (such as the Tasks page's "feature columns"
    # select, which shows a name) after wait_idle saw the script run end: wait for the literals, then
    # check the page as it is then.
    text = main_text(pg)
    deadline = time.monotonic() + 30
    while not all(lit in text for lit in literals) and time.monotonic() < deadline:
        pg.wait_for_timeout(500)
        text = main_text(pg)
    no_exception(pg)
    for frame in pg.frames:
        assert frame.evaluate("() => typeof window.__pwned") == "undefined", f"script ran in {frame.url}"
        injected = frame.evaluate(FIND_INJECTED)
        assert injected == [], f"elements built from names in {frame.url or 'the page'}:\n" + "\n".join(injected)
    for lit in literals:
        assert lit in text, f"{lit!r} is not shown as text in:\n{text[-3000:]}"


def plotly_texts(pg) -> str:
    return "\n".join(
        pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot text')].map(t => t.textContent)")
    )


def upload(pg, name: str, data: bytes, mime: str) -> None:
    pg.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        {"name": name, "mimeType": mime, "buffer": data}
    )


def screenshot(pg, name: str) -> Path:
    return full_page_screenshot(pg, SHOTS / f"{name}.png", WIDTH)


def set_number(pg, label: str, value: str) -> None:
    box = pg.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(pg)


def train(pg, iterations: int, run_name: str, threshold: str | None = None) -> None:
    goto(pg, "Meta-train")
    set_number(pg, "Meta-training iterations", str(iterations))
    if threshold is not None:
        pg.locator('[data-testid="stExpander"] summary', has_text="Causal").first.click()
        set_number(pg, "Mechanism threshold", threshold)
    name = pg.get_by_label("run name", exact=True)
    name.fill(run_name)
    name.press("Enter")
    wait_idle(pg)
    main_button(pg, "Start").click()
    stop = main_button(pg, "Stop")
    stop.wait_for(state="visible", timeout=90_000)
    # while it trains, the progress bars (markdown text) and the live chart title name the run
    shown = False
    deadline = time.monotonic() + 300
    while stop.count() and time.monotonic() < deadline:
        assert pg.evaluate("() => typeof window.__pwned") == "undefined"
        injected = pg.evaluate(FIND_INJECTED)
        assert injected == [], "elements built from the run name while training:\n" + "\n".join(injected)
        shown = shown or run_name in main_text(pg)
        pg.wait_for_timeout(400)
    assert shown, "the run name was never shown as typed while training"
    main_button(pg, "Stop").wait_for(state="detached", timeout=300_000)
    wait_idle(pg)
    pg.wait_for_selector("text=Training finished", timeout=30_000)


# ---------------------------------------------------------------------------------------------- tests


def test_csv_names_are_text_on_every_page(page):
    pg = page
    goto(pg, "Tasks")
    pg.get_by_text("Upload a CSV", exact=True).click()
    wait_idle(pg)

    # a file name with markup, in an error message that quotes it
    upload(pg, CSV_NAME, b"a,b\n1,2\n", "text/csv")
    pg.wait_for_selector("text=at least a feature column", timeout=60_000)
    assert_inert(pg, CSV_NAME)

    # the real upload: task, feature, target and class names with markup
    upload(pg, CSV_NAME, evil_csv(), "text/csv")
    pg.wait_for_selector("text=target column", timeout=60_000)
    assert_inert(pg, TARGET_COLUMN, TASK_COLUMN, IMG, SCRIPT, MARKDOWN)
    assert pg.locator('[data-testid="stAlertContentError"]').count() == 0
    main_button(pg, "Use this task source").click()
    pg.wait_for_selector("text=Now using CSV", timeout=60_000)
    # the preview's heading names a training task; the sidebar names the target and task columns
    assert_inert(pg, "<b>bold</b>", "One episode of task", f"target '{TARGET_COLUMN}'")
    shown = main_text(pg)
    assert any(f"One episode of task {t}" in shown for t in TASKS), shown[:2000]
    screenshot(pg, "injection_tasks_csv")

    # Meta-train with a run name that carries markup (progress bar, chart title, run table);
    # threshold 0 keeps every measured effect, so every feature name reaches the mechanism graph.
    run = "<b>bold</b> run **strong**"
    train(pg, 25, run, threshold="0")
    assert_inert(pg, run)
    assert run in plotly_texts(pg), "the chart title does not show the run name as typed"
    screenshot(pg, "injection_train")

    # Mechanisms: discovery, the table, and the pyvis graph (labels and hover titles)
    goto(pg, "Mechanisms")
    tasks_slider = pg.locator('[data-testid="stSlider"] input[type="range"][aria-label="tasks"]')
    tasks_slider.focus()
    for _ in range(3):  # 16 -> 4 tasks
        pg.keyboard.press("ArrowLeft")
    wait_idle(pg)
    held = pg.locator('[data-testid="stSlider"] input[type="range"][aria-label="held-out tasks"]')
    held.focus()
    pg.keyboard.press("ArrowLeft")  # 8 -> 4 held-out tasks
    wait_idle(pg)
    main_button(pg, "Run discovery").click()
    pg.wait_for_selector("text=Last discovery", timeout=300_000)
    assert_inert(pg)
    frame = pg.frame_locator('[data-testid="stMain"] iframe').first
    frame.locator("canvas").first.wait_for(state="attached", timeout=60_000)
    graph = next(f for f in pg.frames if f != pg.main_frame and f.evaluate("() => typeof network") == "object")
    graph.evaluate("() => network.setOptions({physics: false})")  # hold the nodes still to hover them
    labels = graph.evaluate("() => nodes.get().map(n => n.label)")
    for name in FEATURES:
        assert name in labels, f"graph label {name!r} is not drawn as typed: {labels}"
    # hover each feature node: vis-network shows its title in a tooltip div, as text only
    iframe = pg.locator('[data-testid="stMain"] iframe').first
    iframe.scroll_into_view_if_needed()
    pg.wait_for_timeout(300)
    iframe_box = iframe.bounding_box()
    hovered = 0
    for name in FEATURES:
        pos = graph.evaluate(
            """(label) => { const n = nodes.get().find(n => n.label === label);
                            const d = network.canvasToDOM(network.getPositions([n.id])[n.id]);
                            const r = document.querySelector('canvas').getBoundingClientRect();
                            return {x: r.left + d.x, y: r.top + d.y}; }""",
            name,
        )
        pg.mouse.move(iframe_box["x"] + pos["x"], iframe_box["y"] + pos["y"])
        pg.wait_for_timeout(100)
        pg.mouse.move(iframe_box["x"] + pos["x"] + 1, iframe_box["y"] + pos["y"])
        try:
            graph.wait_for_function(
                """(name) => { const t = document.querySelector('div.vis-tooltip');
                               return t && t.style.visibility !== 'hidden' && t.innerText.includes(name); }""",
                arg=name,
                timeout=5_000,
            )
        except Exception:  # noqa: BLE001 - an overlapping node took the hover; others are checked
            continue
        tip = graph.evaluate(
            "() => { const t = document.querySelector('div.vis-tooltip'); return [t.innerText, t.children.length]; }"
        )
        assert tip == [f"feature: {name}", 0], tip
        hovered += 1
    assert hovered >= 2, "no feature node's tooltip could be shown"
    assert_inert(pg)
    screenshot(pg, "injection_mechanisms")

    # Interventions: the held-out task's name in a sentence, class names in the chart and table
    goto(pg, "Interventions")
    assert_inert(pg, f"task {MARKDOWN} task")
    ticks = plotly_texts(pg)
    for label in CLASSES:
        assert label in ticks, f"class {label!r} is not a chart label as typed:\n{ticks}"
    main_button(pg, "Measure the effect of each mechanism").click()
    assert_inert(pg)
    main_button(pg, "Adapt level by level").click()
    assert_inert(pg)
    screenshot(pg, "injection_interventions")

    # One-shot adapt: task names in the select box, feature names in the explanation
    goto(pg, "One-shot adapt")
    assert_inert(pg, f"{MARKDOWN} task")
    main_button(pg, "Adapt to these rows").click()
    pg.wait_for_selector("text=Explanation.", timeout=60_000)
    assert_inert(pg, "Features that mattered")
    explanation = pg.locator(
        '[data-testid="stMarkdownContainer"]', has_text="Features that mattered"
    ).first.inner_text()
    assert sum(name in explanation for name in FEATURES) >= 2, explanation
    screenshot(pg, "injection_adapt")


def test_image_zip_names_are_text_on_every_page(page):
    pg = page
    goto(pg, "Tasks")
    pg.get_by_text("Upload an image zip", exact=True).click()
    wait_idle(pg)
    set_number(pg, "classes per task (N-way)", "2")
    upload(pg, ZIP_NAME, evil_zip(), "application/zip")
    pg.wait_for_selector('[data-testid="stImage"]', timeout=60_000)
    # the preview's caption lists the groups; each image's caption is its class folder
    assert_inert(pg, *ZIP_GROUPS)
    captions = pg.locator('[data-testid="stImage"]').all_inner_texts()
    assert any(s in c for c in captions for s in ZIP_CLASS_STEMS), captions
    main_button(pg, "Use this task source").click()
    pg.wait_for_selector("text=Now using images", timeout=60_000)
    assert_inert(pg, "<uploaded zip>")
    screenshot(pg, "injection_tasks_zip")

    train(pg, 8, f"{IMG} zip run")
    assert_inert(pg, f"{IMG} zip run")

    goto(pg, "One-shot adapt")
    pg.wait_for_selector('[data-testid="stImage"]', timeout=60_000)
    main_button(pg, "Adapt and label the query drawings").click()
    pg.wait_for_selector("text=Predictions on the query pictures", timeout=60_000)
    assert_inert(pg)
    captions = "\n".join(pg.locator('[data-testid="stImage"]').all_inner_texts())
    held_out = [s for s in ZIP_CLASS_STEMS if re.search(re.escape(s) + r" \d", captions)]
    assert held_out, f"no class name shown as typed in the captions:\n{captions}"
    screenshot(pg, "injection_adapt_zip")

    goto(pg, "Interventions")
    assert_inert(pg, "-way one-shot task over")
    sentence = pg.locator('[data-testid="stMarkdownContainer"]', has_text="one-shot task over").first.inner_text()
    assert any(s in sentence for s in ZIP_CLASS_STEMS), sentence
