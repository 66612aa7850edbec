"""Per-target discovery assembled into one graph: every numeric column of a task CSV is the
regression target in turn, a small meta-learner is trained on the regimes (all in the training
split), FEATURE_TRANSFER discovery finds the columns that cause it (invariance across regimes
where the test accepts a set), and those parents become the edges of one directed graph,
optionally scored against a truth with ``graph_learning.edge_scores``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .config import CausalMechanismType, OneShotMetaLearningConfig
from .discovery import invariance_fallback_note
from .graph_learning import edge_scores, graph_data, read_truth
from .tasks.tabular import TabularTaskSource, read_csv

__all__ = ["assemble_parent_graph", "SMALL_CONFIG"]

# Few iterations: a quick look, not a trained model (raise num_meta_iterations for more).
SMALL_CONFIG = {
    "support_shots": 10,
    "query_shots": 20,
    "meta_batch_size": 2,
    "num_meta_iterations": 20,
    "num_inner_steps": 3,
    "first_order": True,
    "val_episodes": 2,
    "hidden_dim": 32,
    "device": "cpu",
}


def _parents(
    engine: Any, source: TabularTaskSource, alpha: float, use_invariance: bool, threshold: float
) -> dict[str, Any]:
    """Train on every regime, run FEATURE_TRANSFER discovery, return this target's parents."""
    engine.initialize_for_source(source)
    engine.meta_train_sync(source)
    engine.discover_causal_patterns_sync(
        source.all_tasks("train"),
        types=[CausalMechanismType.FEATURE_TRANSFER],
        use_invariance=use_invariance,
        invariance_alpha=alpha,
        threshold=threshold,
    )
    kept = [
        m
        for m in engine.discovered_mechanisms
        if m.mechanism_type == CausalMechanismType.FEATURE_TRANSFER and m.target == "output"
    ]
    report = engine.discovery_report or {}
    return {
        "parents": sorted(m.source for m in kept),
        "strength": {m.source: round(float(m.causal_strength), 4) for m in kept},
        "invariance_fallback": bool((report.get("invariance") or {}).get("fallback")),
        "note": invariance_fallback_note(report),
    }


def assemble_parent_graph(
    data: Any,
    task_column: str,
    truth: Any = None,
    config: OneShotMetaLearningConfig | None = None,
    use_invariance: bool = True,
    invariance_alpha: float = 0.01,
    threshold: float = 0.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Each numeric column of ``data`` (CSV path, bytes or DataFrame) as the target in turn; its
    discovered parents are the edges into it. Returns ``variables``, ``edges`` ([[cause,
    effect], ...]), ``per_target`` (parents, strengths, whether the invariance test fell back),
    ``settings`` and, with a ``truth`` (cause,effect CSV or DataFrame), ``scores`` (ours and the
    empty graph). ``threshold``: least causal strength of a parent (0 keeps every invariant cause
    the discovery measured; the engine's default of 0.7 keeps few on small data)."""
    from .engine import OneShotMetaLearningEngine  # the engine imports torch; keep this module light

    frame = data if isinstance(data, pd.DataFrame) else read_csv(data, "the data CSV")
    frame = frame.rename(columns=str)
    names = graph_data(frame, task_column).names  # numeric columns, two regimes or more, finite values
    truth_adj = read_truth(truth, names) if truth is not None else None
    config = config or OneShotMetaLearningConfig(**SMALL_CONFIG)
    index = {n: i for i, n in enumerate(names)}
    adjacency = np.zeros((len(names), len(names)), dtype=int)
    per_target: dict[str, Any] = {}
    for k, target in enumerate(names):
        if progress is not None:
            progress(f"discovering the parents of {target}", k, len(names))
        source = TabularTaskSource(
            frame,
            target_column=target,
            task_column=task_column,
            task_type="regression",
            split_fractions=(1.0, 0.0, 0.0),
            seed=config.seed,
            feature_columns=[n for n in names if n != target],
        )
        found = _parents(OneShotMetaLearningEngine(config), source, invariance_alpha, use_invariance, threshold)
        per_target[target] = found
        for parent in found["parents"]:
            adjacency[index[parent], index[target]] = 1
    result: dict[str, Any] = {
        "variables": names,
        "edges": [[names[u], names[v]] for u, v in zip(*np.nonzero(adjacency), strict=True)],
        "adjacency": adjacency.tolist(),
        "per_target": per_target,
        "settings": {
            "method": "per-target FEATURE_TRANSFER discovery, parents assembled",
            "task_column": task_column,
            "use_invariance": use_invariance,
            "invariance_alpha": invariance_alpha,
            "threshold": threshold,
            "config": config.to_dict(),
        },
    }
    if truth_adj is not None:
        result["truth_edges"] = int(truth_adj.sum())
        result["scores"] = {
            "ours": edge_scores(adjacency, truth_adj),
            "empty": edge_scores(np.zeros_like(truth_adj), truth_adj),
        }
    return result
