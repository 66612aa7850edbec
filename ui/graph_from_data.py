"""The "Graph from your data" section of the Causal direction page: where the table comes from,
the checks of the uploads, the job that learns the graph (``engine.graph_learning.learn_graph``
with every baseline) and the tables and edge classes of its result."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from engine.graph_baselines import BASELINES
from engine.graph_learning import classify_edges, graph_data, learn_graph, read_targets, read_truth
from engine.lab_simulation import simulate_lab_data
from engine.tasks import EXAMPLE_CSV, TaskError
from engine.tasks.tabular import read_csv

from .sources import guess_columns
from .worker import Worker, WorkerStopped

SIMULATED = "simulated lab data (known graph)"
EXAMPLE = "example CSV (plants)"
TASKS_CSV = "the CSV in use (Tasks page)"
UPLOAD = "upload a CSV"
NO_OBSERVATIONAL = "(none)"

METHOD_LABELS = {
    "ours": "ours: invariance across regimes",
    "pc_pooled": "PC, pooled regimes",
    "pc_observational": "PC, observational regime",
    "ges_pooled": "GES, pooled regimes",
    "ges_observational": "GES, observational regime",
    "gies": "GIES (needs every regime's targets)",
    "empty": "empty graph",
}


def data_choices(tasks_csv: bool) -> list[str]:
    """The table's possible origins; the Tasks page's CSV only when one is in use."""
    return [SIMULATED, *([TASKS_CSV] if tasks_csv else []), EXAMPLE, UPLOAD]


def simulated_example(seed: int) -> dict[str, Any]:
    """Small simulated lab data (8 variables, 6 soft interventions) with its truth and targets."""
    lab = simulate_lab_data(seed, num_variables=8, num_interventions=6, rows=(300, 400))
    return {
        "frame": lab.frame,
        "truth": pd.DataFrame(lab.truth_edges, columns=["cause", "effect"]),
        "targets": lab.nominal_targets,
        "task_column": "regime",
        "observational": "observational",
    }


def example_frame() -> pd.DataFrame:
    return read_csv(EXAMPLE_CSV, "the example CSV")


def read_upload(data: bytes, name: str) -> pd.DataFrame:
    """An uploaded CSV as a table; every problem is a TaskError naming it."""
    if not data:
        raise TaskError(f"{name} is empty")
    frame = read_csv(bytes(data), name)
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise TaskError(f"{name} has a header but no data rows")
    return frame


def read_targets_upload(data: bytes, name: str = "the targets JSON") -> dict[str, Any]:
    """An uploaded targets JSON as a dict (its content is checked against the data later)."""
    try:
        raw = json.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError:
        raise TaskError(f"{name} is not UTF-8 text") from None
    except ValueError as exc:
        raise TaskError(f"{name} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise TaskError(f'{name} must be an object like {{"regime": ["x3"]}}, not a {type(raw).__name__}')
    return raw


def task_column_guess(frame: pd.DataFrame) -> str:
    """A ``regime`` column, else the first text column, else the Tasks page's guess."""
    if "regime" in frame.columns:
        return "regime"
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text or len(frame.columns) < 2:
        return (text or list(frame.columns))[0]
    return guess_columns(frame)[1]


def regimes(frame: pd.DataFrame, task_column: str) -> list[str]:
    return sorted(set(frame[task_column].astype(str)), key=str) if task_column in frame.columns else []


def check_inputs(
    frame: pd.DataFrame, task_column: str, observational: str | None, targets: Any, truth: pd.DataFrame | None
) -> None:
    """The checks ``learn_graph`` makes, before any work starts (raises TaskError naming the problem)."""
    data = graph_data(frame, task_column, observational)
    if targets is not None:
        read_targets(targets, data)
    if truth is not None:
        read_truth(truth, data.names)


def graph_job(
    frame: pd.DataFrame, task_column: str, observational: str | None, targets: Any, truth: pd.DataFrame | None
) -> Callable[[Worker], dict[str, Any]]:
    """The work function: our graph, then every baseline, reporting each step; the result also
    carries the truth's edges (``truth``) so the page can classify every graph's edges."""
    return partial(_learn_graph, frame, task_column, observational, targets, truth)


def _learn_graph(
    frame: pd.DataFrame,
    task_column: str,
    observational: str | None,
    targets: Any,
    truth: pd.DataFrame | None,
    worker: Worker,
) -> dict[str, Any]:
    def progress(message: str, done: int, total: int) -> None:
        if worker.should_stop():
            raise WorkerStopped
        worker.report({"done": done, "total": total, "fraction": done / total, "message": message})

    result = learn_graph(
        frame, task_column, observational, targets=targets, truth=truth, baselines=True, progress=progress
    )
    if truth is not None:
        adj = read_truth(truth, result["variables"])
        names = result["variables"]
        result["truth"] = [[names[u], names[v]] for u, v in zip(*np.nonzero(adj), strict=True)]
    return result


def graph_views(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Ours and every baseline that ran, as adjacency matrices (undirected = both ways)."""
    views = {"ours": np.asarray(result["adjacency"])}
    for name in BASELINES:
        run = (result.get("baselines") or {}).get(name) or {}
        if run.get("adjacency") is not None:
            views[name] = np.asarray(run["adjacency"])
    return views


def truth_matrix(result: Mapping[str, Any]) -> np.ndarray | None:
    if "truth" not in result:
        return None
    index = {n: i for i, n in enumerate(result["variables"])}
    adj = np.zeros((len(index), len(index)), dtype=int)
    for cause, effect in result["truth"]:
        adj[index[cause], index[effect]] = 1
    return adj


def edge_rows(result: Mapping[str, Any], view: str) -> list[dict[str, str]]:
    """The edges of one graph (``graph_views`` key), classed against the truth when there is one."""
    return classify_edges(graph_views(result)[view], truth_matrix(result), list(result["variables"]))


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def scores_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per method: SHD, precision and recall (with a truth), edge counts, time, and why a
    baseline did not run."""
    runs = {"ours": {"elapsed_s": result.get("elapsed_s")}, **(result.get("baselines") or {})}
    scores = result.get("scores") or {}
    rows = []
    for name, run in runs.items():
        row: dict[str, Any] = {"method": METHOD_LABELS.get(name, name)}
        s = scores.get(name)
        if "scores" in result:
            row.update(
                {
                    "SHD": s["shd"] if s else None,
                    "precision": _number(s["precision"]) if s else None,
                    "recall": _number(s["recall"]) if s else None,
                }
            )
        adj = graph_views(result).get(name)
        if adj is not None:
            both = (adj != 0) & (adj.T != 0)
            row["directed edges"] = int(((adj != 0) & ~both).sum())
            row["undirected edges"] = int(both.sum() // 2)
        row["seconds"] = run.get("elapsed_s")
        row["note"] = run.get("skipped", "")
        rows.append(row)
    return pd.DataFrame(rows)


def targets_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """Per interventional regime: the targets given (if any) and those inferred."""
    rows = [
        {
            "regime": regime,
            "known targets": ", ".join(t["known"]) if t.get("known") is not None else "(not given)",
            "inferred targets": ", ".join(t["inferred"]) or "(none found)",
        }
        for regime, t in result["targets"].items()
    ]
    return pd.DataFrame(rows, columns=["regime", "known targets", "inferred targets"])


def result_json(result: Mapping[str, Any]) -> str:
    """The result as JSON (NaN, for a precision with no predicted edge, written as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    return json.dumps(clean(dict(result)), indent=2, allow_nan=False)
