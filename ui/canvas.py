"""Draw to adapt: one drawing per new symbol on canvases, then a test drawing labelled after every
stroke-up, with its class probabilities, timings and occlusion maps.

``streamlit_drawable_canvas`` registers its component on import, which needs a running Streamlit
app: it is imported inside ``_canvas`` only. The model is the session's own when that is a trained
image classifier that is not busy, else the session's view of the ready Omniglot model (loaded once
per process, weights shared read-only, each session's adaptation its own).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from engine import OneShotMetaLearningEngine
from engine.algorithms import learner_class
from engine.ready_models import ready_model
from engine.tasks.drawing import EmptyDrawingError, drawing_to_input

from . import components, ready, session
from .adaptation import adapt_images, episode_occlusion
from .text import md_escape

CANVAS_PX = 168
PEN_PX = 10  # about Omniglot's stroke width relative to a character drawn across the canvas
READY = "omniglot_proto"
OCCLUSION_PATCH = 4


def _ready_view() -> OneShotMetaLearningEngine:
    """This session's view of the ready image model (``ui.ready``: loaded once, weights shared, the
    session's adaptations its own, so sessions draw at once without waiting on each other)."""
    view = st.session_state.get("draw_ready_view")
    if view is None:
        shared = ready.shared_ready_engine(READY)
        if shared is None:
            raise FileNotFoundError(f"the ready model {READY!r} is not available on this server")
        view = st.session_state["draw_ready_view"] = shared.shared_view()
    return view


def is_image_model(eng: OneShotMetaLearningEngine) -> bool:
    """A trained classifier of (channels, H, W) pictures."""
    shape = getattr(eng.model, "input_shape", ()) if eng.is_initialized else ()
    return eng.is_trained and eng.task_type == "classification" and len(tuple(shape)) == 3


def drawing_engine() -> tuple[OneShotMetaLearningEngine, str] | None:
    """(engine, what the caption calls it); None (with the reason shown) when neither the session's
    model nor the ready model can be used."""
    eng = session.engine()
    if is_image_model(eng) and session.busy_message() is None:
        return eng, "this session's image model"
    try:
        return _ready_view(), ready_model(READY).title
    except FileNotFoundError as exc:
        st.error(f"No image model to adapt: {md_escape(exc)}")
        return None


def _clear(key: str) -> None:
    st.session_state[f"{key}_v"] = st.session_state.get(f"{key}_v", 0) + 1  # a new key: an empty canvas


def _canvas(key: str) -> np.ndarray | None:
    """One drawing canvas with a Clear button; its RGBA pixels, None before the first stroke."""
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=PEN_PX,
        stroke_color="#000000",
        background_color="#ffffff",
        update_streamlit=True,  # each stroke-up sends the drawing and reruns
        height=CANVAS_PX,
        width=CANVAS_PX,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"{key}_{st.session_state.get(f'{key}_v', 0)}",
    )
    st.button("Clear", key=f"{key}_clear", on_click=_clear, args=(key,))
    return result.image_data


@st.cache_data(max_entries=64, show_spinner=False)
def _prepare(pixels: np.ndarray, size: int) -> np.ndarray:
    return drawing_to_input(pixels, size)


def prepared(pixels: np.ndarray | None, size: int) -> np.ndarray | None:
    """The model input of a canvas (cached by its pixels); None for a canvas without strokes."""
    if pixels is None:
        return None
    try:
        return _prepare(np.ascontiguousarray(pixels), size)
    except EmptyDrawingError:
        return None


def _names(key: str, n: int) -> list[str]:
    names = []
    for i in range(n):
        name = st.session_state.get(f"{key}_name{i}", "") or chr(ord("A") + i)
        names.append(name.strip()[:40] or chr(ord("A") + i))
    return names


def _image_size(eng: OneShotMetaLearningEngine) -> int:
    return int(eng.model.input_shape[-1])


def draw_to_adapt(key: str, default_n: int = 3) -> None:
    """The whole section: symbol count, N example canvases, a test canvas and the result.

    A fragment: a stroke-up reruns this section only, not the page around it."""
    _draw_section(key, default_n)


@st.fragment
def _draw_section(key: str, default_n: int) -> None:
    picked = drawing_engine()
    if picked is None:
        return
    eng, title = picked
    embedding = learner_class(eng.config.algorithm).embedding_only
    top = 5 if embedding else max(2, min(5, int(eng.output_dim)))
    n = st.select_slider("new symbols", list(range(2, top + 1)), value=min(default_n, top), key=f"{key}_n")
    st.caption(f"Model: **{md_escape(title)}**. Draw one example of each symbol, then a test symbol below.")
    size = _image_size(eng)
    support, cols = [], st.columns(n)
    for i, col in enumerate(cols):
        with col:
            st.text_input("name", value=chr(ord("A") + i), key=f"{key}_name{i}", max_chars=40)
            support.append(prepared(_canvas(f"{key}_ex{i}"), size))
    names = _names(key, n)
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Test symbol**")
        t0 = time.perf_counter()
        query = prepared(_canvas(f"{key}_test"), size)
        prep_ms = 1000 * (time.perf_counter() - t0)
    with right:
        if any(s is None for s in support):
            missing = ", ".join(names[i] for i, s in enumerate(support) if s is None)
            st.info(f"Draw one example of each symbol first (still empty: {md_escape(missing)}).")
            return
        if query is None:
            st.info("Now draw a test symbol: its label appears after each stroke.")
            return
        sx, qx = np.stack(support), query[None]
        out = adapt_images(eng, sx, list(range(n)), qx, None, names, "your drawings")
        _show_label(key, out, prep_ms)
    _occlusion_section(key, eng, sx, qx, names, out["predicted"])


def _show_label(key: str, out: dict[str, Any], prep_ms: float) -> None:
    names, probs, p = out["class_names"], out["probabilities"][0], out["predicted"][0]
    st.markdown(f"### Predicted: {md_escape(names[p])} ({probs[p]:.0%})")
    c = st.columns(3)
    c[0].metric("adaptation time", f"{1000 * out['result']['adaptation_time']:.1f} ms")
    c[1].metric("prediction time", f"{1000 * out['prediction_time']:.1f} ms")
    c[2].metric("drawing preprocessing", f"{prep_ms:.0f} ms", help="test drawing -> model input (cached per drawing)")
    # Bars, not a plotly chart: a new figure costs 50-140 ms of server time on every stroke-up.
    st.markdown("**Class probabilities**")
    for name, prob in zip(names, probs, strict=True):
        st.progress(min(1.0, max(0.0, float(prob))), text=f"{md_escape(name)}: {float(prob):.0%}")


def _occlusion_section(key: str, eng: OneShotMetaLearningEngine, sx, qx, names, predicted) -> None:
    if not st.toggle("Show occlusion maps (a few seconds)", key=f"{key}_occ"):
        return
    n = len(sx)
    maps = episode_occlusion(eng, sx, list(range(n)), qx, predicted, n, OCCLUSION_PATCH)
    components.occlusion_row(key, maps, sx, qx, list(names), [f"test → {names[predicted[0]]}"])
    st.caption("The test drawing has no label: its loss is taken against the predicted label.")
