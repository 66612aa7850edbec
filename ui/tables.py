"""Episodes, predictions and mechanism effects as tables, and the editable support table of a vector task
(tabular or SCM source) read back into model inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine.tasks import Episode, TaskError, TaskSource

from .figures import causal_layers


def episode_table(
    episode: Episode, feature_names: Sequence[str], class_names: Sequence[str] | None = None, target_name: str = "y"
) -> pd.DataFrame:
    """Support and query rows of a vector episode as one table (model-scale values)."""
    rows = []
    for part, xs, ys in (
        ("support", episode.support_x, episode.support_y),
        ("query", episode.query_x, episode.query_y),
    ):
        xs_np, ys_np = xs.numpy(), ys.numpy()
        for i in range(xs_np.shape[0]):
            row = {"set": part}
            row.update({f: float(v) for f, v in zip(feature_names, xs_np[i], strict=False)})
            y = ys_np[i]
            if episode.task_type == "classification":
                label = int(y)
                row[target_name] = class_names[label] if class_names else label
            else:
                row[target_name] = float(np.ravel(y)[0])
            rows.append(row)
    return pd.DataFrame(rows)


def predictions_table(
    predicted: Sequence[Any],
    targets: Sequence[Any] | None,
    class_names: Sequence[str] | None = None,
    unstandardise: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per query: prediction, target and (classification) whether it is right."""
    rows = []
    for i, p in enumerate(predicted):
        t = targets[i] if targets is not None and i < len(targets) else None
        if class_names is not None:
            row = {"query": i, "predicted": class_names[int(p)]}
            if t is not None:
                row["true"] = class_names[int(t)]
                row["correct"] = int(p) == int(t)
        else:
            pv = float(np.ravel(p)[0])
            tv = None if t is None else float(np.ravel(t)[0])
            if unstandardise is not None:
                pv = float(unstandardise(np.array([pv]))[0])
                tv = None if tv is None else float(unstandardise(np.array([tv]))[0])
            row = {"query": i, "predicted": pv}
            if tv is not None:
                row["true"] = tv
                row["error"] = pv - tv
        rows.append(row)
    return pd.DataFrame(rows)


def target_name(source: TaskSource) -> str:
    """The target column of a vector source (a CSV's target column, an SCM's target variable)."""
    return source.target_column if source.name == "tabular" else source.target


def _class_names(source: TaskSource, labels: np.ndarray) -> list[str]:
    return (
        [str(c) for c in source.class_names] if source.class_names else [str(i) for i in range(int(labels.max()) + 1)]
    )


def support_rows(source: TaskSource, episode: Episode) -> pd.DataFrame:
    """The support set of a vector episode as an editable table, in the CSV's own units."""
    x = episode.support_x.numpy().astype(np.float64)
    y = episode.support_y.numpy()
    names = list(source.feature_names or [f"x{i}" for i in range(x.shape[1])])
    csv = source.name == "tabular"  # a CSV source standardises; the table shows the file's units
    if csv:
        x = x * source.feature_std + source.feature_mean
    df = pd.DataFrame(x, columns=names)
    target = target_name(source)
    if episode.task_type == "classification":
        class_names = _class_names(source, y)
        df[target] = [class_names[int(v)] for v in y]
    else:
        yy = y.reshape(-1).astype(np.float64)
        df[target] = source.unstandardise_target(yy) if csv else yy
    return df


def _labels(values: Sequence[Any], class_names: Sequence[str], target: str) -> np.ndarray:
    labels = []
    for v in values:
        key = str(v)
        if key not in class_names:
            # Numeric classes may come back as 1.0 from an editor.
            try:
                key = str(int(float(v)))
            except (TypeError, ValueError):
                pass
        if key not in class_names:
            raise TaskError(f"unknown class {v!r} in column {target!r}; classes are {list(class_names)}")
        labels.append(class_names.index(key))
    return np.asarray(labels, dtype=np.int64)


def _numbers(rows: pd.DataFrame, columns: Any, what: str) -> np.ndarray:
    try:
        values = rows[columns].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"{what} must be a number ({exc})") from None
    return values


def rows_to_support(source: TaskSource, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Edited support rows (CSV units) -> model inputs and labels; raises TaskError."""
    names = list(source.feature_names or [])
    target = target_name(source)
    missing = [c for c in (*names, target) if c not in rows.columns]
    if missing:
        raise TaskError(f"the support rows lack columns {missing}")
    rows = rows.dropna(how="all")
    if len(rows) == 0:
        raise TaskError("give at least one support row")
    x = _numbers(rows, names, "every feature")
    if not np.isfinite(x).all():
        raise TaskError("every feature value must be a finite number (no empty cells)")
    csv = source.name == "tabular"
    if csv:
        x = source.standardise(x)
    if source.task_type == "classification":
        class_names = [str(c) for c in (source.class_names or [])]
        return x.astype(np.float32), _labels(rows[target].tolist(), class_names, target)
    y = _numbers(rows, target, f"the target {target!r}")
    if not np.isfinite(y).all():
        raise TaskError(f"the target {target!r} must be a finite number")
    if csv:
        y = (y - source.target_mean) / source.target_std
    return x.astype(np.float32), y.reshape(-1, 1).astype(np.float32)


def effects_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mechanism: its effect on the query loss when switched off alone.

    For regression the query loss is the MSE, so the metric's change would repeat the effect."""
    out = []
    for r in rows:
        row = {
            "mechanism": r["mechanism"],
            "effect on query loss": round(r["effect"], 4),
            "query loss when off": round(r["loss_off"], 4),
        }
        if r["metric"] != "mse":
            row[f"change in {r['metric']}"] = round(r["metric_change"], 4)
        out.append(row)
    return out


def scm_graph_table(truth: dict[str, Any]) -> pd.DataFrame:
    """An SCM's true graph as rows in causal order: each variable with its parents and children."""
    adj = np.asarray(truth["adjacency"], dtype=int)
    names = list(truth["variable_names"])
    layer = causal_layers(adj)
    roles = {truth.get("target"): "target"}
    roles.update({n: "parent of the target" for n in truth.get("parents", [])})
    roles.update({n: "child of the target" for n in truth.get("children", [])})
    rows = [
        {
            "variable": n,
            "causal order": layer[i],
            "role": roles.get(n, ""),
            "parents": ", ".join(names[j] for j in np.flatnonzero(adj[:, i])),
            "children": ", ".join(names[j] for j in np.flatnonzero(adj[i])),
        }
        for i, n in enumerate(names)
    ]
    return pd.DataFrame(rows).sort_values(["causal order", "variable"], kind="stable").reset_index(drop=True)
