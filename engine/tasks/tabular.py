"""Tasks from a CSV (or DataFrame): one task per value of a task column.

Features are ``feature_columns`` (default: every column except the target and task columns);
they must be numeric.
Features are standardised with the mean/std of the *train* tasks' rows (all rows if the
train split is empty), so 0.0 is the train mean and the natural reference value
(``background_value``) for feature interventions.

Classification: one global class list (sorted unique target values, as strings); episode
labels are global class indices so one output head serves every task. An episode uses
the classes present in that task, K shots and Q queries per class.
Regression: targets are standardised with the train rows (``target_mean``/``target_std``
keep the scale for display); an episode is K support rows and Q query rows.

Task split: tasks (not rows) are shuffled with ``seed`` and divided by ``split_fractions``;
each split with a nonzero fraction gets at least one task. With fewer than 3 tasks there
cannot be three disjoint splits: with 1 task every split is that task (nothing is held
out), with 2 tasks train gets one and val and test share the other.

Input checks (``read_csv``): the CSV must be UTF-8 text (a byte-order mark is fine) with a
header row of distinct names and rows no longer than the header; at most MAX_CSV_BYTES
bytes, MAX_ROWS data rows, MAX_COLUMNS columns and MAX_CLASSES classes. Cells are plain
data (a cell such as ``=cmd|...`` is just text). Every problem raises TaskError naming it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .base import (
    SPLITS,
    Episode,
    Task,
    TaskError,
    TaskSource,
    check_fractions,
    check_shots,
    check_split,
    split_counts,
)

CsvInput = str | os.PathLike | bytes | io.IOBase | pd.DataFrame
MAX_CLASSES_AUTO = 10  # auto task_type: at most this many distinct values -> classification
# Limits on what a CSV may hold (the app's uploads are also capped by .streamlit/config.toml).
MAX_CSV_BYTES = 64 * 1024 * 1024  # size of the CSV text
MAX_ROWS = 200_000  # data rows
MAX_COLUMNS = 1_000  # columns, including the target and task columns
MAX_CLASSES = 100  # distinct target values of a classification target (one output each)


def _csv_text(data: Any, name: str) -> str:
    """The CSV's text: UTF-8 (a byte-order mark is fine), at most MAX_CSV_BYTES."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data).expanduser()
        if not p.exists():
            raise TaskError(f"CSV file not found: {str(p)!r}")
        if p.is_dir():
            raise TaskError(f"expected a CSV file, got a folder: {str(p)!r}")
        if p.stat().st_size > MAX_CSV_BYTES:
            raise TaskError(f"{name} is {p.stat().st_size} bytes, more than MAX_CSV_BYTES={MAX_CSV_BYTES}")
        raw: Any = p.read_bytes()
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif hasattr(data, "read"):
        raw = data.read(MAX_CSV_BYTES + 1)
    else:
        raise TaskError(f"expected a CSV path, a file object or a DataFrame, got {type(data).__name__}")
    if len(raw) > MAX_CSV_BYTES:
        raise TaskError(f"{name} is larger than MAX_CSV_BYTES={MAX_CSV_BYTES} bytes")
    if isinstance(raw, str):  # a text buffer
        text = raw
    elif isinstance(raw, (bytes, bytearray)):
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise TaskError(f"{name} is UTF-16 text; save it as UTF-8 (CSV UTF-8)")
        if b"\x00" in raw:
            raise TaskError(f"{name} contains NUL bytes: it is a binary file or UTF-16 text, not a UTF-8 CSV")
        try:
            text = bytes(raw).decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is fine
        except UnicodeDecodeError as exc:
            raise TaskError(
                f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start}); save it as UTF-8"
            ) from None
    else:
        raise TaskError(f"reading {name} gave {type(raw).__name__}, not text or bytes")
    if not text.strip():
        raise TaskError(f"{name} is empty (no header row)")
    if "\x00" in text:
        raise TaskError(f"{name} contains NUL characters: it looks like a binary file, not CSV text")
    return text


def _header(text: str, name: str) -> list[str]:
    """The first non-blank record of the CSV (the column names as written)."""
    try:
        for record in csv.reader(io.StringIO(text)):
            if record:
                return record
    except csv.Error as exc:
        raise TaskError(f"{name} could not be parsed: {exc}") from None
    raise TaskError(f"{name} is empty (no header row)")


def read_csv(data: Any, name: str = "the CSV") -> pd.DataFrame:
    """Parse a CSV (path, bytes, text or binary file object) into a DataFrame.

    Every problem is a TaskError naming it: missing file, empty, not UTF-8, binary,
    unparsable, ragged rows, duplicate column names, more than MAX_CSV_BYTES bytes,
    MAX_COLUMNS columns or MAX_ROWS rows. Cells are data: nothing in them is evaluated.
    """
    text = _csv_text(data, name)
    header = _header(text, name)
    if len(header) > MAX_COLUMNS:
        raise TaskError(f"{name} has {len(header)} columns, more than MAX_COLUMNS={MAX_COLUMNS}")
    named = [h for h in header if h != ""]
    dups = sorted({h for h in named if named.count(h) > 1})
    if dups:
        raise TaskError(f"{name} has duplicate column names {dups}; every column needs its own name")
    try:
        df = pd.read_csv(io.StringIO(text), nrows=MAX_ROWS + 1)
    except pd.errors.EmptyDataError:
        raise TaskError(f"{name} is empty (no header row)") from None
    except (ValueError, csv.Error, OverflowError) as exc:  # ParserError is a ValueError
        raise TaskError(f"{name} could not be parsed: {str(exc).strip()}") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the first column as the index when every row has one field too many.
        raise TaskError(f"{name} has rows with more fields than the header has column names")
    _check_size(df, name)
    return df


def _check_size(df: pd.DataFrame, name: str) -> None:
    if df.shape[1] > MAX_COLUMNS:
        raise TaskError(f"{name} has {df.shape[1]} columns, more than MAX_COLUMNS={MAX_COLUMNS}")
    if len(df) > MAX_ROWS:
        raise TaskError(f"{name} has more than MAX_ROWS={MAX_ROWS} data rows")


def _read(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        _check_size(data, "the table")
        return data.copy()
    if isinstance(data, (str, os.PathLike)):
        p = Path(data).expanduser()
        if p.is_file() and p.stat().st_size == 0:
            raise TaskError(f"the CSV file is empty: {str(p)!r}")
    return read_csv(data)


def _looks_headerless(cols: list[str]) -> bool:
    """True when every column name reads as a number: the first row is probably data."""
    try:
        [float(c) for c in cols]
    except ValueError:
        return False
    return True


def _select_features(df: pd.DataFrame, features: Sequence[str], target: str, task: str) -> pd.DataFrame:
    """The table cut to the chosen features plus the target and task columns."""
    feats = [c for c in features if c not in (target, task)]
    if not feats:
        raise TaskError("choose at least one feature column besides the target and task columns")
    missing = [c for c in (*feats, target, task) if c not in df.columns]
    if missing:
        raise TaskError(f"unknown columns {missing}; columns are {list(df.columns)}")
    return df[[*feats, target, task]].copy()


def _check_columns(df: pd.DataFrame, target_column: str, task_column: str) -> None:
    """Distinct names, some rows, and target and task columns that exist and differ."""
    cols = list(df.columns)
    dups = sorted({c for c in cols if cols.count(c) > 1})
    if dups:
        raise TaskError(f"duplicate column names {dups}; every column needs its own name")
    if len(df) == 0:
        raise TaskError("the CSV has a header but no data rows")
    for what, col in (("target", target_column), ("task", task_column)):
        if col not in cols:
            hint = " (the first row holds numbers: the CSV needs a header row of names)"
            raise TaskError(
                f"unknown {what} column {col!r}; columns are {cols}" + (hint if _looks_headerless(cols) else "")
            )
    if target_column == task_column:
        raise TaskError("the target column and the task column must differ")


def _numeric_features(df: pd.DataFrame, target_column: str, task_column: str) -> list[str]:
    """The feature columns (all but target and task); booleans become 0/1 in ``df``, other
    non-numeric columns are refused."""
    feats = [c for c in df.columns if c not in (target_column, task_column)]
    if not feats:
        raise TaskError("no feature columns: the CSV needs columns besides target and task")
    for c in feats:
        if pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype(float)
        elif not pd.api.types.is_numeric_dtype(df[c]):
            raise TaskError(
                f"feature column {c!r} is not numeric (dtype {df[c].dtype}); drop it or encode it as numbers"
            )
    return feats


def _check_finite(df: pd.DataFrame, columns: list[str]) -> None:
    """No missing or non-finite value in any used column."""
    bad = {}
    for c in columns:
        col = df[c]
        n_bad = int(col.isna().sum())
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            n_bad += int(np.isinf(col.to_numpy(dtype=float, na_value=np.nan)).sum())
        if n_bad:
            bad[c] = n_bad
    if bad:
        raise TaskError(f"missing or non-finite values (NaN/inf, empty cells, short rows) in columns: {bad}")


def _resolve_task_type(target: pd.Series, target_column: str, task_type: str) -> str:
    """``task_type`` with "auto" decided: a float target with many values is regression."""
    if task_type == "auto":
        is_float = pd.api.types.is_float_dtype(target)
        task_type = "classification" if (not is_float or int(target.nunique()) <= MAX_CLASSES_AUTO) else "regression"
    if task_type == "regression" and not (
        pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    ):
        raise TaskError(
            f"target column {target_column!r} is not numeric (dtype {target.dtype}); regression needs a numeric target"
        )
    return task_type


def _split_tasks(task_ids: list[Any], fractions: tuple[float, float, float], seed: int) -> dict[str, list[Any]]:
    """Task ids per split (see the module docstring for fewer than 3 tasks), each in ``task_ids`` order."""
    rng = np.random.default_rng(seed)
    perm = [task_ids[i] for i in rng.permutation(len(task_ids))]
    n = len(perm)
    if n == 1:
        split_ids = {s: list(perm) for s in SPLITS}
    elif n == 2:
        split_ids = {"train": [perm[0]], "val": [perm[1]], "test": [perm[1]]}
    else:
        n_tr, n_va, _ = split_counts(n, fractions)
        split_ids = {"train": perm[:n_tr], "val": perm[n_tr : n_tr + n_va], "test": perm[n_tr + n_va :]}
    return {s: sorted(v, key=lambda t: task_ids.index(t)) for s, v in split_ids.items()}


class TabularTask(Task):
    """All rows of one task id."""

    def __init__(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        task_type: str,
        output_dim: int,
        class_names: list[str] | None,
        task_id: Any,
    ) -> None:
        super().__init__(
            name=name,
            task_type=task_type,  # type: ignore[arg-type]
            output_dim=output_dim,
            group=None,
            truth=None,
            class_names=class_names,
        )
        self.task_id = task_id
        self._x = x
        self._y = y

    def __len__(self) -> int:
        return len(self._x)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """All rows: x float32 (n, F) standardised; y int64 (n,) class indices or
        float32 (n, 1) standardised targets."""
        return self._x.copy(), self._y.copy()

    def classes_present(self) -> list[int]:
        if self.task_type != "classification":
            return []
        return [int(c) for c in np.unique(self._y)]

    def sample_episode(self, support_shots: int, query_shots: int, rng: np.random.Generator) -> Episode:
        check_shots(support_shots, query_shots)
        need = support_shots + query_shots
        if self.task_type == "regression":
            if len(self._x) < need:
                raise TaskError(
                    f"task {self.name!r} has {len(self._x)} rows, fewer than "
                    f"support_shots + query_shots = {support_shots} + {query_shots}"
                )
            pick = rng.choice(len(self._x), size=need, replace=False)
            x, y = self._x[pick], self._y[pick]
            return Episode(
                torch.from_numpy(x[:support_shots].copy()),
                torch.from_numpy(y[:support_shots].copy()),
                torch.from_numpy(x[support_shots:].copy()),
                torch.from_numpy(y[support_shots:].copy()),
                "regression",
                None,
                self.name,
            )
        present = self.classes_present()
        counts = {c: int((self._y == c).sum()) for c in present}
        short = {self.class_names[c]: n for c, n in counts.items() if n < need}
        if short:
            raise TaskError(
                f"task {self.name!r} has too few rows for {support_shots} shots + "
                f"{query_shots} queries per class: rows per class {short} "
                f"(need {need} each)"
            )
        s_idx, q_idx = [], []
        for c in present:
            rows = np.flatnonzero(self._y == c)
            pick = rows[rng.choice(len(rows), size=need, replace=False)]
            s_idx.append(pick[:support_shots])
            q_idx.append(pick[support_shots:])
        s = np.concatenate(s_idx)[rng.permutation(len(present) * support_shots)]
        q = np.concatenate(q_idx)[rng.permutation(len(present) * query_shots)]
        return Episode(
            torch.from_numpy(self._x[s]),
            torch.from_numpy(self._y[s]),
            torch.from_numpy(self._x[q]),
            torch.from_numpy(self._y[q]),
            "classification",
            self.output_dim,
            self.name,
        )


class TabularTaskSource(TaskSource):
    """Tasks from a table with a target column and a task-id column."""

    name = "tabular"

    def __init__(
        self,
        data: CsvInput,
        target_column: str,
        task_column: str,
        task_type: str = "auto",
        split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        seed: int = 0,
        feature_columns: Sequence[str] | None = None,
    ) -> None:
        """``feature_columns``: the features to use (default: every column but target and task)."""
        if task_type not in ("auto", "classification", "regression"):
            raise TaskError(f"task_type must be 'auto', 'classification' or 'regression', got {task_type!r}")
        self.split_fractions = check_fractions(split_fractions)
        self.seed = int(seed)
        df = _read(data)
        df.columns = [str(c) for c in df.columns]
        if feature_columns is not None:
            df = _select_features(df, feature_columns, target_column, task_column)
        _check_columns(df, target_column, task_column)
        self.target_column = target_column
        self.task_column = task_column
        self.feature_names = _numeric_features(df, target_column, task_column)
        self.input_shape = (len(self.feature_names),)
        _check_finite(df, [*self.feature_names, target_column, task_column])
        target = df[target_column]
        self.task_type = _resolve_task_type(target, target_column, task_type)  # type: ignore[assignment]

        self.task_ids = sorted(df[task_column].unique().tolist(), key=lambda v: (str(type(v)), v))
        self.split_task_ids = _split_tasks(self.task_ids, self.split_fractions, self.seed)
        train_mask = df[task_column].isin(self.split_task_ids["train"]).to_numpy()
        if not train_mask.any():
            train_mask = np.ones(len(df), dtype=bool)
        x_std = self._standardise_features(df[self.feature_names].to_numpy(dtype=np.float64), train_mask)
        self.target_mean: float | None = None
        self.target_std: float | None = None
        self.class_names: list[str] | None = None
        if self.task_type == "classification":
            y_all = self._encode_classes(target)
        else:
            y_all = self._standardise_target(target, train_mask)
        self.background_value = 0.0
        self._tasks = self._group_tasks(df, x_std, y_all)

    # ------------------------------------------------------------ build phases
    def _standardise_features(self, x_all: np.ndarray, train_mask: np.ndarray) -> np.ndarray:
        """Features scaled by the train rows' mean and std; sets ``feature_mean``/``feature_std``."""
        feats = self.feature_names
        with np.errstate(over="ignore", invalid="ignore"):
            mean = x_all[train_mask].mean(axis=0)
            std = x_all[train_mask].std(axis=0)
        huge = [c for c, m, s in zip(feats, mean, std, strict=True) if not (np.isfinite(m) and np.isfinite(s))]
        if huge:
            raise TaskError(f"values too large to standardise (mean or spread overflows) in columns {huge}")
        std[std < 1e-12] = 1.0  # constant feature: keep it at 0 rather than divide by 0
        self.feature_mean = mean
        self.feature_std = std
        with np.errstate(over="ignore", invalid="ignore"):
            x_std = ((x_all - mean) / std).astype(np.float32)
        huge = [c for c, ok in zip(feats, np.isfinite(x_std).all(axis=0), strict=True) if not ok]
        if huge:
            raise TaskError(f"values too large for float32 once standardised in columns {huge}")
        return x_std

    def _encode_classes(self, target: pd.Series) -> np.ndarray:
        """Global class indices (int64) of the target; sets ``class_names`` and ``output_dim``."""
        uniq = target.unique().tolist()
        try:
            uniq = sorted(uniq)
        except TypeError:  # mixed types: order by text
            uniq = sorted(uniq, key=str)
        if len(uniq) > MAX_CLASSES:
            raise TaskError(
                f"target column {self.target_column!r} has {len(uniq)} classes, more than MAX_CLASSES={MAX_CLASSES}; "
                "choose another target or task_type='regression' for a numeric target"
            )
        if len(uniq) < 2:
            raise TaskError(
                f"target column {self.target_column!r} has only one class ({uniq[0]!r}); "
                "classification needs at least two"
            )
        self.class_names = [str(v) for v in uniq]
        self.output_dim = len(uniq)
        index = {v: i for i, v in enumerate(uniq)}
        return target.map(index).to_numpy(dtype=np.int64)

    def _standardise_target(self, target: pd.Series, train_mask: np.ndarray) -> np.ndarray:
        """Regression targets (n, 1) float32 scaled by the train rows; sets ``target_mean``/``target_std``."""
        y = target.to_numpy(dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            self.target_mean = float(y[train_mask].mean())
            sd = float(y[train_mask].std())
        if not (np.isfinite(self.target_mean) and np.isfinite(sd)):
            raise TaskError(
                f"values too large to standardise (mean or spread overflows) in target column {self.target_column!r}"
            )
        self.target_std = sd if sd > 1e-12 else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            y_all = ((y - self.target_mean) / self.target_std).astype(np.float32)[:, None]
        if not np.isfinite(y_all).all():
            raise TaskError(f"values too large for float32 once standardised in target column {self.target_column!r}")
        self.output_dim = 1
        return y_all

    def _group_tasks(self, df: pd.DataFrame, x_std: np.ndarray, y_all: np.ndarray) -> dict[Any, TabularTask]:
        """One TabularTask per task id, its rows in file order."""
        tasks: dict[Any, TabularTask] = {}
        groups = df.groupby(self.task_column, sort=False).indices
        for t in self.task_ids:
            ix = np.sort(groups[t])
            tasks[t] = TabularTask(
                name=str(t),
                x=x_std[ix],
                y=y_all[ix],
                task_type=self.task_type,
                output_dim=self.output_dim,
                class_names=self.class_names,
                task_id=t,
            )
        return tasks

    # --------------------------------------------------------------- queries
    def task_names(self, split: str) -> list[str]:
        check_split(split)
        return [str(t) for t in self.split_task_ids[split]]

    def has_tasks(self, split: str) -> bool:
        return bool(self.task_names(split))

    def all_tasks(self, split: str | None = None) -> list[TabularTask]:
        """Every task (of one split, or all), in a fixed order."""
        ids = self.task_ids if split is None else self.split_task_ids[split]
        if split is not None:
            check_split(split)
        return [self._tasks[t] for t in ids]

    def get_task(self, name: str) -> TabularTask:
        for t, task in self._tasks.items():
            if str(t) == str(name):
                return task
        raise TaskError(f"unknown task {name!r}; tasks are {[str(t) for t in self.task_ids]}")

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Raw feature rows -> the model's standardised inputs."""
        return ((np.asarray(x, dtype=np.float64) - self.feature_mean) / self.feature_std).astype(np.float32)

    def unstandardise_target(self, y: np.ndarray) -> np.ndarray:
        """Model-scale regression outputs -> target units (identity for classification)."""
        if self.target_mean is None:
            return np.asarray(y)
        return np.asarray(y) * self.target_std + self.target_mean

    # -------------------------------------------------------------- sampling
    def sample_task(self, split: str, rng: np.random.Generator) -> TabularTask:
        check_split(split)
        ids = self.split_task_ids[split]
        if not ids:
            raise TaskError(
                f"split {split!r} has no tasks (split_fractions={self.split_fractions}), and this step needs "
                f"them: give split fractions with a nonzero share for {split!r}"
            )
        return self._tasks[ids[int(rng.integers(len(ids)))]]

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            target_column=self.target_column,
            task_column=self.task_column,
            feature_names=list(self.feature_names),
            class_names=self.class_names,
            tasks={s: self.task_names(s) for s in SPLITS},
            target_mean=self.target_mean,
            target_std=self.target_std,
            seed=self.seed,
        )
        return info


def make_example_csv(path: str | os.PathLike | None = None, seed: int = 0) -> pd.DataFrame:
    """Generate the example plant data set (``assets/example_tasks.csv``).

    Six tasks ``plant_A``..``plant_F``, 40 rows each. Causal story per plant::

        temperature ~ N(plant mean, 5)          pressure ~ N(plant mean, 0.1)
        humidity    = 80 - 0.8 * temperature + noise   (caused by temperature,
                                                        not a cause of yield)
        yield       = a_plant * z(temperature) + b_plant * z(pressure) + c_plant + noise
        vibration   = 0.5 * z(pressure) + noise
        failure     = 1 if z(vibration) + 0.7 * z(humidity) + noise > plant threshold

    so yield has exactly two parents (temperature, pressure) with per-plant shifted
    coefficients, humidity is a correlated non-parent, and failure (0/1) is a
    classification target caused by vibration and humidity. Written to ``path`` if given.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k, plant in enumerate("ABCDEF"):
        n = 40
        t_mean = 20.0 + 3.0 * k + rng.normal(0, 1)
        p_mean = 1.0 + 0.05 * rng.normal()
        temperature = rng.normal(t_mean, 5.0, n)
        pressure = rng.normal(p_mean, 0.1, n)
        humidity = 80.0 - 0.8 * temperature + rng.normal(0, 2.0, n)
        zt = (temperature - 27.5) / 7.0
        zp = (pressure - 1.0) / 0.1
        a = 2.0 + 0.6 * rng.normal()  # per-plant shifted mechanism coefficients
        b = 1.0 + 0.6 * rng.normal()
        c = 10.0 + rng.normal()
        yld = a * zt + b * zp + c + rng.normal(0, 0.3, n)
        vibration = 0.5 * zp + rng.normal(0, 0.5, n)
        score = vibration / 0.7 + 0.7 * (humidity - 58.0) / 6.0 + rng.normal(0, 0.3, n)
        failure = (score > np.median(score) + 0.1 * rng.normal()).astype(int)
        for i in range(n):
            rows.append(
                {
                    "plant": f"plant_{plant}",
                    "temperature": round(float(temperature[i]), 2),
                    "pressure": round(float(pressure[i]), 3),
                    "humidity": round(float(humidity[i]), 2),
                    "vibration": round(float(vibration[i]), 3),
                    "yield": round(float(yld[i]), 3),
                    "failure": int(failure[i]),
                }
            )
    df = pd.DataFrame(rows)
    if path is not None:
        df.to_csv(path, index=False)
    return df
