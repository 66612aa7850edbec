"""The ready-trained models (``engine.ready_models``) in the app: the session's first engine.

Each ready model is loaded once per server process (``st.cache_resource``) and every session
gets a shared view of it (``OneShotMetaLearningEngine.shared_view``): the weights are shared
read-only, the session's adaptations are its own, and the first change (a Continue run,
discovery, a setting) gives the session its own copy. A session's engine follows its task source
(a ready model for each kind that has one) until the session trains or loads its own model; then
that one stays.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import streamlit as st

from engine import CheckpointError, ConfigError, OneShotMetaLearningEngine
from engine.ready_models import READY_MODELS, ReadyModel, load_ready_model, ready_model
from engine.tasks import TaskSource

from .adaptation import error_by_points
from .fit import engine_fit_problem

log = logging.getLogger(__name__)

READY_FOR_KIND = {m.source: m.name for m in READY_MODELS.values()}  # the registry says which kind each serves
_IN_USE = "ready_in_use"  # session key: {"name", "engine", "iterations"} of the ready copy handed out
_DEFAULT = "default_engine"  # session key: the untrained engine made when no ready model fits
TRAIN_YOUR_OWN = "Meta-train your own (replaces the ready model for this session)"  # the Home demo's button
_SEEN = "model_seen"  # session key: id(engine) -> (iterations, "HH:MM") when first seen trained


@st.cache_resource(show_spinner=False)
def shared_ready_engine(name: str) -> OneShotMetaLearningEngine | None:
    """The ready model ``name``, loaded once per process (None, logged, when missing or unreadable).
    Never hand this one to a session: use ``session_view``."""
    try:
        return load_ready_model(name, device="cpu")
    except (FileNotFoundError, CheckpointError, ConfigError, ValueError) as exc:
        log.warning("ready model %s not used: %s", name, exc)
        return None


def _same_tasks(eng: OneShotMetaLearningEngine, source: TaskSource) -> bool:
    """Whether the model serves the source: its shapes fit, and an SCM model was trained on this very SCM
    (another graph or seed has other mechanisms)."""
    if engine_fit_problem(eng, source) is not None:
        return False
    if source.name != "scm":
        return True
    info = eng.source_info or {}
    return all(info.get(k) == v for k, v in source.describe().items())


def ready_name_for(source: TaskSource | None) -> str | None:
    """The ready model that serves this task source, if one was made and fits it."""
    name = READY_FOR_KIND.get(getattr(source, "name", ""))
    if name is None or source is None:
        return None
    shared = shared_ready_engine(name)
    return name if shared is not None and _same_tasks(shared, source) else None


def _iterations(eng: OneShotMetaLearningEngine) -> int:
    return len(eng.history.iteration) if eng.history else 0


def session_view(name: str) -> OneShotMetaLearningEngine:
    """This session's view of the ready model ``name`` (no tensor copied), remembered as the ready one in use."""
    shared = shared_ready_engine(name)
    if shared is None:
        raise FileNotFoundError(f"ready model {name!r} is not available")
    eng = shared.shared_view()
    st.session_state[_IN_USE] = {"name": name, "engine": eng, "iterations": _iterations(eng)}
    return eng


def ready_in_use(eng: OneShotMetaLearningEngine | None) -> ReadyModel | None:
    """The ready model this engine is, unchanged (a Continue run makes it the session's own)."""
    entry = st.session_state.get(_IN_USE)
    if eng is None or not entry or entry["engine"] is not eng or _iterations(eng) != entry["iterations"]:
        return None
    return ready_model(entry["name"])


def _automatic(eng: OneShotMetaLearningEngine | None) -> bool:
    """Whether the engine is one this module chose (a ready copy or the untrained default), so it may follow
    the task source; a model the session trained, continued or loaded is never replaced here."""
    if eng is None or ready_in_use(eng) is not None:
        return True
    return eng is st.session_state.get(_DEFAULT) and not eng.is_trained


def engine_for(
    current: OneShotMetaLearningEngine | None,
    source: TaskSource,
    make_default: Callable[[], OneShotMetaLearningEngine],
    busy: bool = False,
) -> OneShotMetaLearningEngine | None:
    """The engine the session should now use for ``source``, or None to keep ``current``.

    A ready model when one fits the source, else the untrained default; only while ``current`` is itself
    automatic and no job of the session runs."""
    if current is not None and (busy or not _automatic(current)):
        return None
    name = ready_name_for(source)
    in_use = ready_in_use(current)
    if name is not None:
        return None if in_use is not None and in_use.name == name else session_view(name)
    if current is not None and in_use is None:
        return None  # already the untrained default
    fresh = make_default()
    st.session_state[_DEFAULT] = fresh
    return fresh


def model_label(eng: OneShotMetaLearningEngine, training: bool, kept: bool = False) -> str:
    """What the sidebar says about the model in use; ``kept``: a new model trains and this one stays in use
    until that run finishes."""
    if training and not kept:
        return "training…"
    if training:
        return f"{model_label(eng, False)} (in use until the new one finishes)"
    ready = ready_in_use(eng)
    if ready is not None:
        return ready.title
    if not eng.is_trained:
        return "none"
    seen = st.session_state.setdefault(_SEEN, {})
    n = _iterations(eng)
    if seen.get(id(eng), (None,))[0] != n:
        seen[id(eng)] = (n, time.strftime("%H:%M"))
    return f"your model trained at {seen[id(eng)][1]}, {n} iterations"


_MEASURE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ready-measure")
_MEASUREMENTS: dict[tuple[str, str], Future] = {}  # (ready model, task source) -> its measurement, per process
_MEASUREMENTS_LOCK = threading.Lock()


def ready_error_by_points(name: str, source: Any, grid: np.ndarray, start: bool = True) -> dict[str, Any] | None:
    """``error_by_points`` (100 held-out tasks) on the ready model for this task source, measured once per
    process in the background (it takes seconds): None while it runs, or when it has not started and
    ``start`` is False (a page that asks only after it is drawn leaves the first render the CPU)."""
    key = (name, json.dumps(source.describe(), sort_keys=True, default=str))
    with _MEASUREMENTS_LOCK:
        future = _MEASUREMENTS.get(key)
        if future is None and start:
            shared = shared_ready_engine(name)
            if shared is None:
                raise FileNotFoundError(f"ready model {name!r} is not available")
            future = _MEASUREMENTS[key] = _MEASURE.submit(error_by_points, shared.shared_view(), source, grid)
    return future.result() if future is not None and future.done() else None
