"""The Causal direction page's results as plots take them: belief curves sigma(gamma) from
the two-variable experiment (live and final), and the learned SCM graph beside the truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def live_belief(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Belief curves so far from the experiment's progress records."""
    rows = [r for r in records if "sigmas" in r]
    if not rows:
        return None
    x = [float(r["done"]) for r in rows]
    sig = np.asarray([r["sigmas"] for r in rows], dtype=float)  # (points, seeds)
    return {"episodes": x, "curves": sig.T.tolist(), "median": np.median(sig, axis=1).tolist()}


def belief_curves(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """(episodes, one curve per seed, median) of ``run_two_variable_experiment``'s result;
    None when it stopped before its first episode."""
    sigma = np.asarray(result["sigma"], dtype=float)  # (episodes, seeds)
    if sigma.ndim != 2 or not len(sigma):
        return None
    return {
        "episodes": np.arange(1, len(sigma) + 1, dtype=float).tolist(),
        "curves": sigma.T.tolist(),
        "median": np.asarray(result["median"], dtype=float).tolist(),
    }


def learned_graph_views(result: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Truth, the graph learned from interventional tasks, and PC's, as graphs for
    ``figures.scm_graph_figure`` (same variable names and target, different adjacency)."""
    base = {k: truth[k] for k in ("variable_names", "target", "parents", "children") if k in truth}
    views = {"truth": {**base, "adjacency": truth["adjacency"]}, "learned": {**base, "adjacency": result["adjacency"]}}
    if result.get("pc_adjacency") is not None:
        views["PC"] = {**base, "adjacency": result["pc_adjacency"]}
    return views
