"""ui.figures: every figure builds from plain data and shows what it claims."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from ui import figures


def _history(n=50, metric="mse", every=10):
    it = list(range(n))
    vit = it[::every]
    return {
        "metric_name": metric,
        "iteration": it,
        "train_loss": [1.0 / (i + 1) for i in it],
        "train_metric": [0.5 + i / (2 * n) for i in it],
        "val_iteration": vit,
        "val_loss": [1.0 / (i + 2) for i in vit],
        "val_metric": [0.5 + i / (2 * n) for i in vit],
    }


def _by_name(fig, name):
    return [t for t in fig.data if t.name == name]


def test_training_figure_has_train_val_and_smoothed_curves():
    fig = figures.training_figure(_history(metric="accuracy"), title="run")
    assert isinstance(fig, go.Figure)
    train = _by_name(fig, "train")
    assert len(train) == 2 and len(train[0].x) == 50  # loss and metric panels
    assert list(train[0].y) != list(train[1].y)
    assert len(_by_name(fig, "validation")) == 2 and list(_by_name(fig, "validation")[0].x) == [0, 10, 20, 30, 40]
    smooth = _by_name(fig, f"train, mean of {figures.SMOOTH_WINDOW}")
    assert len(smooth) == 2 and len(smooth[0].y) == 50
    assert fig.layout.title.text == "run"
    assert [a.text for a in fig.layout.annotations] == ["loss", "accuracy"]


def test_training_figure_for_regression_draws_the_mse_once():
    hist = _history()
    fig = figures.training_figure(hist)
    assert [a.text for a in fig.layout.annotations] == ["MSE"]
    train, val = _by_name(fig, "train"), _by_name(fig, "validation")
    assert len(train) == 1 and list(train[0].y) == list(hist["train_metric"])
    assert len(val) == 1 and list(val[0].y) == list(hist["val_metric"])


def test_training_figure_accuracy_axis_and_thinning():
    fig = figures.training_figure(_history(n=10_000, metric="accuracy"))
    assert fig.layout.annotations[1].text == "accuracy"
    assert fig.layout.yaxis2.range == (0, 1.02)
    x = _by_name(fig, "train")[0].x
    assert len(x) <= figures.MAX_POINTS + 1 and x[-1] == 9999  # thinned, last point kept


def test_training_figure_empty_history():
    fig = figures.training_figure(
        {"metric_name": None, "iteration": [], "train_loss": [], "train_metric": [], "val_iteration": []}
    )
    assert all(len(t.x or ()) == 0 for t in fig.data)


def test_running_mean():
    assert figures.running_mean([1, 3, 5, 7], window=2) == [1.0, 2.0, 4.0, 6.0]
    assert figures.running_mean([], window=3) == []


def test_runs_overlay_one_trace_per_run_baseline_dashed():
    runs = [
        {"name": "causal", "history": _history(), "plain": False},
        {"name": "baseline", "history": _history(), "plain": True},
    ]
    fig = figures.runs_overlay_figure(runs, "val_metric")
    assert [t.name for t in fig.data] == ["causal", "baseline"]
    assert fig.data[0].line.dash == "solid" and fig.data[1].line.dash == "dash"
    assert list(fig.data[0].x) == [0, 10, 20, 30, 40]
    assert "MSE" in fig.layout.title.text
    smooth = figures.runs_overlay_figure(runs, "train_loss", smooth=5)
    assert len(smooth.data[0].x) == 46 and len(smooth.data[0].y) == 46


def test_sinusoid_figure_traces_and_click_grid():
    x = np.linspace(-5, 5, 20)
    fig = figures.sinusoid_figure(
        x, truth=np.sin(x), prior=0 * x, adapted=np.sin(x), support=([1.0], [0.8]), clickable=True
    )
    names = [t.name for t in fig.data]
    assert names[0] == "click to choose a point"
    assert "true task" in names and "after one-shot adaptation" in names and "your point" in names
    grid = fig.data[0]
    assert len(grid.x) == len(grid.y) > 100 and min(grid.x) == -5 and max(grid.x) == 5
    renamed = figures.sinusoid_figure(x, truth=np.sin(x), prior=x, names={"prior": "no intervention"})
    assert [t.name for t in renamed.data] == ["true task", "no intervention"]


def test_click_grid_covers_the_range():
    gx, gy = figures.click_grid((-1, 1), (-2, 2), step=0.5)
    assert len(gx) == 5 * 9 and set(gx) == {-1.0, -0.5, 0.0, 0.5, 1.0} and min(gy) == -2 and max(gy) == 2


def test_scm_graph_figure_draws_every_edge_and_marks_roles():
    truth = {
        "adjacency": [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
        "variable_names": ["X0", "X1", "X2", "X3"],
        "target": "X2",
        "parents": ["X0", "X1"],
        "children": ["X3"],
    }
    fig = figures.scm_graph_figure(truth, intervened=["X1"])
    assert len(fig.layout.annotations) == 4  # one arrow per edge
    nodes = fig.data[0]
    assert list(nodes.text) == ["X0", "X1", "X2", "X3"]
    colors = list(nodes.marker.color)
    assert colors[2] == figures.ADAPTED and colors[0] == colors[1] == figures.SUPPORT and colors[3] == figures.VAL
    assert list(nodes.marker.line.width) == [1, 5, 1, 1]
    # layers: X0 root, X1 after X0, X2 after X1, X3 last
    assert list(nodes.x) == [0.0, 1.0, 2.0, 3.0]


def test_small_figures():
    assert len(figures.trace_figure([3, 2, 1]).data[0].x) == 3
    exp = {"gates_before": [0.9, 0.8], "gates_after": [0.7, 0.9], "mechanism_shift": [0.1, 0.3]}
    fig = figures.explanation_figure(exp)
    assert [t.name for t in fig.data] == ["before", "after", "weight change"]
    probs = figures.probabilities_figure(["a", "b"], [0.2, 0.8], [0.6, 0.4])
    assert [list(t.y) for t in probs.data] == [[0.2, 0.8], [0.6, 0.4]]
    eff = figures.effects_figure(
        [{"mechanism": "mechanism 0", "effect": 0.5}, {"mechanism": "mechanism 1", "effect": -0.1}]
    )
    assert list(eff.data[0].y) == [0.5, -0.1]
    assert list(eff.data[0].marker.color) == [figures.ADAPTED, figures.SUPPORT]
    vals = figures.values_figure([1, 2, 3], [1.1, 2.1, 2.9], [0, 0, 0])
    assert [t.name for t in vals.data] == ["prediction", "with intervention", "perfect"]
    lv = figures.levels_figure({"feature": {"loss": 1.0}, "structure": {"loss": 0.5}}, "loss")
    assert list(lv.data[0].y) == [1.0, 0.5]


def test_belief_figure():
    fig = figures.belief_figure([1, 2, 3], curves=[[0.5, 0.6, 0.7], [0.5, 0.7, 0.9]], median=[0.5, 0.65, 0.8])
    names = [t.name for t in fig.data]
    assert names.count("runs") == 2 and "median" in names and "published median" in names
    assert fig.layout.yaxis.range == (0, 1.02)


@pytest.mark.parametrize("name,label", [("mse", "MSE"), ("accuracy", "accuracy"), (None, "metric"), ("f1", "f1")])
def test_metric_label(name, label):
    assert figures.metric_label(name) == label


def test_scm_graph_figure_of_fifty_variables_is_laid_out_by_causal_order_and_not_clipped():
    from engine.tasks import SCMTaskSource

    truth = SCMTaskSource(num_variables=50).truth_graph()
    fig = figures.scm_graph_figure(truth)
    nodes = fig.data[0]
    adj = np.asarray(truth["adjacency"])
    assert adj.sum() > 50
    for i, j in zip(*np.nonzero(adj), strict=True):
        assert nodes.x[j] > nodes.x[i]  # every edge points right: causal order
    assert nodes.cliponaxis is False and set(nodes.marker.size) == {18}
    per_layer = max(list(nodes.x).count(x) for x in set(nodes.x))
    assert fig.layout.height >= 34 * per_layer
    lo, hi = fig.layout.xaxis.range
    assert lo < min(nodes.x) - 0.5 and hi > max(nodes.x) + 0.5


def test_causal_layers_ignore_undirected_edges():
    # 0 -> 1, and 1 - 2 drawn both ways (PC's undirected edge): 2 is not forced after 1
    adj = [[0, 1, 0], [0, 0, 1], [0, 1, 0]]
    assert figures.causal_layers(adj) == [0, 1, 0]


def test_occlusion_figure_heat_map_over_the_character():
    pic = np.zeros((1, 28, 28), dtype=np.float32)
    pic[0, 4:8, 4:8] = 1.0
    effects = np.zeros((7, 7))
    effects[1, 1], effects[3, 3] = 0.6, -0.2
    fig = figures.occlusion_figure(pic, effects, title="A <b>")
    heat, outline = fig.data
    z = np.asarray(heat.z)
    assert z.shape == (28, 28) and z[5, 5] == 0.6 and z[13, 13] == -0.2 and z[0, 0] == 0.0
    assert heat.zmin == -0.6 and heat.zmax == 0.6  # symmetric: white is no effect
    assert outline.type == "contour" and np.asarray(outline.z).shape == (28, 28)
    assert fig.layout.title.text == "A <b>"  # the caller escapes user names (plotly_text)
