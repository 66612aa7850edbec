"""Per-browser-session state (engine, task source, config values, workers, runs) and the sidebar.

Everything here lives in ``st.session_state``, so each browser session has its own engine.
Workers belong to the session's workspace (``ui.workspace``: its id is in the URL) and live in a
process-wide registry, so a reloaded page finds its running job. Only built-in, read-only task
sources are shared between sessions (``st.cache_resource``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from engine import OneShotMetaLearningEngine
from engine.tasks import OMNIGLOT_DIR, TaskSource, make_task_source

from . import ready
from .config_form import build_config, default_values, preset_values
from .job_registry import JobRegistry
from .jobs import worker_progress
from .pooled_worker import make_worker
from .source_recipe import recipe_for_call, remember
from .sources import source_label
from .text import md_escape
from .worker import DONE, ERROR, STOPPED, Worker

log = logging.getLogger(__name__)

try:  # app.py routes with st.navigation: pages/ is not Streamlit's old automatic pages folder.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
except (ImportError, AttributeError):  # pragma: no cover - other Streamlit versions
    pass

WORKER_KINDS = ("train", "discovery", "direction", "evolve")
WORKER_LABELS = {
    "train": "meta-training",
    "evolve": "settings evolution",
    "discovery": "mechanism discovery",
    "direction": "causal direction experiment",
    "graph": "graph from data",
}
# Seconds without a poll from the page before a job stops itself (the browser session has
# gone). CAUSAL_EXPLORER_HEARTBEAT_TIMEOUT overrides it (the browser tests use a few seconds).
HEARTBEAT_TIMEOUT = float(os.environ.get("CAUSAL_EXPLORER_HEARTBEAT_TIMEOUT", "") or 30.0)
POLL_SECONDS = 0.5
# Workers by workspace id, process-wide: a reload (a new browser session of the same workspace)
# finds its running job here. A reload reconnects within seconds, well inside HEARTBEAT_TIMEOUT.
REGISTRY = JobRegistry(lambda: make_worker(HEARTBEAT_TIMEOUT))


def configure_torch() -> None:
    """One intra-op torch thread per process by default (CAUSAL_EXPLORER_THREADS overrides).

    The models are small and the server shares the CPU with every session: on a busy 2-core
    machine two spinning OpenMP threads per op made training about 15x slower than one."""
    import torch

    want = int(os.environ.get("CAUSAL_EXPLORER_THREADS", "1") or 1)
    if torch.get_num_threads() != want:
        torch.set_num_threads(max(1, want))


# ---------------------------------------------------------------------------------------------
# built-in task sources: read-only, shared between sessions
# ---------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def builtin_source(name: str, **params: Any) -> TaskSource:
    """``engine.tasks.make_task_source(name, **params)`` over built-in data, shared between
    sessions (cached: a source is read-only once built)."""
    src = make_task_source(name, **params)
    remember(src, recipe_for_call(name, params))  # the run store keeps the recipe, not the source
    return src


def omniglot_zips() -> list[str]:
    return sorted(p.name for p in Path(OMNIGLOT_DIR).glob("*.zip")) if Path(OMNIGLOT_DIR).is_dir() else []


# ---------------------------------------------------------------------------------------------
# session state
# ---------------------------------------------------------------------------------------------
def source() -> TaskSource:
    ss = st.session_state
    if "source" not in ss:
        ss["source"] = builtin_source("sinusoid")
    return ss["source"]


def set_source(src: TaskSource, recipe: dict[str, Any] | None = None, upload: tuple[str, bytes] | None = None) -> None:
    """Use ``src`` in this session and store it in the workspace: ``recipe`` (ui.source_recipe) and
    ``upload`` (file name, bytes) for a source built from an uploaded file; built-in ones know theirs."""
    from . import workspace

    st.session_state["source"] = src
    st.session_state["source_version"] = st.session_state.get("source_version", 0) + 1
    workspace.save_source(src, recipe, upload)


def config_values() -> dict[str, Any]:
    ss = st.session_state
    if "config_values" not in ss:
        ss["config_values"] = preset_values(source().name)
    return ss["config_values"]


def _default_engine() -> OneShotMetaLearningEngine:
    try:
        cfg = build_config(config_values(), source())
    except ValueError:
        cfg = build_config(default_values())
    return OneShotMetaLearningEngine(cfg)


def engine() -> OneShotMetaLearningEngine:
    """The session's engine: the ready model for its task source (``ui.ready``) until the session trains or
    loads its own, else an untrained one."""
    ss = st.session_state
    chosen = ready.engine_for(ss.get("engine"), source(), _default_engine, busy=running_job() is not None)
    if chosen is not None:
        ss["engine"] = chosen
        ss["engine_version"] = ss.get("engine_version", 0) + 1
    return ss["engine"]


def set_engine(eng: OneShotMetaLearningEngine) -> None:
    st.session_state["engine"] = eng
    st.session_state["engine_version"] = st.session_state.get("engine_version", 0) + 1


def runs() -> list[dict[str, Any]]:
    return st.session_state.setdefault("runs", [])


def add_run(
    name: str, history: dict[str, Any], config: Any, note: str = "", eng: OneShotMetaLearningEngine | None = None
) -> None:
    """Keep a finished run's history for overlays (a run with the same name is replaced), and store
    it in the workspace with ``eng``'s checkpoint when given."""
    from . import workspace

    entry = {
        "name": name,
        "history": history,
        "algorithm": config.algorithm.name,
        "plain": bool(config.is_plain),
        "config": config.to_dict(),
        "note": note,
    }
    workspace.save_run(entry, eng)
    rs = runs()
    for i, r in enumerate(rs):
        if r["name"] == name:
            rs[i] = entry
            return
    rs.append(entry)


def session_dir() -> Path:
    ss = st.session_state
    if "session_dir" not in ss:
        ss["session_dir"] = tempfile.mkdtemp(prefix="causal-explorer-")
    return Path(ss["session_dir"])


def workers() -> dict[str, Worker]:
    """This session's workers by kind: its workspace's, shared with the workspace's other sessions."""
    ss = st.session_state
    ws = ss.get("ws_id")
    if ws is None:  # a page run without app.py's workspace
        return ss.setdefault("workers", {})
    ss["workers"] = REGISTRY.workers(ws)
    return ss["workers"]


def worker(kind: str) -> Worker:
    ws = st.session_state.get("ws_id")
    if ws is not None:
        w = REGISTRY.worker(ws, kind)
        workers()  # the session's view of the registry, should it have been renewed
        return w
    space = workers()
    if kind not in space:
        space[kind] = make_worker(HEARTBEAT_TIMEOUT)
    return space[kind]


def running_job() -> str | None:
    """The kind of the job running in this session, if any."""
    for kind, w in workers().items():
        if w.running:
            return kind
    return None


def busy_message() -> str | None:
    kind = running_job()
    if kind is None:
        return None
    return f"The {WORKER_LABELS.get(kind, kind)} is running: stop it or wait for it before using the engine here."


def keep_inputs(keys: dict[str, Any]) -> None:
    """Give the widgets with these keys their last values (else the defaults given) before they are
    drawn. Streamlit forgets a widget's value when its page is left; without this, a page that shows
    an earlier result would show other inputs beside it on return."""
    kept = st.session_state.setdefault("kept_inputs", {})
    for key, default in keys.items():
        if key in st.session_state:
            kept[key] = st.session_state[key]
        else:
            st.session_state[key] = kept.get(key, default)


def heartbeat_all() -> None:
    for w in workers().values():
        if w.running:
            w.heartbeat()


def start_job(kind: str, fn: Any, label: str, **meta: Any) -> str | None:
    """Start a job in the session's worker of ``kind``; a message if another job runs."""
    other = running_job()
    if other is not None:
        return f"The {WORKER_LABELS.get(other, other)} is still running: stop it first."
    w = worker(kind)
    w.start(fn, label=label, **meta)
    return None


def start_new_model(fresh: OneShotMetaLearningEngine, fn: Any, run_name: str, label: str, engines: dict) -> str | None:
    """Start the training job ``fn`` of a new model ``fresh``. A session with a trained model (its own or a
    ready one) keeps it until the run finishes, so a stopped or failed run never leaves it without a
    model (an unfinished one is offered on Meta-train); an untrained one is replaced at once."""
    replaces = engine().is_trained
    if not replaces:
        set_engine(fresh)
    st.session_state.pop("unfinished_engine", None)
    return start_job(
        "train", fn, label=label, run_name=run_name, engines=engines, successor=fresh if replaces else None
    )


def finalize_jobs() -> bool:
    """Collect finished jobs' results into the session (once per job, by one session of the
    workspace). True if one finished now."""
    from . import workspace

    changed = False
    for kind, w in list(workers().items()):
        if w.running or w.status not in (DONE, STOPPED, ERROR) or not REGISTRY.claim_result(w):
            continue
        changed = True
        if kind == "train":
            _finalize_training(w)
    if changed:
        workspace.save_engine(force=True)  # trained or discovered: store the model now
    return changed


def _finalize_training(w: Worker) -> None:
    successor = w.meta.get("successor")
    if successor is not None:
        # A new model replaces the session's trained one only when its run finished; an
        # unfinished one is offered, never swapped in silently.
        hist = successor.history
        finished = hist is not None and len(hist.iteration) >= successor.config.num_meta_iterations
        if w.status == DONE or finished:  # finished: only its plain baseline was stopped
            set_engine(successor)
        elif hist is not None:  # a run ended by killing its worker process has nothing to offer
            st.session_state["unfinished_engine"] = successor
    result = w.result or {}
    engines = w.meta.get("engines", {})
    main = engines.get(w.meta.get("run_name"))
    if successor is None and main is not None and st.session_state.get("engine") is not main:
        set_engine(main)  # a session reattached after a reload: the run trained its model in place
    for name, eng in engines.items():
        hist = result.get(name)
        if hist is None and eng.history is not None:
            hist = eng.history.to_dict()
        if hist and hist.get("iteration"):
            add_run(name, hist, eng.config, note=w.stop_reason or "", eng=eng)


# ---------------------------------------------------------------------------------------------
# sidebar: engine status, plus the heartbeat of running jobs on every page
# ---------------------------------------------------------------------------------------------
def sidebar() -> None:
    finalize_jobs()
    with st.sidebar:
        if running_job() is not None:
            # Polls once a second: heartbeats the job (on every page) and refreshes its progress.
            st.fragment(_status_panel, run_every=1.0)()
        else:
            _status_panel()


def _status_panel() -> None:
    heartbeat_all()
    if finalize_jobs():
        st.rerun(scope="app")
    eng = engine()
    status = eng.status()
    src = source()
    st.markdown("**This session's engine**")
    training = worker("train").running
    successor = worker("train").meta.get("successor") if training else None
    rows = {
        "Tasks": source_label(src),
        "Algorithm": f"{successor.config.algorithm.name} (training)" if successor else status["algorithm"],
        "Model": ready.model_label(eng, training, kept=successor is not None),
        "Trained on": status["task_source"] or "–",
        "Checkpoint": status["checkpoint"] or "none",
        "Device": status["device"],
    }
    st.markdown("  \n".join(f"{k}: **{md_escape(v)}**" for k, v in rows.items()))
    kind = running_job()
    if kind is not None:
        w = worker(kind)
        frac, text = worker_progress(w)
        st.progress(frac, text=f"{WORKER_LABELS.get(kind, kind)}: {md_escape(text)}")
        if st.button("Stop", key="sidebar_stop", width="stretch"):
            w.stop(timeout=1.5)
            st.rerun(scope="app")
