"""Streamlit building blocks shared by several pages (widgets and displays only)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

from engine import ConfigError
from engine.tasks import SinusoidTaskSource, TaskError

from . import figures, memo, ready, session
from .adaptation import adapt_sinusoid, error_by_points, points_steps, prior_curve
from .config_form import FieldSpec, config_specs, sections
from .episodes import sinusoid_grid
from .fit import engine_fit_problem
from .images import to_display
from .jobs import worker_progress
from .live_chart import LiveTrainingChart
from .text import md_escape
from .worker import DONE, ERROR, STOPPED

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def plot(fig: Any, key: str | None = None, **kwargs: Any) -> Any:
    return st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, width="stretch", **kwargs)


# ---------------------------------------------------------------------------------------------
# config form
# ---------------------------------------------------------------------------------------------
def _widget(spec: FieldSpec, values: dict[str, Any], disabled: bool = False, note: str = "") -> Any:
    key = f"cfg_{spec.name}"
    if key not in st.session_state:
        st.session_state[key] = values.get(spec.name, spec.default)
    label = spec.label
    help_text = spec.help + (f" {note}" if note else "")
    if spec.kind == "bool":
        return st.checkbox(label, key=key, help=help_text, disabled=disabled)
    if spec.kind == "choice":
        if st.session_state[key] not in spec.options:
            st.session_state[key] = spec.options[0]
        return st.selectbox(label, spec.options, key=key, help=help_text, disabled=disabled)
    if spec.kind not in ("int", "float"):
        return st.text_input(label, key=key, help=help_text, disabled=disabled)
    # No min/max on the widget: the browser would only redden an out-of-range entry and keep the
    # previous value, so Start would train with it. The config's validation refuses it instead.
    if spec.kind == "int":
        st.session_state[key] = int(st.session_state[key])
        value = st.number_input(label, step=1, key=key, help=help_text, disabled=disabled)
    else:
        st.session_state[key] = float(st.session_state[key])
        value = st.number_input(
            label, step=float(spec.step), format=spec.format, key=key, help=help_text, disabled=disabled
        )
    if spec.range_text and not spec.low <= value <= spec.high:
        st.error(f"{value:g} is out of range: {spec.label} must be {spec.range_text}.")
    return value


def apply_values(values: dict[str, Any]) -> None:
    """Put config values into the session and, on the config form's next draw, into its widgets.

    The widgets take them when the form is drawn: a value set while the form is not on the page
    would not reach the browser, which would keep showing (and send back) the widget's old value."""
    session.config_values().update(values)
    st.session_state.setdefault("cfg_pending", {}).update(values)


def _apply_pending() -> None:
    for name, v in st.session_state.pop("cfg_pending", {}).items():
        st.session_state[f"cfg_{name}"] = v


def config_form(src: Any, disabled: bool = False) -> dict[str, Any]:
    """Every config field with its help text and range; returns the current values."""
    _apply_pending()
    specs = config_specs()
    values = session.config_values()
    values["algorithm"] = _widget(specs["algorithm"], values, disabled)
    is_images = src.name == "images"
    cols = st.columns(2)
    for i, (title, names) in enumerate(sections().items()):
        with cols[i % 2].expander(title, expanded=i < 2):
            for name in names:
                if name not in specs:
                    continue
                lock = is_images and name == "n_way"
                note = "For image tasks this is set on the Tasks page." if lock else ""
                if lock:
                    st.session_state[f"cfg_{name}"] = int(src.n_way)
                values[name] = _widget(specs[name], values, disabled or lock, note)
    return values


# ---------------------------------------------------------------------------------------------
# live training
# ---------------------------------------------------------------------------------------------
def training_status(key: str, title: str | None = None) -> None:
    """Progress bar, ETA, live curves and Stop of the session's training worker.

    Polls every POLL_SECONDS while training runs (and heartbeats the worker)."""
    w = session.worker("train")
    st.fragment(_training_fragment, run_every=session.POLL_SECONDS if w.running else None)(key, title)


def _training_fragment(key: str, title: str | None) -> None:
    session.heartbeat_all()
    w = session.worker("train")
    snap = w.snapshot()
    if snap["generation"] == 0:
        return
    if session.finalize_jobs():
        st.rerun(scope="app")
    latest = snap["latest"]
    run_name = (latest or {}).get("run") or w.meta.get("run_name")
    chart = st.session_state.get(f"{key}_live")
    if chart is None or not chart.matches(snap["generation"], run_name):
        chart = LiveTrainingChart(snap["generation"], run_name, w.meta.get("base_histories", {}).get(run_name))
        st.session_state[f"{key}_live"] = chart
    hist = chart.read(w)
    if snap["running"]:
        frac, text = worker_progress(w)
        c1, c2 = st.columns([5, 1])
        c1.progress(frac, text=f"Training {md_escape(text)}")  # the text names the run
        if c2.button("Stop", key=f"{key}_stop", type="primary", width="stretch"):
            w.stop(timeout=1.5)
            st.rerun(scope="app")
    else:
        show_job_outcome(w, "Training")
    if hist["iteration"]:
        metric = figures.metric_label(hist["metric_name"])
        last = f"last train loss {hist['train_loss'][-1]:.3g}"
        if hist["val_metric"]:
            last += f", validation {metric} {hist['val_metric'][-1]:.3g}"
        title = title or f"{figures.plotly_text(run_name)}: {last}"
        plot(chart.draw(hist, title), key=f"{key}_curves")


def show_job_outcome(w: Any, what: str) -> None:
    if w.status == ERROR:
        st.error(f"{what} failed: {md_escape(w.error)}")
    elif w.status == STOPPED:
        st.warning(f"{what} stopped ({md_escape(w.stop_reason or 'stopped by request')}).")
    elif w.status == DONE:
        st.success(f"{what} finished.")


def job_progress(kind: str, key: str, what: str, live: Any = None) -> None:
    """Progress bar and Stop for a non-training job (discovery, experiments).

    ``live(records)``, if given, draws extra live content from the job's progress records."""
    w = session.worker(kind)
    st.fragment(_job_fragment, run_every=session.POLL_SECONDS if w.running else None)(kind, key, what, live)


def _job_fragment(kind: str, key: str, what: str, live: Any) -> None:
    session.heartbeat_all()
    w = session.worker(kind)
    if w.generation == 0:
        return
    if session.finalize_jobs():
        st.rerun(scope="app")
    if w.running:
        frac, text = worker_progress(w)
        c1, c2 = st.columns([5, 1])
        c1.progress(frac, text=f"{what}: {md_escape(text)}")
        if c2.button("Stop", key=f"{key}_stop", type="primary", width="stretch"):
            w.stop(timeout=1.5)
            st.rerun(scope="app")
        if live is not None:
            live(w.records())
    else:
        show_job_outcome(w, what)


# ---------------------------------------------------------------------------------------------
# adaptation results
# ---------------------------------------------------------------------------------------------
def require_engine(src: Any) -> bool:
    """Show why the engine cannot be used with the source (and return False), else True."""
    msg = session.busy_message()
    if msg:
        st.info(msg)
        return False
    problem = engine_fit_problem(session.engine(), src)
    if problem:
        st.info(problem)
        return False
    return True


def show_adaptation(result: dict[str, Any], key: str, show_trace: bool = True, scored: bool = True) -> None:
    """Adaptation time, query quality, the per-step trace and the explanation.

    ``scored=False``: the queries have no labels, so no query quality is shown."""
    q = result["adaptation_quality"]
    metric = "accuracy" if "accuracy" in q else "mse"
    c = st.columns(4)
    c[0].metric("adaptation time", f"{1000 * result['adaptation_time']:.1f} ms")
    c[1].metric("prediction time", f"{1000 * result['prediction_time']:.1f} ms")
    if scored:
        c[2].metric(f"query {metric}", f"{q[metric]:.1%}" if metric == "accuracy" else f"{q[metric]:.3g}")
        c[3].metric("query examples", f"{q['num_query']}")
    exp = result.get("explanation") or {}
    if exp.get("text"):
        st.markdown(f"**Explanation.** {md_escape(exp['text'])}")  # it names features
    has_trace = show_trace and len(result.get("trace") or []) > 1  # closed-form learners have no steps
    left, right = st.columns(2) if has_trace else (st.container(), None)
    if has_trace:
        with left:
            plot(figures.trace_figure(result["trace"]), key=f"{key}_trace")
    if exp.get("gates_before"):
        with right if has_trace else left:
            plot(figures.explanation_figure(exp), key=f"{key}_gates")


def image_row(images: Sequence[np.ndarray], captions: Sequence[str], width: int = 84) -> None:
    if len(images):
        # Captions are markdown to Streamlit; they are class and file names here: escaped.
        st.image([to_display(im) for im in images], caption=[md_escape(c) for c in captions], width=width)


def occlusion_row(
    key: str, maps: Any, support_x: Any, query_x: Any, support_captions: Sequence[str], query_captions: Sequence[str]
) -> None:
    """Occlusion maps (``engine.occlusion.OcclusionMaps``) over their pictures, support then query, one row."""
    st.caption(
        f"Colour: how much the query loss rises (red: the patch helped) or falls (blue: it misled) when that "
        f"{maps.patch}×{maps.patch} patch of the picture is blanked to paper, do(patch := background): the same "
        "intervention discovery makes on mechanisms."
    )
    pictures = [*support_x, *query_x]
    effects = [*maps.support, *maps.query]
    captions = [*support_captions, *query_captions]
    cols = st.columns(min(len(pictures), 6))
    for i, (pic, eff, cap) in enumerate(zip(pictures, effects, captions, strict=True)):
        with cols[i % len(cols)]:
            plot(figures.occlusion_figure(pic, eff, title=figures.plotly_text(cap)), key=f"{key}_occ{i}")


# ---------------------------------------------------------------------------------------------
# sinusoid: click or type one point
# ---------------------------------------------------------------------------------------------
def sinusoid_point_panel(key: str, src: SinusoidTaskSource, allow_new_task: bool = True) -> None:
    """Choose a held-out sinusoid, give one (x, y) point by clicking the chart or typing it,
    and see the meta-model's curve before and after one-shot adaptation."""
    eng = session.engine()
    ss = st.session_state
    seed_key, pts_key, res_key, sel_key = f"{key}_seed", f"{key}_points", f"{key}_result", f"{key}_last_sel"
    ss.setdefault(seed_key, 0)
    ss.setdefault(pts_key, [])
    task = src.tasks("test", 1, seed=int(ss[seed_key]))[0]
    grid = sinusoid_grid(src)
    _sinusoid_task_row(key, task, allow_new_task)
    several = st.checkbox("keep earlier points (few-shot instead of one-shot)", key=f"{key}_several", value=False)

    def add_point(x: float, y: float) -> None:
        pts = list(ss[pts_key]) if several else []
        pts.append((float(x), float(y)))
        ss[pts_key] = pts[-20:]
        try:
            ss[res_key] = adapt_sinusoid(eng, task, ss[pts_key], grid)
        except (ValueError, RuntimeError) as exc:
            ss[res_key] = None
            st.error(md_escape(exc))

    typed = _typed_point(key, task)
    if typed is not None:
        add_point(*typed)
    picked = _sinusoid_chart(key, eng, task, grid)
    if picked is not None and picked != ss.get(sel_key):
        ss[sel_key] = picked
        add_point(*picked)
        st.rerun()
    if ss.get(res_key) is not None:
        _sinusoid_result(key, ss[res_key])


def _sinusoid_task_row(key: str, task: Any, allow_new_task: bool) -> None:
    """The task's formula, and the New task and Clear points buttons."""
    ss = st.session_state
    top = st.columns([3, 1, 1])
    top[0].markdown(
        f"Held-out task #{ss[f'{key}_seed']}: y = {task.amplitude:.2f} · sin(x − {task.phase:.2f}). "
        "**Click the chart** to give a point, or type one below."
    )
    new = allow_new_task and top[1].button("New task", key=f"{key}_new", width="stretch")
    if new:
        ss[f"{key}_seed"] += 1
    if new or top[2].button("Clear points", key=f"{key}_clear", width="stretch"):
        ss[f"{key}_points"], ss[f"{key}_result"] = [], None
        st.rerun()


def _typed_point(key: str, task: Any) -> tuple[float, float] | None:
    """The (x, y) typed into the form, once its button is pressed."""
    with st.form(key=f"{key}_form", border=False):
        c = st.columns([1, 1, 1])
        x_in = c[0].number_input("x", min_value=-5.0, max_value=5.0, value=1.0, step=0.5, key=f"{key}_x")
        y_default = round(float(task.function(np.array([x_in]))[0]), 3)
        y_in = c[1].number_input(
            "y",
            min_value=-10.0,
            max_value=10.0,
            value=y_default,
            step=0.5,
            key=f"{key}_y",
            help="Leave the value of the true task at x, or type any y.",
        )
        c[2].markdown("&nbsp;")
        typed = c[2].form_submit_button("Adapt to this point", type="primary", width="stretch")
    return (x_in, y_in) if typed else None


def _sinusoid_chart(key: str, eng: Any, task: Any, grid: np.ndarray) -> tuple[float, float] | None:
    """The clickable chart: truth and the curves before and after adaptation; the clicked point."""
    ss = st.session_state
    res = ss.get(f"{key}_result")
    seed = ss[f"{key}_seed"]
    if res is None:
        # Before any point: the meta-model's own curve (adapted with zero steps to nothing), the same in
        # every session while the model is an unchanged ready one.
        in_use = ready.ready_in_use(eng)
        curve = (task.amplitude, task.phase, float(grid.min()), float(grid.max()), len(grid))
        stamp = (in_use.name, *curve) if in_use else (id(eng), ss.get("engine_version", 0), *curve)
        fig = memo.cached(
            f"{key}_chart",
            stamp,
            lambda: figures.sinusoid_figure(
                grid.ravel(), truth=task.function(grid).ravel(), prior=prior_curve(eng, task, grid), clickable=True
            ),
            shared=in_use is not None,
        )
    else:
        fig = memo.cached(
            f"{key}_chart",
            id(res),
            lambda: figures.sinusoid_figure(
                res["x"],
                truth=res["truth"],
                prior=res["prior"],
                adapted=res["adapted"],
                support=res["support"],
                clickable=True,
            ),
        )
    chart_key = f"{key}_chart_{seed}"
    return _picked_point(plot(fig, key=chart_key, on_select="rerun", selection_mode="points"))


def _sinusoid_result(key: str, res: dict[str, Any]) -> None:
    """Points given, adaptation time and the MSE on the whole curve before and after."""
    r = res["result"]
    c = st.columns(4)
    c[0].metric("points given", len(res["support"][0]))
    c[1].metric("adaptation time", f"{1000 * r['adaptation_time']:.1f} ms")
    c[2].metric("MSE on the curve, before", f"{res['prior_quality']['mse']:.3g}")
    c[3].metric(
        "MSE on the curve, after",
        f"{r['adaptation_quality']['mse']:.3g}",
        delta=f"{r['adaptation_quality']['mse'] - res['prior_quality']['mse']:+.3g}",
        delta_color="inverse",
    )
    with st.expander("Per-step trace and explanation", expanded=False):
        show_adaptation(r, key=f"{key}_details")


ONE_POINT_WHY = (
    "A sinusoid has two unknowns, amplitude and phase, and one point is one equation, so many curves pass "
    "through it: the model can only guess the likeliest, and a second point pins both."
)


def points_comparison(
    key: str, src: SinusoidTaskSource, measured: Callable[[bool], dict[str, Any] | None] | None = None
) -> None:
    """The held-out task from 1, 2 and 5 of its points side by side, error before and after each;
    then the mean error over 100 held-out tasks against the number of points, measured on request,
    or by ``measured(start)`` (a measurement on a ready model, made once per process in the background:
    None while it runs or, with start False, before it starts)."""
    eng = session.engine()
    ss = st.session_state
    ss.setdefault(f"{key}_seed", 0)
    st.markdown(f"**One, two, five points.** {ONE_POINT_WHY}")
    seed = int(ss[f"{key}_seed"])
    task = src.tasks("test", 1, seed=seed)[0]
    grid = sinusoid_grid(src)
    ctx = (id(eng), ss.get("engine_version", 0), seed)
    in_use = ready.ready_in_use(eng)  # an unchanged ready model shows every session the same
    stamp = (in_use.name, json.dumps(src.describe(), sort_keys=True, default=str), seed) if in_use else ctx
    rows = memo.cached(f"{key}_steps", stamp, lambda: points_steps(eng, task, grid), shared=in_use is not None)
    ss[f"{key}_steps"] = rows  # what the page shows (read-only: it may be every session's)
    for col, res in zip(st.columns(len(rows)), rows, strict=True):
        with col:
            before, after = res["prior_quality"]["mse"], res["result"]["adaptation_quality"]["mse"]
            fig = memo.cached(
                f"{key}_steps_fig_{res['count']}", stamp, lambda res=res: _points_figure(res), in_use is not None
            )
            plot(fig, key=f"{key}_steps_{res['count']}")
            st.metric(
                "MSE on the curve",
                f"{after:.3g}",
                delta=f"{after - before:+.3g} from {before:.3g}",
                delta_color="inverse",
            )
    if measured is not None:
        data = measured(False)
        if data is None:
            st.fragment(_await_measurement, run_every=1.0)(key, measured)
        else:
            _sweep_chart(key, data, "on the ready model when this server first showed it")
        return
    sweep = ss.get(f"{key}_sweep")
    if st.button("Measure the error over 100 held-out tasks", key=f"{key}_sweep_run"):
        with st.spinner("adapting to 100 held-out tasks from 1, 2, 3, 5 and 10 points ..."):
            sweep = {"ctx": ctx[:2], "data": error_by_points(eng, src, grid)}
        ss[f"{key}_sweep"] = sweep
    if sweep is not None and sweep["ctx"] == ctx[:2]:
        _sweep_chart(key, sweep["data"], "now on this session's model")


def _sweep_chart(key: str, data: dict[str, Any], where: str) -> None:
    """The mean error over 100 held-out tasks against the number of points, and the numbers."""
    plot(
        memo.cached(f"{key}_sweep_fig", id(data), lambda: figures.error_by_points_figure(data)), key=f"{key}_sweep_fig"
    )
    after = ", ".join(f"{k} → {v:.2f}" for k, v in zip(data["counts"], data["mse_after"], strict=True))
    st.caption(
        f"Measured {where}: mean MSE before adaptation {data['mse_before']:.2f}; "
        f"after adapting from n points (n → MSE): {after}."
    )


def _points_figure(res: dict[str, Any]) -> Any:
    return figures.sinusoid_figure(
        res["x"],
        truth=res["truth"],
        prior=res["prior"],
        adapted=res["adapted"],
        support=res["support"],
        title=f"{res['count']} point{'s' if res['count'] > 1 else ''}",
        height=260,
    )


def _await_measurement(key: str, measured: Callable[[bool], dict[str, Any] | None]) -> None:
    """A fragment polling once a second: it starts the measurement from its first poll, after the page is
    drawn (not during the first render), and draws the result itself when done, so nothing else on the
    page reruns (a drawing in progress on the canvases is left alone)."""
    first = not st.session_state.get(f"{key}_measure_polled")
    st.session_state[f"{key}_measure_polled"] = True
    data = None if first else measured(True)
    if data is None:
        st.caption("Measuring the mean error over 100 held-out tasks against the number of points …")
    else:
        _sweep_chart(key, data, "on the ready model when this server first showed it")


def _picked_point(event: Any) -> tuple[float, float] | None:
    try:
        points = event.selection.points  # type: ignore[union-attr]
    except AttributeError:
        try:
            points = event["selection"]["points"]
        except (KeyError, TypeError):
            return None
    if not points:
        return None
    p = points[-1]
    x, y = p.get("x"), p.get("y")
    if x is None or y is None:
        return None
    return (round(float(x), 3), round(float(y), 3))


def error_box(exc: BaseException) -> None:
    """A user-facing message for the errors the engine documents (never a traceback)."""
    text = str(exc) if isinstance(exc, (TaskError, ConfigError, ValueError)) else f"{type(exc).__name__}: {exc}"
    st.error(md_escape(text))
