"""Plotly figures of the app: plain functions of plain data (lists, dicts, arrays).

No Streamlit and no torch here, so every figure is unit-tested on its own. Pages pass in
numbers the engine returned and show the figure.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TRAIN = "#1f77b4"
VAL = "#ff7f0e"
TRUTH = "#7f7f7f"
PRIOR = "#9467bd"
ADAPTED = "#d62728"
SUPPORT = "#2ca02c"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
MAX_POINTS = 3000  # per curve; longer curves are thinned by a stride (the last point is kept)

_LAYOUT = {
    "margin": {"l": 50, "r": 20, "t": 60, "b": 45},
    "template": "plotly_white",
}
SMOOTH_WINDOW = 25  # running mean drawn over the noisy per-iteration training curve


def plotly_text(value: Any) -> str:
    """A user's name (run, class) for a Plotly title, legend or tick label, shown as typed.

    Plotly reads tags such as <b>, <i>, <br> and <a href> in those texts; with &, < and >
    written as entities (which Plotly shows as the characters) a name stays plain text."""
    return html.escape(str(value), quote=False)


def running_mean(y: Sequence[float], window: int = SMOOTH_WINDOW) -> list[float]:
    """Trailing running mean (shorter windows at the start), same length as ``y``."""
    a = np.asarray(y, dtype=float)
    if len(a) == 0:
        return []
    c = np.cumsum(np.insert(a, 0, 0.0))
    idx = np.arange(1, len(a) + 1)
    lo = np.maximum(0, idx - window)
    return ((c[idx] - c[lo]) / (idx - lo)).tolist()


def _thin(x: Sequence[Any], *ys: Sequence[Any], max_points: int = MAX_POINTS) -> tuple[list, ...]:
    n = len(x)
    if n <= max_points:
        return (list(x), *(list(y) for y in ys))
    idx = list(range(0, n, int(np.ceil(n / max_points))))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return ([x[i] for i in idx], *([y[i] for i in idx] for y in ys))


def metric_label(metric_name: str | None) -> str:
    return {"mse": "MSE", "accuracy": "accuracy"}.get(metric_name or "", metric_name or "metric")


def _training_panels(history: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(history part, panel title) per panel: for regression the loss is the MSE, so one panel."""
    metric = metric_label(history.get("metric_name"))
    return [("metric", metric)] if history.get("metric_name") == "mse" else [("loss", "loss"), ("metric", metric)]


def training_figure(history: Mapping[str, Any], title: str | None = None, height: int = 340) -> go.Figure:
    """Train and validation loss (left) and metric (right) against meta-iteration.

    ``history``: a TrainingHistory dict (``iteration``, ``train_loss``, ``train_metric``,
    ``val_iteration``, ``val_loss``, ``val_metric``, ``metric_name``). For regression the loss is
    the MSE, so one panel (the MSE) is drawn instead of the same curve twice.
    """
    panels = _training_panels(history)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels], horizontal_spacing=0.12)
    thin = {"color": "rgba(31,119,180,0.35)", "width": 1}
    for col in range(1, len(panels) + 1):
        first = col == 1
        lines = [
            go.Scatter(name="train", mode="lines", line=thin, legendgroup="t", showlegend=first),
            go.Scatter(
                name=f"train, mean of {SMOOTH_WINDOW}",
                mode="lines",
                line={"color": TRAIN, "width": 2.5},
                legendgroup="s",
                showlegend=first,
            ),
            go.Scatter(name="validation", mode="lines+markers", line={"color": VAL}, legendgroup="v", showlegend=first),
        ]
        for trace in lines:  # update_training_figure relies on this order
            fig.add_trace(trace, 1, col)
    fig.update_xaxes(title_text="meta-iteration")
    if history.get("metric_name") == "accuracy":
        fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=height, uirevision="training", **_LAYOUT)
    return update_training_figure(fig, history, title)


def training_figure_fits(fig: go.Figure, history: Mapping[str, Any]) -> bool:
    """Whether ``update_training_figure`` can draw ``history`` into ``fig`` (same panels)."""
    return len(fig.data) == 3 * len(_training_panels(history))


def update_training_figure(fig: go.Figure, history: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """Put ``history``'s curves and ``title`` into a figure made by ``training_figure`` for the same kind of
    history, in place: a few milliseconds, where building a new figure costs about fifty (plotly checks
    every property of a new one), which live charts pay on every poll of every session."""
    iterations = history.get("iteration", [])
    with fig.batch_update():
        for i, (part, _) in enumerate(_training_panels(history)):
            train, smooth, val = fig.data[3 * i : 3 * i + 3]
            train.x, train.y = _thin(iterations, history.get(f"train_{part}", []))
            smooth.x, smooth.y = _thin(iterations, running_mean(history.get(f"train_{part}", [])))
            val.x, val.y = _thin(history.get("val_iteration", []), history.get(f"val_{part}", []))
        fig.layout.title.text = title
    return fig


def runs_overlay_figure(
    runs: Sequence[Mapping[str, Any]], key: str = "val_metric", smooth: int = 1, height: int = 360
) -> go.Figure:
    """Overlay one curve per finished run (e.g. a causal learner beside its plain baseline).

    ``runs``: dicts with ``name`` and ``history`` (a TrainingHistory dict). ``key`` is one of
    train_loss, train_metric, val_loss, val_metric. ``smooth`` > 1 takes a running mean.
    """
    xkey = "val_iteration" if key.startswith("val_") else "iteration"
    metric_names = {r["history"].get("metric_name") for r in runs}
    what = key.replace("_", " ")
    if key.endswith("metric") and len(metric_names) == 1:
        what = f"{key.split('_')[0].replace('val', 'validation')} {metric_label(next(iter(metric_names)))}"
    fig = go.Figure()
    for i, run in enumerate(runs):
        h = run["history"]
        x, y = list(h.get(xkey, [])), np.asarray(h.get(key, []), dtype=float)
        if smooth > 1 and len(y) >= smooth:
            kernel = np.ones(smooth) / smooth
            y = np.convolve(y, kernel, mode="valid")
            x = x[smooth - 1 :]
        x, y = _thin(x, list(y))
        dash = "dash" if run.get("plain") else "solid"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=plotly_text(run["name"]),
                line={"color": PALETTE[i % len(PALETTE)], "dash": dash},
            )
        )
    fig.update_layout(title=f"{what} by run", xaxis_title="meta-iteration", yaxis_title=what, height=height, **_LAYOUT)
    return fig


def click_grid(x_range: tuple[float, float] = (-5, 5), y_range: tuple[float, float] = (-5, 5), step: float = 0.25):
    """A dense grid of (x, y) points; drawn faintly so a click anywhere selects a point."""
    xs = np.round(np.arange(x_range[0], x_range[1] + 1e-9, step), 4)
    ys = np.round(np.arange(y_range[0], y_range[1] + 1e-9, step), 4)
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel().tolist(), gy.ravel().tolist()


def sinusoid_figure(
    x: Sequence[float],
    truth: Sequence[float] | None = None,
    prior: Sequence[float] | None = None,
    adapted: Sequence[float] | None = None,
    support: tuple[Sequence[float], Sequence[float]] | None = None,
    clickable: bool = False,
    title: str | None = None,
    height: int = 380,
    y_range: tuple[float, float] = (-5.5, 5.5),
    names: Mapping[str, str] | None = None,
) -> go.Figure:
    """The true curve, the meta-model's curve before adaptation, the adapted curve, the support points.

    With ``clickable`` a faint grid of points (the first trace) lets a click choose (x, y).
    ``names`` renames the truth / prior / adapted curves (e.g. for an intervention).
    """
    label = {
        "truth": "true task",
        "prior": "before adaptation (meta-model)",
        "adapted": "after one-shot adaptation",
        **(names or {}),
    }
    fig = go.Figure()
    if clickable:
        gx, gy = click_grid((min(x), max(x)), y_range)
        fig.add_trace(
            go.Scatter(
                x=gx,
                y=gy,
                mode="markers",
                name="click to choose a point",
                marker={"size": 9, "color": "rgba(0,0,0,0)"},
                hovertemplate="choose (%{x}, %{y})<extra></extra>",
                showlegend=False,
            )
        )
    if truth is not None:
        fig.add_trace(go.Scatter(x=list(x), y=list(truth), name=label["truth"], line={"color": TRUTH, "dash": "dash"}))
    if prior is not None:
        fig.add_trace(go.Scatter(x=list(x), y=list(prior), name=label["prior"], line={"color": PRIOR}))
    if adapted is not None:
        fig.add_trace(
            go.Scatter(x=list(x), y=list(adapted), name=label["adapted"], line={"color": ADAPTED, "width": 3})
        )
    if support is not None and len(support[0]):
        fig.add_trace(
            go.Scatter(
                x=list(support[0]),
                y=list(support[1]),
                mode="markers",
                name="your point" if len(support[0]) == 1 else "support points",
                marker={"size": 14, "color": SUPPORT, "symbol": "star", "line": {"width": 1, "color": "black"}},
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="x",
        yaxis_title="y",
        yaxis_range=list(y_range),
        height=height,
        clickmode="event+select",
        **_LAYOUT,
    )
    if clickable:  # a fixed view: a click chooses a point instead of starting a zoom
        fig.update_xaxes(fixedrange=True)
        fig.update_yaxes(fixedrange=True)
    return fig


def curves_figure(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    points: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    title: str | None = None,
    height: int = 360,
) -> go.Figure:
    """Several named curves (e.g. preview sinusoid tasks), each with optional sample points."""
    fig = go.Figure()
    for i, (name, cx, cy) in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(cx), y=list(cy), name=name, mode="lines", line={"color": color}))
        if i < len(points):
            px_, py_ = points[i]
            fig.add_trace(
                go.Scatter(
                    x=list(px_),
                    y=list(py_),
                    mode="markers",
                    marker={"color": color, "size": 8},
                    showlegend=False,
                    name=f"{name} support",
                )
            )
    fig.update_layout(title=title, xaxis_title="x", yaxis_title="y", height=height, **_LAYOUT)
    return fig


def causal_layers(adjacency: Any) -> list[int]:
    """Longest-path layer of each node of a DAG (roots are layer 0): its causal order.

    An edge drawn both ways (undirected, as PC gives) does not order its two ends."""
    adjacency = np.asarray(adjacency, dtype=int)
    adjacency = adjacency * (1 - adjacency.T)
    d = adjacency.shape[0]
    layer = [0] * d
    for _ in range(d):
        changed = False
        for i in range(d):
            for j in range(d):
                if adjacency[i, j] and layer[j] < layer[i] + 1:
                    layer[j] = layer[i] + 1
                    changed = True
        if not changed:
            break
    return layer


def scm_graph_figure(
    truth: Mapping[str, Any], intervened: Sequence[str] = (), title: str | None = None, height: int = 380
) -> go.Figure:
    """Draw an SCM's true DAG (``SCMTaskSource.truth_graph()``) in layers of causal order, left to right.

    The target is red, its parents green, its children orange; intervened variables get a
    thick black ring. Large graphs get smaller nodes and a taller figure; nodes are never clipped.
    """
    adj = np.asarray(truth["adjacency"], dtype=int)
    names = list(truth["variable_names"])
    target = truth.get("target")
    parents, children = set(truth.get("parents", [])), set(truth.get("children", []))
    layer = causal_layers(adj)
    pos: dict[int, tuple[float, float]] = {}
    widest = 1
    for lv in sorted(set(layer)):
        members = [i for i in range(len(names)) if layer[i] == lv]
        widest = max(widest, len(members))
        for k, i in enumerate(members):
            pos[i] = (float(lv), (len(members) - 1) / 2.0 - k)
    big = len(names) > 12
    node = 18 if big else 34
    height = max(height, 34 * widest + 90) if big else height
    fig = go.Figure()
    for i in range(len(names)):
        for j in range(len(names)):
            if adj[i, j]:
                into_target = names[j] == target
                fig.add_annotation(
                    x=pos[j][0],
                    y=pos[j][1],
                    ax=pos[i][0],
                    ay=pos[i][1],
                    xref="x",
                    yref="y",
                    axref="x",
                    ayref="y",
                    showarrow=True,
                    arrowhead=3,
                    arrowsize=1.3,
                    arrowwidth=2.5 if into_target else (0.8 if big else 1.4),
                    arrowcolor=ADAPTED if into_target else ("#bbb" if big else "#888"),
                    standoff=node // 2 + 4,
                    startstandoff=node // 2 + 1,
                )
    colors, sizes, lines, labels = [], [], [], []
    for n in names:
        if n == target:
            colors.append(ADAPTED)
            labels.append(f"{n} (target)")
        elif n in parents:
            colors.append(SUPPORT)
            labels.append(f"{n} (parent)")
        elif n in children:
            colors.append(VAL)
            labels.append(f"{n} (child)")
        else:
            colors.append("#aec7e8")
            labels.append(n)
        sizes.append(node)
        lines.append((3 if big else 5) if n in intervened else 1)
    fig.add_trace(
        go.Scatter(
            x=[pos[i][0] for i in range(len(names))],
            y=[pos[i][1] for i in range(len(names))],
            mode="markers+text",
            text=names,
            textposition="middle right" if big else "middle center",
            textfont={"color": "#222", "size": 9} if big else {"color": "white", "size": 13},
            marker={"size": sizes, "color": colors, "line": {"width": lines, "color": "black"}},
            hovertext=labels,
            hoverinfo="text",
            showlegend=False,
            cliponaxis=False,  # nodes at the panel's edge are drawn whole
        )
    )
    fig.update_xaxes(visible=False, range=[-0.6, max(layer) + (0.9 if big else 0.6)])
    ys = [p[1] for p in pos.values()]
    fig.update_yaxes(visible=False, range=[min(ys) - 0.8, max(ys) + 0.8])
    fig.update_layout(
        title=title or "true causal graph",
        height=height,
        margin={"l": 25, "r": 25, "t": 50, "b": 15},
        template="plotly_white",
    )
    return fig


def error_by_points_figure(sweep: Mapping[str, Any], height: int = 300) -> go.Figure:
    """Mean MSE on the whole curve against the number of points adapted from (``error_by_points``),
    with 95% intervals; the dashed line is the error before adaptation."""
    fig = go.Figure(
        go.Scatter(
            x=list(sweep["counts"]),
            y=list(sweep["mse_after"]),
            error_y={"type": "data", "array": list(sweep["mse_after_ci95"])},
            mode="lines+markers",
            name="after adaptation",
            line={"color": ADAPTED},
        )
    )
    fig.add_hline(y=sweep["mse_before"], line_dash="dash", line_color=PRIOR, annotation_text="before adaptation")
    fig.update_layout(
        title=f"mean error over {sweep['tasks']} held-out tasks",
        xaxis_title="points given",
        yaxis_title="MSE on the whole curve",
        height=height,
        **_LAYOUT,
    )
    fig.update_xaxes(tickvals=list(sweep["counts"]))
    return fig


def trace_figure(trace: Sequence[float], title: str = "support loss per adaptation step", height: int = 280):
    fig = go.Figure(go.Scatter(x=list(range(len(trace))), y=list(trace), mode="lines+markers", line={"color": ADAPTED}))
    fig.update_layout(title=title, xaxis_title="adaptation step", yaxis_title="support loss", height=height, **_LAYOUT)
    return fig


def explanation_figure(explanation: Mapping[str, Any], height: int = 300) -> go.Figure:
    """Gates before/after adaptation and how far adaptation moved each mechanism's weights."""
    before = list(explanation.get("gates_before", []))
    after = list(explanation.get("gates_after", []))
    shift = list(explanation.get("mechanism_shift", []))
    names = [f"mechanism {k}" for k in range(max(len(before), len(shift)))]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("structure gate g_k", "weight change by adaptation"))
    fig.add_trace(go.Bar(x=names, y=before, name="before", marker_color=PRIOR), 1, 1)
    fig.add_trace(go.Bar(x=names, y=after, name="after", marker_color=ADAPTED), 1, 1)
    fig.add_trace(go.Bar(x=names, y=shift, name="weight change", marker_color=TRUTH, showlegend=False), 1, 2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_layout(height=height, barmode="group", **_LAYOUT)
    return fig


def probabilities_figure(
    class_names: Sequence[str],
    before: Sequence[float],
    after: Sequence[float] | None = None,
    title: str | None = None,
    height: int = 300,
) -> go.Figure:
    """Class probabilities, optionally before and after an intervention."""
    names = [plotly_text(c) for c in class_names]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=list(before), name="no intervention", marker_color=TRAIN))
    if after is not None:
        fig.add_trace(go.Bar(x=names, y=list(after), name="with intervention", marker_color=ADAPTED))
    fig.update_layout(title=title, yaxis_title="probability", yaxis_range=[0, 1.02], barmode="group", height=height)
    fig.update_layout(**_LAYOUT)
    return fig


def effects_figure(
    effects: Sequence[Mapping[str, Any]], value: str = "effect", title: str | None = None, height: int = 320
) -> go.Figure:
    """Bar per mechanism: the effect of switching it off alone (query loss with do(c_k = 0) minus without)."""
    names = [str(e["mechanism"]) for e in effects]
    vals = [float(e[value]) for e in effects]
    colors = [ADAPTED if v > 0 else SUPPORT for v in vals]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=colors, text=[f"{v:+.3g}" for v in vals]))
    fig.update_layout(
        title=title or "effect of switching each mechanism off (change in query loss)",
        yaxis_title="change in query loss",
        height=height,
        **_LAYOUT,
    )
    return fig


def values_figure(
    targets: Sequence[float],
    before: Sequence[float],
    after: Sequence[float] | None = None,
    title: str | None = None,
    height: int = 340,
) -> go.Figure:
    """Predicted against true values (regression on vector tasks), before/after an intervention."""
    t = list(targets)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=list(before), mode="markers", name="prediction", marker={"color": TRAIN}))
    if after is not None:
        fig.add_trace(
            go.Scatter(x=t, y=list(after), mode="markers", name="with intervention", marker={"color": ADAPTED})
        )
    if t:
        lo, hi = float(min(t)), float(max(t))
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect", line={"color": TRUTH, "dash": "dot"})
        )
    fig.update_layout(title=title, xaxis_title="true value", yaxis_title="predicted", height=height, **_LAYOUT)
    return fig


def belief_figure(
    episodes: Sequence[float],
    curves: Sequence[Sequence[float]] = (),
    median: Sequence[float] | None = None,
    references: Sequence[tuple[float, float]] = ((400, 0.9), (1000, 0.99)),
    title: str = "belief in the true direction, sigma(gamma)",
    height: int = 360,
) -> go.Figure:
    """Structural belief curves of the two-variable meta-transfer experiment (Bengio et al. 2019)."""
    x = list(episodes)
    fig = go.Figure()
    for i, c in enumerate(curves):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(c),
                mode="lines",
                line={"color": "rgba(31,119,180,0.25)"},
                name="runs",
                legendgroup="runs",
                showlegend=i == 0,
            )
        )
    if median is not None:
        fig.add_trace(go.Scatter(x=x, y=list(median), mode="lines", name="median", line={"color": ADAPTED, "width": 3}))
    for ex, ey in references:
        fig.add_trace(
            go.Scatter(
                x=[ex],
                y=[ey],
                mode="markers",
                marker={"symbol": "x", "size": 11, "color": "black"},
                name="published median",
                legendgroup="ref",
                showlegend=(ex, ey) == tuple(references[0]),
            )
        )
    fig.update_layout(
        title=title, xaxis_title="episodes", yaxis_title="sigma(gamma)", yaxis_range=[0, 1.02], height=height, **_LAYOUT
    )
    return fig


def levels_figure(levels: Mapping[str, Mapping[str, float]], key: str, height: int = 300) -> go.Figure:
    """One bar per hierarchical adaptation level (e.g. feature / structure / optimization)."""
    names = list(levels)
    vals = [float(levels[n].get(key, float("nan"))) for n in names]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=PALETTE[: len(names)], text=[f"{v:.3g}" for v in vals]))
    fig.update_layout(title=f"{key} by adaptation level", yaxis_title=key, height=height, **_LAYOUT)
    return fig


def evolution_figure(records: Sequence[Mapping[str, Any]], metric_name: str = "mse", height: int = 320) -> go.Figure:
    """Optimisation history of a config-evolution study, from its trial records.

    ``records``: the study's progress records; those with ``event == "trial"`` carry the trial
    number, its state and value, and the best value so far. Completed trials are dots, pruned
    ones crosses at the last validation value they reached, and a line follows the best."""
    trials = [r for r in records if r.get("event") == "trial"]
    label = metric_label(metric_name)
    fig = go.Figure()
    for state, symbol, color in (("COMPLETE", "circle", TRAIN), ("PRUNED", "x", TRUTH)):
        rows = [r for r in trials if r.get("state") == state and r.get("value") is not None]
        fig.add_trace(
            go.Scatter(
                x=[r["trial"] for r in rows],
                y=[r["value"] for r in rows],
                mode="markers",
                name="complete" if state == "COMPLETE" else "pruned (last validation value)",
                marker={"symbol": symbol, "color": color, "size": 9},
            )
        )
    best = [(r["trial"], r["best_value"]) for r in trials if r.get("best_value") is not None]
    fig.add_trace(
        go.Scatter(
            x=[b[0] for b in best], y=[b[1] for b in best], mode="lines", name="best so far", line={"color": VAL}
        )
    )
    fig.update_layout(
        title=f"Optimisation history: validation {label} per trial",
        xaxis_title="trial",
        yaxis_title=f"validation {label}",
        height=height,
        **_LAYOUT,
    )
    return fig


EDGE_STYLES = {  # class -> (colour, dash, legend text)
    "correct": ("#2ca02c", "solid", "correct: a true edge, right direction"),
    "reversed": ("#ff7f0e", "solid", "reversed: a true edge, wrong direction"),
    "unoriented": ("#9467bd", "dot", "unoriented: a true edge, direction left open"),
    "extra": ("#d62728", "solid", "extra: no such edge in the truth"),
    "missing": ("#9e9e9e", "dash", "missing: a true edge not found"),
    "learned": (TRAIN, "solid", "learned edge"),
    "undirected": ("#7f7f7f", "dot", "undirected: direction left open"),
}


def edge_classes_figure(
    names: Sequence[str], rows: Sequence[Mapping[str, str]], title: str, height: int = 420
) -> go.Figure:
    """A graph on a circle with each edge coloured by its class (``classify_edges`` rows:
    cause, effect, class); the legend names the classes in words. Directed classes get an
    arrowhead, undirected ones none."""
    d = len(names)
    angle = np.pi / 2 - 2 * np.pi * np.arange(d) / max(d, 1)
    pos = {n: (float(np.cos(a)), float(np.sin(a))) for n, a in zip(names, angle, strict=True)}
    fig = go.Figure()
    for kind, (colour, dash, text) in EDGE_STYLES.items():
        mine = [r for r in rows if r["class"] == kind]
        if not mine:
            continue
        xs, ys = [], []
        for r in mine:
            (x0, y0), (x1, y1) = pos[r["cause"]], pos[r["effect"]]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{text} ({len(mine)})",
                hoverinfo="skip",
                line={"color": colour, "dash": dash, "width": 2.5},
            )
        )
        if kind in ("unoriented", "undirected"):
            continue
        for r in mine:
            (x0, y0), (x1, y1) = pos[r["cause"]], pos[r["effect"]]
            fig.add_annotation(
                x=x1,
                y=y1,
                ax=x0,
                ay=y0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=3,
                arrowsize=1.4,
                arrowwidth=2,
                arrowcolor=colour,
                standoff=16,
                startstandoff=14,
                text="",
            )
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] for n in names],
            mode="markers+text",
            text=[plotly_text(n) for n in names],
            textposition="middle center",
            textfont={"color": "#111", "size": 11},
            marker={"size": 30, "color": "#e8eef7", "line": {"width": 1, "color": "#555"}},
            hovertext=[plotly_text(n) for n in names],
            hoverinfo="text",
            showlegend=False,
            cliponaxis=False,
        )
    )
    fig.update_xaxes(visible=False, range=[-1.3, 1.3])
    fig.update_yaxes(visible=False, range=[-1.3, 1.3], scaleanchor="x")
    fig.update_layout(
        title=plotly_text(title),
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.02},
    )
    return fig


def occlusion_figure(picture: Any, effects: Any, title: str | None = None, height: int = 240) -> go.Figure:
    """An occlusion map as a heat map over the character: each patch coloured by the change in
    query loss when it is blanked (red: the loss rises, the patch helped; blue: it misled), the
    strokes drawn on top as an outline."""
    pic = np.asarray(picture, dtype=float)
    while pic.ndim > 2:
        pic = pic[0]
    eff = np.asarray(effects, dtype=float)
    h, w = pic.shape
    patch = int(np.ceil(h / eff.shape[0]))
    cells = np.kron(eff, np.ones((patch, patch)))[:h, :w]
    top = float(np.abs(eff).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=cells,
            zmin=-top,
            zmax=top,
            colorscale="RdBu_r",
            colorbar={"title": "Δ loss", "thickness": 10},
            hovertemplate="row %{y}, col %{x}: Δ query loss %{z:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Contour(
            z=pic,
            contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "lines"},
            line={"color": "black", "width": 1.5},
            showscale=False,
            hoverinfo="skip",
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_layout(**_LAYOUT)
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    return fig
