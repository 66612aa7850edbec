"""A causal graph from a table of regimes (an observational one and interventions), scored
against a truth and against baselines (docs/DESIGN.md section 3, "Graphs from data").

The method, in three steps, built for measurements that are heavy-tailed, saturating and
softly intervened on:

1. **Gaussianise**: each column becomes the normal scores of its ranks over all rows, so a
   log-scale, heavy-tailed or monotone saturating relation looks roughly linear-Gaussian
   and no row dominates.
2. **Skeleton within regimes**: each regime's rows are centred and the partial correlations
   are computed from the pooled within-regime covariance, so an intervention's shift of
   means creates no spurious dependence. An edge a - b is removed, PC-style, when a partial
   correlation given some set of up to ``max_condition`` neighbours falls below
   ``min_partial`` in size: an effect-size threshold, because with thousands of rows every
   weak dependence is "significant".
3. **Orientation by invariance across regimes**: for each edge, the direction whose child
   mechanism p(child | parent) is shared by all regimes (while the parent's distribution
   may change in every regime) fits the regimes better: the sparse-mechanism-shift
   principle. Both directions have the same number of parameters, so their pooled
   log-likelihoods compare directly; regimes known to act on the child get their own
   mechanism. An edge whose two directions fit within ``orient_margin`` nats stays undirected.

Intervention targets of each regime are then inferred: a variable whose residual given its
learned parents changes (standardised mean shift or log spread ratio at least
``target_effect``) relative to the observational regime (or, with none, the pooled data).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .causal_direction import structural_hamming_distance
from .graph_baselines import BASELINES
from .tasks.tabular import TaskError, read_csv

__all__ = ["GraphData", "graph_data", "learn_graph", "read_truth", "read_targets", "edge_scores", "classify_edges"]


class GraphData:
    """The numeric matrix, each row's regime, the variable names and the targets known."""

    def __init__(self, values: np.ndarray, regimes: np.ndarray, names: list[str], observational: str | None):
        self.values, self.regimes, self.names, self.observational = values, regimes, names, observational

    @property
    def regime_names(self) -> list[str]:
        return sorted(set(self.regimes.tolist()), key=str)


def graph_data(
    source: Any, task_column: str, observational: str | None = None, columns: list[str] | None = None
) -> GraphData:
    """Check and convert a CSV path, bytes or DataFrame; every problem is a TaskError naming it."""
    frame = source if isinstance(source, pd.DataFrame) else read_csv(source, "the data CSV")
    frame = frame.rename(columns=str)
    if task_column not in frame.columns:
        raise TaskError(f"task column {task_column!r} is not a column of the CSV (columns: {list(frame.columns)})")
    names = [c for c in (columns or frame.columns) if c != task_column]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise TaskError(f"columns {missing} are not in the CSV")
    text = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise TaskError(f"columns {text} are not numeric; a graph is learned from numeric measurements only")
    if len(names) < 2:
        raise TaskError("a graph needs at least two numeric columns besides the task column")
    values = frame[names].to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise TaskError(f"{int(bad.sum())} row(s) have missing or non-finite values (first: row {int(np.argmax(bad))})")
    regimes = frame[task_column].astype(str).to_numpy()
    found = sorted(set(regimes.tolist()))
    if len(found) < 2:
        raise TaskError(
            f"task column {task_column!r} has only one regime ({found[0]!r}); a graph from interventions needs "
            "an observational regime and at least one interventional one"
        )
    if observational is not None and str(observational) not in found:
        raise TaskError(f"observational regime {observational!r} is not a value of {task_column!r} (values: {found})")
    small = [r for r in found if (regimes == r).sum() < 10]
    if small:
        raise TaskError(f"regimes {small} have fewer than 10 rows")
    return GraphData(values, regimes, names, None if observational is None else str(observational))


def read_targets(source: Any, data: GraphData) -> dict[str, list[str]]:
    """A targets JSON (path, text or dict) mapping regime -> variables it acts on, checked."""
    if isinstance(source, dict):
        raw = source
    else:
        try:
            text = Path(source).read_text(encoding="utf-8") if not str(source).lstrip().startswith("{") else source
            raw = json.loads(text)
        except (OSError, ValueError) as exc:
            raise TaskError(f"cannot read the targets JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TaskError('the targets JSON must be an object like {"regime": ["x3"]}')
    out: dict[str, list[str]] = {}
    for regime, targets in raw.items():
        if str(regime) not in data.regime_names:
            raise TaskError(f"targets name regime {regime!r}, which is not in the data (regimes: {data.regime_names})")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise TaskError(f"targets of regime {regime!r} must be a list of column names")
        unknown = [t for t in targets if t not in data.names]
        if unknown:
            raise TaskError(f"targets of regime {regime!r} name unknown variables {unknown} (variables: {data.names})")
        out[str(regime)] = list(targets)
    return out


def read_truth(source: Any, names: list[str]) -> np.ndarray:
    """A two-column cause,effect CSV (path, bytes or DataFrame) as an adjacency over ``names``."""
    frame = source if isinstance(source, pd.DataFrame) else read_csv(source, "the truth CSV")
    if frame.shape[1] != 2:
        raise TaskError(f"the truth CSV needs exactly two columns (cause, effect); it has {frame.shape[1]}")
    adj = np.zeros((len(names), len(names)), dtype=int)
    index = {n: i for i, n in enumerate(names)}
    for cause, effect in frame.astype(str).itertuples(index=False):
        unknown = [v for v in (cause, effect) if v not in index]
        if unknown:
            raise TaskError(f"the truth names unknown variables {unknown} (variables: {names})")
        if cause == effect:
            raise TaskError(f"the truth has a self-loop on {cause!r}")
        adj[index[cause], index[effect]] = 1
    return adj


# ------------------------------------------------------------------------------ the method
def gaussianise(values: np.ndarray) -> np.ndarray:
    """Normal scores of each column's ranks (ties averaged)."""
    from scipy.special import ndtri  # scipy comes with causal-learn
    from scipy.stats import rankdata

    n = len(values)
    return ndtri(rankdata(values, axis=0) / (n + 1))


def _within_correlation(z: np.ndarray, regimes: np.ndarray) -> np.ndarray:
    centred = z.copy()
    for r in np.unique(regimes):
        rows = regimes == r
        centred[rows] -= centred[rows].mean(0)
    cov = centred.T @ centred / len(z)
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


def _partial(corr: np.ndarray, a: int, b: int, given: tuple[int, ...]) -> float:
    idx = [a, b, *given]
    prec = np.linalg.pinv(corr[np.ix_(idx, idx)])
    return float(-prec[0, 1] / math.sqrt(prec[0, 0] * prec[1, 1]))


def skeleton(corr: np.ndarray, min_partial: float, max_condition: int) -> tuple[np.ndarray, np.ndarray]:
    """PC's adjacency search with |partial correlation| < ``min_partial`` as independence;
    returns the skeleton and each pair's smallest |partial correlation| seen."""
    d = len(corr)
    adj = np.ones((d, d), dtype=bool) & ~np.eye(d, dtype=bool)
    strength = np.abs(corr).copy()
    for size in range(max_condition + 1):
        for a, b in itertools.combinations(range(d), 2):
            if not adj[a, b]:
                continue
            pool = sorted((set(np.flatnonzero(adj[a])) | set(np.flatnonzero(adj[b]))) - {a, b})
            for given in itertools.combinations(pool, size):
                r = abs(_partial(corr, a, b, given))
                strength[a, b] = strength[b, a] = min(strength[a, b], r)
                if r < min_partial:
                    adj[a, b] = adj[b, a] = False
                    break
    return adj, strength


def _conditional_loglik(child: np.ndarray, parent: np.ndarray, groups: np.ndarray) -> float:
    """Gaussian log-likelihood of child ~ a + b*parent, one regression per group label."""
    total = 0.0
    for g in np.unique(groups):
        rows = groups == g
        x = np.column_stack([np.ones(rows.sum()), parent[rows]])
        coef, *_ = np.linalg.lstsq(x, child[rows], rcond=None)
        var = max(float(np.mean((child[rows] - x @ coef) ** 2)), 1e-9)
        total += -0.5 * rows.sum() * (math.log(2 * math.pi * var) + 1)
    return total


def _marginal_loglik(x: np.ndarray, regimes: np.ndarray) -> float:
    total = 0.0
    for r in np.unique(regimes):
        v = max(float(x[regimes == r].var()), 1e-9)
        total += -0.5 * (regimes == r).sum() * (math.log(2 * math.pi * v) + 1)
    return total


def direction_score(z: np.ndarray, regimes: np.ndarray, a: int, b: int, known: dict[str, set[int]]) -> float:
    """log-likelihood(a -> b) - log-likelihood(b -> a), each with the cause free per regime
    and the effect's mechanism shared except in regimes known to act on the effect."""

    def fit(cause: int, effect: int) -> float:
        groups = np.array([r if effect in known.get(r, ()) else "__shared__" for r in regimes])
        return _marginal_loglik(z[:, cause], regimes) + _conditional_loglik(z[:, effect], z[:, cause], groups)

    return fit(a, b) - fit(b, a)


def infer_targets(
    z: np.ndarray, regimes: np.ndarray, directed: np.ndarray, observational: str | None, effect: float
) -> dict[str, list[int]]:
    """Per regime, the variables whose mechanism (residual given the learned parents) changed."""
    d = z.shape[1]
    ref_rows = regimes == observational if observational is not None else np.ones(len(z), dtype=bool)
    resid = np.zeros_like(z)
    for v in range(d):
        parents = np.flatnonzero(directed[:, v])
        x = np.column_stack([np.ones(ref_rows.sum()), z[ref_rows][:, parents]])
        coef, *_ = np.linalg.lstsq(x, z[ref_rows, v], rcond=None)
        resid[:, v] = z[:, v] - np.column_stack([np.ones(len(z)), z[:, parents]]) @ coef
    ref = resid[ref_rows]
    out: dict[str, list[int]] = {}
    for r in sorted(set(regimes.tolist())):
        if r == observational:
            continue
        rows = resid[regimes == r]
        shift = np.abs(rows.mean(0) - ref.mean(0)) / (ref.std(0) + 1e-9)
        spread = np.abs(np.log((rows.std(0) + 1e-9) / (ref.std(0) + 1e-9)))
        out[r] = np.flatnonzero((shift >= effect) | (spread >= effect)).tolist()
    return out


DEFAULTS = {"min_partial": 0.15, "max_condition": 2, "orient_margin": 2.0, "target_effect": 0.5}


def learn_graph(
    source: Any,
    task_column: str = "task",
    observational: str | None = None,
    targets: Any = None,
    truth: Any = None,
    baselines: bool | list[str] = False,
    min_partial: float = DEFAULTS["min_partial"],
    max_condition: int = DEFAULTS["max_condition"],
    orient_margin: float = DEFAULTS["orient_margin"],
    target_effect: float = DEFAULTS["target_effect"],
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Learn a graph from a CSV path, bytes or DataFrame whose ``task_column`` names each row's regime.

    ``targets``: a dict or JSON file mapping regimes to the variables they act on (others unknown);
    ``truth``: a cause,effect CSV or DataFrame; ``baselines``: True for all of
    ``engine.graph_baselines.BASELINES`` or a list of their names. Returns the JSON-ready result:
    ``edges``, ``undirected``, ``targets`` (per regime: known and inferred), ``settings``, and with a
    truth ``scores`` (ours and each baseline: SHD, precision, recall). ``progress(message, done,
    total)`` is called before each step (our graph, then each baseline)."""
    if not 0 < min_partial < 1:
        raise ValueError(f"min_partial must be in (0, 1), got {min_partial}")
    if not 0 <= max_condition <= 6:
        raise ValueError(f"max_condition must be in 0..6, got {max_condition}")
    t0 = time.perf_counter()
    data = graph_data(source, task_column, observational)
    steps = 1 + (0 if not baselines else len(BASELINES) if baselines is True else len(baselines))
    if progress is not None:
        progress("learning our graph", 0, steps)
    known_names = read_targets(targets, data) if targets is not None else {}
    index = {n: i for i, n in enumerate(data.names)}
    known = {r: {index[t] for t in ts} for r, ts in known_names.items()}
    z = gaussianise(data.values)
    adj, strength = skeleton(_within_correlation(z, data.regimes), min_partial, max_condition)
    directed = np.zeros_like(adj, dtype=int)
    undirected = []
    for a, b in zip(*np.nonzero(np.triu(adj)), strict=True):
        s = direction_score(z, data.regimes, a, b, known)
        if abs(s) < orient_margin:
            undirected.append((int(a), int(b)))
            directed[a, b] = directed[b, a] = 1
        else:
            directed[(a, b) if s > 0 else (b, a)] = 1
    one_way = directed * (1 - directed.T)
    inferred = infer_targets(z, data.regimes, one_way, data.observational, target_effect)
    names = data.names
    result: dict[str, Any] = {
        "variables": names,
        "regimes": data.regime_names,
        "observational": data.observational,
        "edges": [[names[u], names[v]] for u, v in zip(*np.nonzero(one_way), strict=True)],
        "undirected": [[names[a], names[b]] for a, b in undirected],
        "edge_strength": {
            f"{names[a]}-{names[b]}": round(float(strength[a, b]), 4)
            for a, b in zip(*np.nonzero(np.triu(adj)), strict=True)
        },
        "targets": {
            r: {"known": known_names.get(r), "inferred": [names[i] for i in inferred.get(r, [])]}
            for r in data.regime_names
            if r != data.observational
        },
        "settings": {
            "method": "within-regime partial-correlation skeleton + invariance orientation",
            "task_column": task_column,
            "min_partial": min_partial,
            "max_condition": max_condition,
            "orient_margin": orient_margin,
            "target_effect": target_effect,
            "targets_known_for": sorted(known_names),
        },
        "adjacency": directed.tolist(),
    }
    result["elapsed_s"] = round(time.perf_counter() - t0, 3)  # ours alone, before any baseline
    graphs = {"ours": directed}
    if baselines:
        from .graph_baselines import run_baselines  # causal-learn and gies load only when asked

        chosen = None if baselines is True else list(baselines)
        runs = run_baselines(data, known_names, chosen, progress=None if progress is None else _offset(progress, steps))
        result["baselines"] = {
            k: {**v, "adjacency": None if v["adjacency"] is None else v["adjacency"].tolist()} for k, v in runs.items()
        }
        graphs.update({k: v["adjacency"] for k, v in runs.items() if v.get("adjacency") is not None})
    if truth is not None:
        t = read_truth(truth, names)
        result["truth_edges"] = int(t.sum())
        result["scores"] = {k: edge_scores(g, t) for k, g in graphs.items()}
    return result


def edge_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """SHD (per pair; undirected or reversed costs 1) and precision/recall of the directed edges."""
    p = np.asarray(predicted) != 0
    t = np.asarray(truth) != 0
    one_way = p & ~p.T
    hits = int((one_way & t).sum())
    n_pred, n_true = int(one_way.sum()), int(t.sum())
    return {
        "shd": structural_hamming_distance(p.astype(int), t.astype(int)),
        "precision": hits / n_pred if n_pred else float("nan"),
        "recall": hits / n_true if n_true else float("nan"),
        "directed_edges": n_pred,
        "undirected_edges": int((p & p.T).sum() // 2),
    }


def _offset(progress: Callable[[str, int, int], None], total: int) -> Callable[[str, int, int], None]:
    return lambda message, done, _: progress(message, done + 1, total)


EDGE_CLASSES = ("correct", "reversed", "unoriented", "extra", "missing")


def classify_edges(predicted: Any, truth: Any, names: list[str]) -> list[dict[str, str]]:
    """Each edge of a predicted graph (undirected = set both ways) against the true DAG, one
    row per pair: ``correct`` (right direction), ``reversed``, ``unoriented`` (undirected where
    the truth has an edge), ``extra`` (no edge in the truth), and ``missing`` (a true edge not
    predicted either way). Every class but ``correct`` costs 1 in the SHD. Without a truth
    (None) every predicted edge is ``learned`` (or ``undirected``)."""
    p = np.asarray(predicted) != 0
    t = np.zeros_like(p) if truth is None else np.asarray(truth) != 0
    rows: list[dict[str, str]] = []
    for a, b in itertools.combinations(range(len(names)), 2):
        both, true_ab, true_ba = p[a, b] and p[b, a], bool(t[a, b]), bool(t[b, a])
        if both:
            kind = "undirected" if truth is None else "unoriented" if true_ab or true_ba else "extra"
            rows.append({"cause": names[a], "effect": names[b], "class": kind})
        elif p[a, b] or p[b, a]:
            u, v = (a, b) if p[a, b] else (b, a)
            kind = "learned" if truth is None else "correct" if t[u, v] else "reversed" if t[v, u] else "extra"
            rows.append({"cause": names[u], "effect": names[v], "class": kind})
        elif true_ab or true_ba:
            u, v = (a, b) if true_ab else (b, a)
            rows.append({"cause": names[u], "effect": names[v], "class": "missing"})
    return rows
