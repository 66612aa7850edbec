"""The workspace of a browser session: its id lives in the URL (``?ws=<id>``), its work in the run store.

On a session's first script run the id comes from the URL (a fresh random one when there is
none, or when the given one is refused), and a known workspace is restored from the store: runs,
the last model with its mechanisms, the task source. Workers live in a process-wide registry keyed
by the workspace id, so after a reload the page finds a running job and reattaches to it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import streamlit as st

from engine import CheckpointError, OneShotMetaLearningEngine
from engine.tasks import TaskError, TaskSource, make_task_source

from . import session
from .run_store import MAX_BYTES, MAX_RUNS, Restored, RunStore, StoreError, new_workspace_id, workspace_id_problem
from .source_recipe import call_of, recipe_of, remember
from .text import md_escape

log = logging.getLogger(__name__)

PARAM = "ws"


def open_workspace() -> None:
    """Choose this session's workspace (first run: from the URL, restoring it) and keep its id in the URL."""
    ss = st.session_state
    if "ws_id" not in ss:
        raw = st.query_params.get(PARAM)
        problem = None if raw is None else workspace_id_problem(raw)
        if raw is None or problem:
            ss["ws_id"] = new_workspace_id()
            if problem:
                ss["ws_refused"] = f"The link's workspace id was refused ({problem}); a new workspace was opened."
        else:
            ss["ws_id"] = raw
            _restore(raw)
        _attach_training()
    if st.query_params.get(PARAM) != ss["ws_id"]:  # page links drop it; the URL must always name it
        st.query_params[PARAM] = ss["ws_id"]


def store() -> RunStore | None:
    ws = st.session_state.get("ws_id")
    return RunStore(ws) if ws else None


# ---------------------------------------------------------------------------------------------
# restoring
# ---------------------------------------------------------------------------------------------
def _restore(ws_id: str) -> None:
    ss = st.session_state
    try:
        rs = RunStore(ws_id)
        if not rs.exists:  # a new link, or a store that was cleared: a fresh workspace under this id
            return
        data = rs.load()
    except (OSError, StoreError) as exc:
        log.warning("workspace %s could not be read: %s", ws_id, exc)
        ss["ws_problems"] = [f"the workspace could not be read ({exc})"]
        return
    ss.setdefault("runs", [])[:0] = [{**r.entry, "run_id": r.run_id} for r in data.runs if r.entry]
    problems = list(data.problems)
    restored = [f"{sum(1 for r in data.runs if r.entry)} run(s)"]
    if "engine" not in ss and data.engine_path is not None:
        eng = _load_engine(data, problems)
        if eng is not None:
            ss["engine"] = eng
            restored.append("the model" + (f" with {len(eng.discovered_mechanisms)} mechanisms" if eng.store else ""))
    if "source" not in ss and data.source is not None:
        src = _build_source(data, problems)
        if src is not None:
            ss["source"] = src
            restored.append("the task source")
    ss["ws_restored"] = "Restored " + ", ".join(restored) + "."
    if problems:
        ss["ws_problems"] = problems


def _load_engine(data: Restored, problems: list[str]) -> OneShotMetaLearningEngine | None:
    assert data.engine_path is not None
    try:
        eng = OneShotMetaLearningEngine.from_checkpoint(data.engine_path)
    except (CheckpointError, ValueError, OSError) as exc:
        problems.append(f"the stored model is unreadable ({exc})")
        return None
    eng.checkpoint_name = data.engine_name
    if data.report is not None:
        eng.store.report = data.report
    return eng


def _build_source(data: Restored, problems: list[str]) -> TaskSource | None:
    try:
        kind, params = call_of(data.source, data.source_file)
        src = make_task_source(kind, **params) if data.source_file else session.builtin_source(kind, **params)
    except (TaskError, ValueError, OSError, TypeError) as exc:
        problems.append(f"the stored task source could not be rebuilt ({exc})")
        return None
    remember(src, data.source)
    return src


def _attach_training() -> None:
    """A reload during training: the session's model is the one being trained, as it was before."""
    w = session.workers().get("train")
    if w is None or w.meta.get("successor") is not None:
        return
    main = w.meta.get("engines", {}).get(w.meta.get("run_name"))
    if main is not None and (w.running or getattr(w, "collected_generation", None) != w.generation):
        st.session_state["engine"] = main


# ---------------------------------------------------------------------------------------------
# saving (failures become notes on the page, never errors)
# ---------------------------------------------------------------------------------------------
def save_run(entry: dict[str, Any], eng: OneShotMetaLearningEngine | None) -> None:
    rs = store()
    if rs is None:
        return
    try:
        _note_deleted(rs.save_run(entry, eng))
    except (OSError, StoreError, ValueError, TypeError) as exc:
        _note(f"Run {entry.get('name')!r} was not stored on disk ({exc}).")


def save_source(src: TaskSource, recipe: dict[str, Any] | None, upload: tuple[str, bytes] | None) -> None:
    rs = store()
    if rs is None:
        return
    recipe = recipe or recipe_of(src)
    if recipe is None:
        _note("This task source cannot be stored, so a reload will not bring it back.")
        return
    remember(src, recipe)
    try:
        rs.save_source(recipe, upload)
    except (OSError, StoreError, ValueError, TypeError) as exc:
        _note(f"The task source was not stored on disk ({exc}).")


def save_engine(force: bool = False) -> None:
    """Store the session's model when it changed since it was last stored (or restored); ``force``:
    a job has just finished with it."""
    ss = st.session_state
    rs = store()
    if rs is None or session.running_job() is not None:
        return
    eng = ss.get("engine")
    if eng is not None and eng.is_shared_view:
        return  # a ready model, unchanged: a reload picks it again for the task source
    fp = _fingerprint(eng)
    if "ws_engine_fp" not in ss and not force:  # the first run: the model as restored (or the default)
        ss["ws_engine_fp"] = fp
        return
    if fp is None or (fp == ss.get("ws_engine_fp") and not force):
        return
    ss["ws_engine_fp"] = fp
    try:
        _note_deleted(rs.save_engine(eng, eng.checkpoint_name, eng.discovery_report))
    except (OSError, StoreError, ValueError, TypeError, RuntimeError) as exc:
        _note(f"The model was not stored on disk ({exc}).")


def _fingerprint(eng: Any) -> tuple | None:
    """Changes when the model, its training, or its mechanisms change (cheap: no tensors read)."""
    if eng is None or not eng.is_initialized:
        return None
    ms = eng.store
    hist = len(eng.history.iteration) if eng.history else 0
    return (id(eng), id(eng.learner), hist, id(ms), len(ms.records), id(ms.report), id(ms.priors), ms.online_tasks)


def _note_deleted(names: list[str]) -> None:
    if names:
        _note(
            f"The workspace was over its bound ({MAX_RUNS} runs, {MAX_BYTES // 1024**2} MB), so the oldest stored "
            f"runs were deleted from disk: {', '.join(names)}. This session still shows them until a reload."
        )


def _note(text: str) -> None:
    st.session_state.setdefault("ws_notes", []).append(text)


# ---------------------------------------------------------------------------------------------
# what the page shows
# ---------------------------------------------------------------------------------------------
def sidebar_note() -> None:
    """The workspace id and what was restored or refused (sidebar, every page)."""
    ss = st.session_state
    with st.sidebar:
        if ss.get("ws_refused"):
            st.warning(md_escape(ss["ws_refused"]))
        st.caption(
            f"Workspace `{ss.get('ws_id', '?')}`: kept on disk; this page's link (with `?ws=`) brings it back. "
            + ss.get("ws_restored", "")  # our own words: counts only
        )
        for problem in ss.get("ws_problems", []):
            st.caption(f"Not restored: {md_escape(problem)}")


def stored_runs_panel(busy: bool) -> None:
    """Stored runs with size and date, a delete button each, and the workspace's size against its bound."""
    rs = store()
    st.subheader("Stored runs")
    if rs is None:
        return
    for text in st.session_state.pop("ws_notes", []):
        st.warning(md_escape(text))
    try:
        listed, total = rs.listing(), rs.total_bytes()
    except OSError as exc:
        st.warning(f"The stored runs cannot be read: {md_escape(exc)}")
        return
    st.caption(
        f"Kept on disk in `{str(rs.path).replace('`', '?')}`: {len(listed)} of at most {MAX_RUNS} runs, "
        f"{total / 1024**2:.1f} of {MAX_BYTES // 1024**2} MB (the model in use and the task source count too). "
        "Past the bound the oldest runs are deleted."
    )
    st.progress(min(1.0, total / MAX_BYTES))
    for r in sorted(listed, key=lambda r: -r.created):
        c = st.columns([4, 2, 1, 1, 1])
        when = dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M") if r.created else "?"
        c[0].markdown(f"**{md_escape(r.name)}**" + (f" (unreadable: {md_escape(r.problem)})" if r.problem else ""))
        c[1].caption(when)
        c[2].caption(f"{r.bytes / 1024:.0f} KB")
        use = c[3].button(
            "Use model", key=f"ws_use_{r.run_id}", disabled=busy or not r.has_checkpoint or bool(r.problem)
        )
        if c[4].button("Delete", key=f"ws_del_{r.run_id}", disabled=busy or r.run_id == "?"):
            rs.delete_run(r.run_id)
            ss_runs = session.runs()
            ss_runs[:] = [x for x in ss_runs if x.get("run_id") != r.run_id and x["name"] != r.name]
            st.rerun()
        if use:
            _use_run_model(rs, r.run_id, r.name)


def _use_run_model(rs: RunStore, run_id: str, name: str) -> None:
    try:
        eng = OneShotMetaLearningEngine.from_checkpoint(rs.run_checkpoint(run_id))
    except (CheckpointError, StoreError, ValueError, OSError) as exc:
        st.error(f"Could not load the model of {md_escape(name)}: {md_escape(exc)}")
        return
    session.set_engine(eng)
    st.rerun()
