"""Tabular (CSV) task source."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.tasks import (
    EXAMPLE_CSV,
    TabularTask,
    TabularTaskSource,
    TaskError,
    make_example_csv,
    make_task_source,
)

REPO = Path(__file__).resolve().parents[1]


def _frame(n_tasks: int = 5, rows: int = 30, seed: int = 0, label: bool = False) -> pd.DataFrame:
    """Regression frame (task, a, b, y); with ``label`` also a text column."""
    rng = np.random.default_rng(seed)
    parts = []
    for t in range(n_tasks):
        a = rng.normal(0, 1, rows)
        b = rng.normal(5, 2, rows)
        parts.append(
            pd.DataFrame(
                {
                    "task": f"t{t}",
                    "a": a,
                    "b": b,
                    "y": a * (1 + t) + 0.1 * rng.normal(size=rows),
                    "label": np.where(a > 0, "yes", "no"),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    return df if label else df.drop(columns="label")


def test_example_csv_is_shipped_and_reproducible(tmp_path: Path) -> None:
    assert EXAMPLE_CSV == REPO / "assets" / "example_tasks.csv"
    assert EXAMPLE_CSV.exists() and EXAMPLE_CSV.stat().st_size < 30_000
    out = tmp_path / "ex.csv"
    df = make_example_csv(out, seed=0)
    assert out.read_bytes() == EXAMPLE_CSV.read_bytes()
    assert sorted(df["plant"].unique()) == [f"plant_{c}" for c in "ABCDEF"]
    assert set(df["failure"].unique()) == {0, 1}


def test_example_regression() -> None:
    src = TabularTaskSource(EXAMPLE_CSV, target_column="yield", task_column="plant")
    assert src.task_type == "regression" and src.output_dim == 1
    assert src.feature_names == [
        "temperature",
        "pressure",
        "humidity",
        "vibration",
        "failure",
    ]
    assert src.input_shape == (5,)
    n_tasks = {s: len(src.task_names(s)) for s in ("train", "val", "test")}
    assert n_tasks == {"train": 4, "val": 1, "test": 1}
    assert src.target_mean is not None and src.target_std > 0
    ep = src.episodes("train", 1, 5, 10, seed=0)[0]
    assert ep.support_x.shape == (5, 5) and ep.support_y.shape == (5, 1)
    assert ep.query_x.shape == (10, 5) and ep.query_y.shape == (10, 1)
    assert ep.support_x.dtype == torch.float32 and ep.support_y.dtype == torch.float32
    # Standardised with the train tasks' rows.
    x_train = np.concatenate([t.rows()[0] for t in src.all_tasks("train")])
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(0), 1, atol=1e-4)
    raw = pd.read_csv(EXAMPLE_CSV)
    task = src.get_task("plant_A")
    x, y = task.rows()
    assert isinstance(task, TabularTask) and len(x) == 40
    np.testing.assert_allclose(
        src.unstandardise_target(y[:, 0]),
        raw[raw.plant == "plant_A"]["yield"],
        rtol=1e-5,
    )


def test_example_classification_uses_global_labels() -> None:
    src = make_task_source("tabular", data=EXAMPLE_CSV, target_column="failure", task_column="plant")
    assert src.task_type == "classification"
    assert src.class_names == ["0", "1"] and src.output_dim == 2
    eps = src.episodes("val", 2, 3, 5, seed=1)
    for ep in eps:
        assert ep.support_y.dtype == torch.int64 and ep.num_classes == 2
        assert torch.bincount(ep.support_y).tolist() == [3, 3]
        assert torch.bincount(ep.query_y).tolist() == [5, 5]


def test_chosen_feature_columns() -> None:
    kw = {"data": pd.read_csv(EXAMPLE_CSV), "target_column": "yield", "task_column": "plant"}
    src = make_task_source("tabular", **kw, feature_columns=["temperature", "pressure", "yield"])
    assert src.feature_names == ["temperature", "pressure"] and src.input_shape == (2,)
    assert src.task_type == "regression"
    with pytest.raises(TaskError, match="choose at least one feature column"):
        make_task_source("tabular", **kw, feature_columns=["yield", "plant"])
    with pytest.raises(TaskError, match=r"unknown columns \['nope'\]"):
        make_task_source("tabular", **kw, feature_columns=["temperature", "nope"])


def test_three_classes_task_with_subset_of_classes() -> None:
    df = pd.DataFrame(
        {
            "task": ["A"] * 8 + ["B"] * 8 + ["C"] * 8,
            "f": np.arange(24, dtype=float),
            "cls": [3, 3, 3, 3, 7, 7, 7, 7] + [7, 7, 7, 7, 11, 11, 11, 11] + [3, 7, 11, 3] * 2,
        }
    )
    src = TabularTaskSource(df, "cls", "task", split_fractions=(1 / 3, 1 / 3, 1 / 3))
    assert src.class_names == ["3", "7", "11"] and src.output_dim == 3
    ep = src.get_task("B").sample_episode(2, 2, np.random.default_rng(0))
    assert set(ep.support_y.tolist()) == {1, 2}  # global indices of "7" and "11"
    assert ep.num_classes == 3
    with pytest.raises(TaskError, match=r"task 'C' has too few rows.*'7': 2"):
        src.get_task("C").sample_episode(2, 1, np.random.default_rng(0))


def test_reproducible_and_split_by_task() -> None:
    src = TabularTaskSource(_frame(), "y", "task", seed=3)
    a = src.episodes("train", 3, 4, 6, seed=5)
    b = src.episodes("train", 3, 4, 6, seed=5)
    for ea, eb in zip(a, b, strict=True):
        assert torch.equal(ea.support_x, eb.support_x) and torch.equal(ea.query_y, eb.query_y)
    splits = [set(src.task_names(s)) for s in ("train", "val", "test")]
    assert sum(len(s) for s in splits) == 5 and len(set.union(*splits)) == 5
    assert all(len(s) >= 1 for s in splits)
    other = TabularTaskSource(_frame(), "y", "task", seed=4)
    assert any(src.task_names(s) != other.task_names(s) for s in ("train", "val", "test"))


def test_auto_task_type_and_buffers() -> None:
    df = _frame(label=True)
    assert TabularTaskSource(df.drop(columns="label"), "y", "task").task_type == "regression"
    by_text = TabularTaskSource(df.drop(columns="y"), "label", "task")
    assert by_text.task_type == "classification" and by_text.class_names == [
        "no",
        "yes",
    ]
    df2 = df.drop(columns="label").assign(y=np.round(df["y"]).clip(-2, 2))
    assert TabularTaskSource(df2, "y", "task").task_type == "classification"
    assert TabularTaskSource(df2, "y", "task", task_type="regression").task_type == "regression"
    text = df.drop(columns="label").to_csv(index=False)
    from_buffer = TabularTaskSource(io.StringIO(text), "y", "task")
    from_bytes = TabularTaskSource(text.encode(), "y", "task")
    assert from_buffer.feature_names == from_bytes.feature_names == ["a", "b"]


def test_few_tasks() -> None:
    one = TabularTaskSource(_frame(n_tasks=1), "y", "task")
    assert one.task_names("train") == one.task_names("val") == one.task_names("test") == ["t0"]
    two = TabularTaskSource(_frame(n_tasks=2), "y", "task")
    assert len(two.task_names("train")) == 1
    assert two.task_names("val") == two.task_names("test") != two.task_names("train")


def test_errors(tmp_path: Path) -> None:
    df = _frame(label=True)
    with pytest.raises(TaskError, match="unknown target column 'nope'"):
        TabularTaskSource(df, "nope", "task")
    with pytest.raises(TaskError, match="unknown task column 'nope'"):
        TabularTaskSource(df, "y", "nope")
    with pytest.raises(TaskError, match="feature column 'label' is not numeric"):
        TabularTaskSource(df, "y", "task")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TaskError, match="empty"):
        TabularTaskSource(empty, "y", "task")
    header = tmp_path / "header.csv"
    header.write_text("task,a,y\n")
    with pytest.raises(TaskError, match="no data rows"):
        TabularTaskSource(header, "y", "task")
    with pytest.raises(TaskError, match="not found"):
        TabularTaskSource(tmp_path / "missing.csv", "y", "task")
    nan = df.drop(columns="label").copy()
    nan.loc[3, "a"] = np.nan
    nan.loc[4, "b"] = np.inf
    with pytest.raises(TaskError, match=r"NaN/inf.*'a': 1, 'b': 1"):
        TabularTaskSource(nan, "y", "task")
    one_class = df.drop(columns="y").assign(label="same")
    with pytest.raises(TaskError, match="only one class"):
        TabularTaskSource(one_class, "label", "task")
    src = TabularTaskSource(df.drop(columns="label"), "y", "task")
    task = src.sample_task("train", np.random.default_rng(0))
    with pytest.raises(TaskError, match=rf"task '{task.name}' has 30 rows"):
        task.sample_episode(20, 20, np.random.default_rng(0))
    with pytest.raises(TaskError, match="task_type"):
        TabularTaskSource(df, "y", "task", task_type="ordinal")
    with pytest.raises(TaskError, match="not numeric"):
        TabularTaskSource(df.drop(columns="y"), "label", "task", task_type="regression")
