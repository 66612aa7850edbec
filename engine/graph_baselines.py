"""Published structure learners run on the same table, for comparison with ``learn_graph``:
PC and GES (causal-learn) on the pooled data and on the observational regime, GIES (the
``gies`` package) where every interventional regime's targets are known, and the empty graph.
Each returns an adjacency with undirected edges set both ways."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .causal_direction import pc_adjacency

BASELINES = ("pc_pooled", "pc_observational", "ges_pooled", "ges_observational", "gies", "empty")


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)


def ges_adjacency(data: np.ndarray) -> np.ndarray:
    """causal-learn's GES with the Gaussian BIC score; the CPDAG as a 0/1 matrix."""
    from causallearn.search.ScoreBased.GES import ges

    g = ges(_standardise(np.asarray(data, dtype=float)), score_func="local_score_BIC")["G"].graph
    d = len(g)
    adj = np.zeros((d, d), dtype=int)
    for i in range(d):
        for j in range(d):
            if i != j and g[j, i] == 1 and g[i, j] == -1:  # i -> j
                adj[i, j] = 1
            elif i != j and g[i, j] == -1 and g[j, i] == -1:  # i - j
                adj[i, j] = 1
    return adj


def gies_adjacency(blocks: list[np.ndarray], targets: list[list[int]]) -> np.ndarray:
    """GIES (Hauser & Buehlmann 2012) with the Gaussian BIC score: the I-essential graph."""
    import gies

    estimate, _ = gies.fit_bic([_standardise(b) for b in blocks], targets)
    return (np.asarray(estimate) != 0).astype(int)


def run_baselines(
    data: Any,
    known: dict[str, list[str]],
    chosen: list[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict]:
    """Each chosen baseline's adjacency, time and, when it cannot run, why (``skipped``);
    ``progress(message, done, total)`` before each."""
    chosen = list(BASELINES) if chosen is None else chosen
    unknown = sorted(set(chosen) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; available: {list(BASELINES)}")
    x, regimes, d = data.values, data.regimes, len(data.names)
    obs = regimes == data.observational if data.observational is not None else None
    out: dict[str, dict] = {}
    for i, name in enumerate(chosen):
        if progress is not None:
            progress(f"running {name}", i, len(chosen))
        t0 = time.perf_counter()
        adj, why = None, None
        if name == "empty":
            adj = np.zeros((d, d), dtype=int)
        elif name.endswith("_observational") and obs is None:
            why = "no observational regime named"
        elif name.startswith("pc_"):
            adj = pc_adjacency(x if name == "pc_pooled" else x[obs])
        elif name.startswith("ges_"):
            adj = ges_adjacency(x if name == "ges_pooled" else x[obs])
        elif name == "gies":
            others = [r for r in data.regime_names if r != data.observational]
            missing = [r for r in others if r not in known]
            if missing:
                why = f"targets unknown for regimes {missing}"
            else:
                index = {n: i for i, n in enumerate(data.names)}
                blocks = [x[regimes == r] for r in data.regime_names]
                targets = [[index[t] for t in known.get(r, [])] for r in data.regime_names]
                adj = gies_adjacency(blocks, targets)
        out[name] = {"adjacency": adj, "elapsed_s": round(time.perf_counter() - t0, 3)}
        if why:
            out[name]["skipped"] = why
    return out
