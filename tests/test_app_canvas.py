"""Draw to adapt without a browser: the ready Omniglot model labels drawn symbols, and the pages
show the section (AppTest). The browser test (test_browser_canvas.py) draws with the mouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from engine.ready_models import load_ready_model
from ui.adaptation import adapt_images, episode_occlusion
from ui.canvas import is_image_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def drawn(shape: str, cx: float, cy: float, r: float, width: int = 10, side: int = 168) -> np.ndarray:
    """An RGBA canvas as streamlit-drawable-canvas returns it (white paper, black strokes)."""
    im = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(0, 0, 0, 255), width=width)
    elif shape == "cross":
        d.line([cx - r, cy - r, cx + r, cy + r], fill=(0, 0, 0, 255), width=width)
        d.line([cx - r, cy + r, cx + r, cy - r], fill=(0, 0, 0, 255), width=width)
    else:
        d.line([cx, cy - r, cx, cy + r], fill=(0, 0, 0, 255), width=width)
    return np.asarray(im)


@pytest.fixture(scope="module")
def ready():
    return load_ready_model("omniglot_proto")  # missing: FileNotFoundError naming the path, a failure


def test_ready_model_labels_drawn_symbols(ready):
    from engine.tasks.drawing import drawing_to_input

    size = int(ready.model.input_shape[-1])
    support = np.stack([drawing_to_input(drawn(s, 84, 84, 58), size) for s in ("circle", "cross", "bar")])
    tests = {
        0: drawn("circle", 60, 100, 35, width=8),
        1: drawn("cross", 100, 90, 40, width=12),
        2: drawn("bar", 120, 84, 45, width=8),
    }
    assert is_image_model(ready)
    for label, canvas in tests.items():
        query = drawing_to_input(canvas, size)[None]
        out = adapt_images(ready, support, [0, 1, 2], query, None, ["circle", "cross", "bar"])
        assert out["predicted"] == [label], (label, out["probabilities"])
        assert out["prediction_time"] > 0 and out["result"]["adaptation_time"] > 0
    maps = episode_occlusion(ready, support, [0, 1, 2], query, out["predicted"], 3, patch=7)
    assert maps.support.shape == (3, size // 7, size // 7) and maps.query.shape == (1, size // 7, size // 7)
    assert maps.query[0].max() > 0  # blanking some of the bar's strokes costs its own label


def test_home_shows_the_draw_section(ready):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Draw three symbols" in h.value for h in at.subheader)
    assert any("Draw one example of each symbol first" in i.value for i in at.info)
    assert [t.value for t in at.text_input if t.key.startswith("home_draw_name")] == ["A", "B", "C"]
    assert "ready Omniglot" in " ".join(c.value for c in at.caption)


def test_adapt_page_offers_drawing_for_image_sources(ready):
    from engine.tasks import make_task_source

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["source"] = make_task_source("images", n_way=3)
    at.run()
    at.switch_page("pages/adapt.py")
    at.run()
    at.radio(key="img_mode").set_value("Draw symbols")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len([t for t in at.text_input if t.key.startswith("adapt_draw_name")]) == 3


def test_missing_ready_model_is_a_clear_message(monkeypatch, tmp_path):
    import engine.ready_models as rm
    from ui import ready

    monkeypatch.setattr(rm, "READY_DIR", tmp_path)
    ready.shared_ready_engine.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("No image model to adapt" in e.value and "omniglot" in e.value for e in at.error)
    finally:
        ready.shared_ready_engine.clear()


def test_adapt_page_occlusion_maps_of_a_held_out_episode():
    from engine import OneShotMetaLearningEngine
    from engine.tasks import make_task_source
    from ui.config_form import build_config, preset_values

    src = make_task_source("images", n_way=3)
    cfg = build_config(preset_values("images"), src).replace(conv_channels=8, hidden_dim=16, n_way=3)
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_for_source(src)  # untrained is enough to exercise the page
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["source"], at.session_state["engine"] = src, eng
    at.run()
    at.switch_page("pages/adapt.py")
    at.run()
    next(b for b in at.button if b.label == "Adapt and label the query drawings").click()
    at.run()
    at.toggle(key="img_occ").set_value(True)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    heat = [c for c in at.get("plotly_chart") if c.key.startswith("img_occ_occ") and '"heatmap"' in c.proto.spec]
    assert len(heat) == 3 + 5  # one map per support picture and per shown query
    assert any("do(patch := background)" in c.value for c in at.caption)
