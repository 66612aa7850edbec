"""classify_edges: every pair of a predicted graph against the truth, in words the app colours by."""

import numpy as np

from engine.graph_learning import classify_edges, edge_scores, learn_graph
from engine.lab_simulation import simulate_lab_data

NAMES = ["a", "b", "c", "d"]
# truth: a->b, b->c, c->d
TRUTH = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])


def _classes(rows):
    return {(r["cause"], r["effect"]): r["class"] for r in rows}


def test_each_kind_of_edge_gets_its_class():
    predicted = np.zeros((4, 4), dtype=int)
    predicted[0, 1] = 1  # correct
    predicted[2, 1] = 1  # reversed (truth b->c)
    predicted[0, 3] = 1  # extra
    # c->d not predicted: missing
    got = _classes(classify_edges(predicted, TRUTH, NAMES))
    assert got == {("a", "b"): "correct", ("c", "b"): "reversed", ("a", "d"): "extra", ("c", "d"): "missing"}


def test_undirected_edges_are_unoriented_or_extra_and_classes_add_up_to_the_shd():
    predicted = np.zeros((4, 4), dtype=int)
    predicted[1, 2] = predicted[2, 1] = 1  # true pair, no direction
    predicted[0, 2] = predicted[2, 0] = 1  # no true edge
    got = _classes(classify_edges(predicted, TRUTH, NAMES))
    assert got[("b", "c")] == "unoriented" and got[("a", "c")] == "extra"
    assert got[("a", "b")] == "missing" and got[("c", "d")] == "missing"
    wrong = sum(c != "correct" for c in got.values())
    assert wrong == edge_scores(predicted, TRUTH)["shd"]


def test_without_truth_edges_are_learned_or_undirected():
    predicted = np.zeros((4, 4), dtype=int)
    predicted[0, 1] = 1
    predicted[2, 3] = predicted[3, 2] = 1
    got = _classes(classify_edges(predicted, None, NAMES))
    assert got == {("a", "b"): "learned", ("c", "d"): "undirected"}


def test_classes_match_the_scores_on_a_learned_graph_and_progress_is_reported():
    sim = simulate_lab_data(2, num_variables=6, num_interventions=5, rows=(300, 300))
    calls = []
    result = learn_graph(
        sim.frame,
        "regime",
        "observational",
        baselines=["empty", "ges_observational"],
        progress=lambda *a: calls.append(a),
    )
    assert [c[1:] for c in calls] == [(0, 3), (1, 3), (2, 3)] and "ges_observational" in calls[-1][0]
    rows = classify_edges(np.asarray(result["adjacency"]), sim.adjacency, sim.names)
    shd = edge_scores(np.asarray(result["adjacency"]), sim.adjacency)["shd"]
    assert sum(r["class"] != "correct" for r in rows) == shd
    assert sum(r["class"] == "correct" for r in rows) > 0


def test_edge_figure_names_the_classes_in_words_and_shows_names_as_text():
    from ui.figures import edge_classes_figure

    names = ["<b>x</b>", "a&b", "c"]
    rows = [
        {"cause": "<b>x</b>", "effect": "a&b", "class": "correct"},
        {"cause": "c", "effect": "a&b", "class": "missing"},
    ]
    fig = edge_classes_figure(names, rows, "<i>ours</i>")
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend == ["correct: a true edge, right direction (1)", "missing: a true edge not found (1)"]
    nodes = fig.data[-1]
    assert list(nodes.text) == ["&lt;b&gt;x&lt;/b&gt;", "a&amp;b", "c"]
    assert fig.layout.title.text == "&lt;i&gt;ours&lt;/i&gt;"
    assert len(fig.layout.annotations) == 2  # one arrowhead per directed edge
