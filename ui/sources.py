"""Task sources as the pages name them, and the tabular source built from an uploaded CSV."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from engine.tasks import TabularTaskSource, TaskError, TaskSource
from engine.tasks.tabular import read_csv


def source_label(source: TaskSource | None) -> str:
    """One line naming the source and its main settings (sidebar, captions)."""
    if source is None:
        return "none"
    info = source.describe()
    if source.name == "images":
        name = str(info.get("path") or "").rsplit("/", 1)[-1] or "images"
        return f"images: {name} ({info['n_way']}-way)"
    if source.name == "tabular":
        return f"CSV: target {info['target_column']!r}, tasks by {info['task_column']!r}"
    if source.name == "scm":
        return f"scm: {info['num_variables']} variables, {info['task_type']}"
    return source.name


def read_csv_upload(data: bytes, name: str = "the CSV") -> pd.DataFrame:
    """Parse an uploaded CSV; every problem is a TaskError with a readable message."""
    if not data:
        raise TaskError(f"{name} is empty")
    df = read_csv(bytes(data), name)  # the engine's reader: encoding, size and shape checks
    df.columns = [str(c) for c in df.columns]
    if len(df.columns) < 3:
        raise TaskError(
            f"{name} has {len(df.columns)} column(s); it needs at least a feature column, a target column and a task column"
        )
    if len(df) == 0:
        raise TaskError(f"{name} has a header but no data rows")
    return df


def guess_columns(df: pd.DataFrame) -> tuple[str, str]:
    """A sensible default (target, task) pair: a task-like column, and the last other column."""
    cols = list(df.columns)
    task = next((c for c in cols if c.lower() in ("task", "task_id", "plant", "group", "site", "subject")), None)
    if task is None:
        text_cols = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
        task = text_cols[0] if text_cols else cols[0]
    others = [c for c in cols if c != task]
    target = next((c for c in others if c.lower() in ("target", "y", "label", "yield")), others[-1])
    return target, task


def tabular_source(
    df: pd.DataFrame, target: str, task: str, features: Sequence[str] | None = None, task_type: str = "auto"
) -> TabularTaskSource:
    """A TabularTaskSource over the chosen columns (raises TaskError)."""
    return TabularTaskSource(df, target, task, task_type=task_type, feature_columns=features)
