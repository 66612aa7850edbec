"""Plain-Python glue between the pages and the engine (no Streamlit here).

Everything a page needs beyond showing widgets lives here: config field specs and presets,
task previews, building episodes from user input, calling the engine for adaptation and
interventions, and the work functions that run in a session's worker thread. The numbers
shown to users come from engine calls; this module only reshapes them (and takes the
differences the pages display).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine import (
    MetaLearningAlgorithm,
    OneShotMetaLearningConfig,
    OneShotMetaLearningEngine,
)
from engine.config import VIEW_KINDS
from engine.mechanisms import RECORD_FIELDS
from engine.tasks import (
    Episode,
    ImageTaskSource,
    SCMTaskSource,
    SinusoidTaskSource,
    TabularTaskSource,
    Task,
    TaskError,
    TaskSource,
)
from engine.tasks.tabular import read_csv

from .worker import Worker

EMBEDDING_ALGORITHMS = (MetaLearningAlgorithm.PROTOTYPICAL_CAUSAL.name, MetaLearningAlgorithm.RELATION_CAUSAL.name)

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: Any) -> str:
    """Text from users (file, column, class and task names; messages that quote them) made
    inert for Streamlit's markdown: every markdown, HTML and LaTeX special character is escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
SECTIONS: dict[str, list[str]] = {
    "Schedule": ["num_meta_iterations", "meta_batch_size", "outer_lr", "eval_interval", "val_episodes", "grad_clip"],
    "Inner loop and adaptation": [
        "inner_lr",
        "num_inner_steps",
        "adaptation_steps",
        "first_order",
        "test_time_shifts",
        "test_time_views",
        "transductive_steps",
    ],
    "Episodes": ["support_shots", "query_shots", "n_way"],
    "Causal": ["causal_weight", "enable_causal_priors", "mechanism_threshold", "save_mechanisms"],
    "Model and system": ["num_mechanisms", "hidden_dim", "encoder", "conv_channels", "device", "seed"],
}
CHOICES: dict[str, list[str]] = {
    "algorithm": [a.name for a in MetaLearningAlgorithm],
    "device": ["auto", "cpu", "cuda"],
    "encoder": ["auto", "mlp", "conv4"],
    "test_time_views": list(VIEW_KINDS),
}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How to show one config field: kind is bool, int, float or choice."""

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    options: tuple[str, ...] = ()

    @property
    def step(self) -> float:
        if self.kind == "int":
            return 1
        if self.name.endswith("_lr"):
            return 0.001
        return 0.05 if (self.high or 0) <= 1 else 0.1

    @property
    def format(self) -> str:
        if self.kind == "int":
            return "%d"
        return "%.4f" if self.name.endswith("_lr") else "%.3f"


def config_specs() -> dict[str, FieldSpec]:
    """One spec per field of OneShotMetaLearningConfig, with its help text and range."""
    helps = OneShotMetaLearningConfig.field_help()
    defaults = OneShotMetaLearningConfig().to_dict()
    specs: dict[str, FieldSpec] = {}
    for f in dataclasses.fields(OneShotMetaLearningConfig):
        name = f.name
        rng = OneShotMetaLearningConfig.field_range(name)
        help_text = helps.get(name, "")
        if rng is not None:
            help_text = f"{help_text} Range: {rng[0]:g} to {rng[1]:g}.".strip()
        if name in CHOICES:
            specs[name] = FieldSpec(name, "choice", defaults[name], help_text, options=tuple(CHOICES[name]))
        elif f.type == "bool" or isinstance(defaults[name], bool):
            specs[name] = FieldSpec(name, "bool", defaults[name], help_text)
        elif f.type == "int" or isinstance(defaults[name], int):
            low, high = rng if rng is not None else (None, None)
            specs[name] = FieldSpec(name, "int", defaults[name], help_text, low, high)
        elif f.type == "float" or isinstance(defaults[name], float):
            low, high = rng if rng is not None else (None, None)
            specs[name] = FieldSpec(name, "float", defaults[name], help_text, low, high)
        else:
            specs[name] = FieldSpec(name, "text", defaults[name], help_text)
    return specs


def sections() -> dict[str, list[str]]:
    """SECTIONS plus an "Other" section for any config field added later."""
    out = {k: list(v) for k, v in SECTIONS.items()}
    listed = {n for v in SECTIONS.values() for n in v} | {"algorithm"}
    other = [n for n in config_specs() if n not in listed]
    if other:
        out["Other"] = other
    return out


def default_values() -> dict[str, Any]:
    return OneShotMetaLearningConfig().to_dict()


PRESETS: dict[str, dict[str, Any]] = {
    # ~150 iterations/s on an idle 2-core CPU; a few hundred iterations give a visible fit.
    "sinusoid": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.01,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 5,
        "query_shots": 10,
        "meta_batch_size": 10,
        # A test that needs the demo to train for a while (two sessions at once) sets this.
        "num_meta_iterations": int(os.environ.get("CAUSAL_EXPLORER_DEMO_ITERATIONS", "400")),
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 20,
    },
    # 5-way 1-shot Omniglot: ~85 % validation accuracy after 60 iterations (~10 s).
    "images": {
        "algorithm": "PROTOTYPICAL_CAUSAL",
        "hidden_dim": 64,
        "conv_channels": 32,
        "meta_batch_size": 4,
        "outer_lr": 0.003,
        "support_shots": 1,
        "query_shots": 5,
        "num_meta_iterations": 60,
        "eval_interval": 10,
        "val_episodes": 10,
    },
    "scm": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.05,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 5,
        "query_shots": 15,
        "meta_batch_size": 10,
        "num_meta_iterations": 300,
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 20,
    },
    "tabular": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.05,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 3,
        "query_shots": 8,
        "meta_batch_size": 4,
        "num_meta_iterations": 300,
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 10,
    },
}


def preset_values(kind: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full config values: defaults (or ``base``), overridden by the preset of a source kind."""
    values = dict(base or default_values())
    values.update(PRESETS.get(kind, {}))
    return values


def build_config(values: dict[str, Any], source: TaskSource | None = None) -> OneShotMetaLearningConfig:
    """Validated config from widget values (raises ConfigError naming the field).

    For an image source the config's n_way is the source's (set on the Tasks page)."""
    known = set(config_specs())
    vals = {k: v for k, v in values.items() if k in known}
    if isinstance(source, ImageTaskSource):
        vals["n_way"] = source.n_way
    return OneShotMetaLearningConfig.from_dict(vals)


def plain_baseline(config: OneShotMetaLearningConfig) -> OneShotMetaLearningConfig:
    """The same learner without the causal parts: causal_weight 0 and no causal priors."""
    return config.replace(causal_weight=0.0, enable_causal_priors=False)


def check_algorithm_fits(config: OneShotMetaLearningConfig, source: TaskSource) -> str | None:
    """A message when the learner cannot run on the source (embedding learners need classes)."""
    if config.algorithm.name in EMBEDDING_ALGORITHMS and source.task_type != "classification":
        return (
            f"{config.algorithm.name} is a classification method (it compares queries with class "
            f"prototypes or relations); the task source '{source.name}' is regression. "
            "Choose MAML_CAUSAL or GRADIENT_CAUSAL, or a classification source."
        )
    return None


# ---------------------------------------------------------------------------------------------
# task sources
# ---------------------------------------------------------------------------------------------
def source_kind(source: TaskSource | None) -> str:
    if isinstance(source, SinusoidTaskSource):
        return "sinusoid"
    if isinstance(source, SCMTaskSource):
        return "scm"
    if isinstance(source, ImageTaskSource):
        return "images"
    if isinstance(source, TabularTaskSource):
        return "tabular"
    return "other" if source is not None else "none"


def source_label(source: TaskSource | None) -> str:
    if source is None:
        return "none"
    kind = source_kind(source)
    if kind == "images":
        path = str(getattr(source, "path", ""))
        name = path.rsplit("/", 1)[-1] if path else "images"
        return f"images: {name} ({source.n_way}-way)"
    if kind == "tabular":
        return f"CSV: target {source.target_column!r}, tasks by {source.task_column!r}"
    if kind == "scm":
        return f"scm: {source.num_variables} variables, {source.task_type}"
    return kind


def engine_fit_problem(eng: OneShotMetaLearningEngine | None, source: TaskSource | None) -> str | None:
    """Why the engine's model cannot serve this task source, or None if it can."""
    if source is None:
        return "No task source is chosen: pick one on the Tasks page."
    if eng is None or not eng.is_initialized or eng.model is None:
        return "The engine has no model yet: meta-train it on the Meta-train page or load a checkpoint there."
    if tuple(eng.model.input_shape) != tuple(source.input_shape):
        return (
            f"The engine's model takes inputs of shape {tuple(eng.model.input_shape)}, but the task source "
            f"'{source.name}' gives {tuple(source.input_shape)}: meta-train on this source or load a matching checkpoint."
        )
    if eng.task_type != source.task_type:
        return (
            f"The engine's model does {eng.task_type}, but the task source '{source.name}' is "
            f"{source.task_type}: meta-train on this source or load a matching checkpoint."
        )
    if (
        source.task_type == "classification"
        and eng.config.algorithm.name not in EMBEDDING_ALGORITHMS
        and getattr(eng, "output_dim", source.output_dim) < source.output_dim
    ):
        return (
            f"The engine's model has {eng.output_dim} outputs but the tasks have {source.output_dim} classes: "
            "meta-train on this source or load a matching checkpoint."
        )
    return None


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
    if features is not None:
        feats = [c for c in features if c not in (target, task)]
        if not feats:
            raise TaskError("choose at least one feature column besides the target and task columns")
        missing = [c for c in (*feats, target, task) if c not in df.columns]
        if missing:
            raise TaskError(f"unknown columns {missing}; columns are {list(df.columns)}")
        df = df[[*feats, target, task]]
    return TabularTaskSource(df, target, task, task_type=task_type)


def sinusoid_preview(source: SinusoidTaskSource, n: int = 4, shots: int = 5, seed: int = 0):
    """(curves, points): n task curves and one support set each, for a preview plot."""
    grid = np.linspace(source.x_range[0], source.x_range[1], 200)
    rng = np.random.default_rng(seed)
    curves, points = [], []
    for _ in range(n):
        task = source.sample_task("train", rng)
        ep = task.sample_episode(shots, 1, rng)
        curves.append((f"A={task.amplitude:.2f}, phase={task.phase:.2f}", grid.tolist(), task.function(grid).tolist()))
        points.append((ep.support_x.numpy().ravel().tolist(), ep.support_y.numpy().ravel().tolist()))
    return curves, points


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


def image_episode(source: ImageTaskSource, shots: int = 1, queries: int = 2, split: str = "test", seed: int = 0):
    """(task, episode) of a held-out image task."""
    rng = np.random.default_rng(seed)
    task = source.sample_task(split, rng)
    return task, task.sample_episode(shots, queries, rng)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def history_from_records(records: Sequence[dict[str, Any]], run: str | None = None) -> dict[str, Any]:
    """A TrainingHistory-like dict from the worker's callback records (of one run)."""
    h: dict[str, Any] = {
        "metric_name": None,
        "iteration": [],
        "train_loss": [],
        "train_metric": [],
        "val_iteration": [],
        "val_loss": [],
        "val_metric": [],
    }
    for r in records:
        if run is not None and r.get("run") != run:
            continue
        if "iteration" not in r:
            continue
        h["metric_name"] = r.get("metric_name", h["metric_name"])
        h["iteration"].append(r["iteration"])
        h["train_loss"].append(r.get("train_loss"))
        h["train_metric"].append(r.get("train_metric"))
        if r.get("val_loss") is not None:
            h["val_iteration"].append(r["iteration"])
            h["val_loss"].append(r["val_loss"])
            h["val_metric"].append(r.get("val_metric"))
    return h


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def progress_of(record: dict[str, Any] | None) -> tuple[float, str]:
    """(fraction in [0, 1], one line of text) for a progress bar."""
    if not record:
        return 0.0, "starting…"
    if "done" in record and "total" in record and record.get("total"):
        frac = float(record["done"]) / float(record["total"])
    else:
        frac = float(record.get("fraction", 0.0) or 0.0)
    frac = min(1.0, max(0.0, frac))
    parts = []
    if "done" in record and "total" in record:
        parts.append(f"{record['done']} / {record['total']}")
    else:
        parts.append(f"{frac:.0%}")
    if record.get("run"):
        parts.append(str(record["run"]))
    if record.get("stage"):
        parts.append(str(record["stage"]))
    if "elapsed" in record:
        parts.append(f"{format_seconds(record['elapsed'])} elapsed")
    if "eta" in record:
        parts.append(f"ETA {format_seconds(record['eta'])}")
    if record.get("message"):
        parts.append(str(record["message"]))
    return frac, " · ".join(parts)


def training_job(
    eng: OneShotMetaLearningEngine,
    source: TaskSource,
    run_name: str,
    baseline: tuple[OneShotMetaLearningEngine, str] | None = None,
) -> Callable[[Worker], dict[str, Any]]:
    """The work function of a training run: meta-train ``eng`` on ``source``, reporting every
    iteration; then, optionally, a second engine (the plain baseline) on the same source."""

    def job(worker: Worker) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def report_main(rec: dict[str, Any]) -> None:
            worker.report({**rec, "run": run_name})

        out[run_name] = eng.meta_train_sync(source, callback=report_main, stop=worker.should_stop)
        if baseline is not None and not worker.should_stop():
            beng, bname = baseline

            def report_base(rec: dict[str, Any]) -> None:
                worker.report({**rec, "run": bname})

            out[bname] = beng.meta_train_sync(source, callback=report_base, stop=worker.should_stop)
        return out

    return job


# ---------------------------------------------------------------------------------------------
# adaptation
# ---------------------------------------------------------------------------------------------
def _as_list(values: Any) -> list[float]:
    arr = np.asarray(values, dtype=float)
    return arr.reshape(arr.shape[0], -1)[:, 0].tolist() if arr.ndim else [float(arr)]


def make_episode(
    support_x: Any,
    support_y: Any,
    query_x: Any,
    query_y: Any,
    task_type: str,
    num_classes: int | None = None,
    name: str = "your task",
) -> Episode:
    """An Episode from arrays (classification labels are class indices)."""
    import torch

    def xt(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def yt(a: Any, n: int) -> torch.Tensor:
        if task_type == "classification":
            return torch.as_tensor(np.asarray(a, dtype=np.int64).reshape(-1))
        return torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(n, -1))

    sx, qx = xt(support_x), xt(query_x)
    return Episode(sx, yt(support_y, sx.shape[0]), qx, yt(query_y, qx.shape[0]), task_type, num_classes, name)


def sinusoid_grid(source: SinusoidTaskSource, n: int = 200) -> np.ndarray:
    return np.linspace(source.x_range[0], source.x_range[1], n).reshape(-1, 1)


def prior_curve(eng: OneShotMetaLearningEngine, task: Any, grid: np.ndarray) -> list[float]:
    """The meta-model's own curve on ``grid`` (adaptation with zero steps)."""
    truth = np.asarray(task.function(grid), dtype=np.float32).reshape(-1, 1)
    x0 = grid[:1].astype(np.float32)
    res = eng.one_shot_adapt_sync(task, support_data=(x0, truth[:1]), query_data=(grid, truth), steps=0)
    return _as_list(res["predictions"])


def adapt_sinusoid(
    eng: OneShotMetaLearningEngine,
    task: Any,
    points: Sequence[tuple[float, float]],
    grid: np.ndarray,
) -> dict[str, Any]:
    """Adapt to the given (x, y) points of a sinusoid task; query = the task's curve on ``grid``.

    Returns the curves before (meta-model, 0 steps) and after adaptation, and the engine's result.
    """
    sx = np.array([[p[0]] for p in points], dtype=np.float32)
    sy = np.array([[p[1]] for p in points], dtype=np.float32)
    truth = np.asarray(task.function(grid), dtype=np.float32).reshape(-1, 1)
    prior = eng.one_shot_adapt_sync(task, support_data=(sx, sy), query_data=(grid, truth), steps=0)
    result = eng.one_shot_adapt_sync(task, support_data=(sx, sy), query_data=(grid, truth))
    return {
        "x": grid.ravel().tolist(),
        "truth": truth.ravel().tolist(),
        "prior": _as_list(prior["predictions"]),
        "adapted": _as_list(result["predictions"]),
        "prior_quality": prior["adaptation_quality"],
        "support": (sx.ravel().tolist(), sy.ravel().tolist()),
        "result": result,
    }


def adapt_images(
    eng: OneShotMetaLearningEngine,
    support_x: np.ndarray,
    support_y: Sequence[int],
    query_x: np.ndarray | None,
    query_y: Sequence[int] | None,
    class_names: Sequence[str],
    name: str = "your images",
) -> dict[str, Any]:
    """Adapt from one image per class; predict the query images (labelled or not).

    Unlabelled queries: the quality is measured on the support set itself and the
    predictions come from ``predict_proba_sync`` on the query images.
    """
    n = len(class_names)
    labelled = query_x is not None and query_y is not None and len(query_y) == len(query_x) and len(query_x) > 0
    if labelled:
        ep = make_episode(support_x, support_y, query_x, query_y, "classification", n, name)
    else:
        ep = make_episode(support_x, support_y, support_x, support_y, "classification", n, name)
    result = eng.one_shot_adapt_sync(ep)
    out: dict[str, Any] = {"result": result, "labelled": labelled, "class_names": list(class_names)}
    if query_x is not None and len(query_x):
        probs = eng.predict_proba_sync(np.asarray(query_x, dtype=np.float32)).numpy()
        out["probabilities"] = probs.tolist()
        out["predicted"] = probs.argmax(-1).tolist()
    return out


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


def support_rows(source: TaskSource, episode: Episode) -> pd.DataFrame:
    """The support set of a vector episode as an editable table, in the CSV's own units."""
    x = episode.support_x.numpy().astype(np.float64)
    y = episode.support_y.numpy()
    names = list(source.feature_names or [f"x{i}" for i in range(x.shape[1])])
    if isinstance(source, TabularTaskSource):
        x = x * source.feature_std + source.feature_mean
    df = pd.DataFrame(x, columns=names)
    target = getattr(source, "target_column", None) or getattr(source, "target", None) or "target"
    if episode.task_type == "classification":
        class_names = getattr(source, "class_names", None) or [str(i) for i in range(int(y.max()) + 1)]
        df[target] = [class_names[int(v)] for v in y]
    else:
        yy = y.reshape(-1).astype(np.float64)
        if isinstance(source, TabularTaskSource):
            yy = source.unstandardise_target(yy)
        df[target] = yy
    return df


def rows_to_support(source: TaskSource, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Edited support rows (CSV units) -> model inputs and labels; raises TaskError."""
    names = list(source.feature_names or [])
    target = getattr(source, "target_column", None) or getattr(source, "target", None) or "target"
    missing = [c for c in (*names, target) if c not in rows.columns]
    if missing:
        raise TaskError(f"the support rows lack columns {missing}")
    rows = rows.dropna(how="all")
    if len(rows) == 0:
        raise TaskError("give at least one support row")
    try:
        x = rows[names].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"every feature must be a number ({exc})") from None
    if not np.isfinite(x).all():
        raise TaskError("every feature value must be a finite number (no empty cells)")
    if isinstance(source, TabularTaskSource):
        x = source.standardise(x)
    if source.task_type == "classification":
        class_names = [str(c) for c in (getattr(source, "class_names", None) or [])]
        labels = []
        for v in rows[target].tolist():
            key = str(v)
            if key not in class_names:
                # Numeric classes may come back as 1.0 from an editor.
                try:
                    key = str(int(float(v)))
                except (TypeError, ValueError):
                    pass
            if key not in class_names:
                raise TaskError(f"unknown class {v!r} in column {target!r}; classes are {class_names}")
            labels.append(class_names.index(key))
        return x.astype(np.float32), np.asarray(labels, dtype=np.int64)
    try:
        y = rows[target].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"the target {target!r} must be a number ({exc})") from None
    if not np.isfinite(y).all():
        raise TaskError(f"the target {target!r} must be a finite number")
    if isinstance(source, TabularTaskSource):
        y = (y - source.target_mean) / source.target_std
    return x.astype(np.float32), y.reshape(-1, 1).astype(np.float32)


def vector_task_choices(source: TaskSource, n: int = 8, seed: int = 0) -> dict[str, Task]:
    """Held-out tasks of a vector source by display name (test split; all tasks of a CSV)."""
    if isinstance(source, TabularTaskSource):
        tasks = source.all_tasks("test") or source.all_tasks()
        return {t.name: t for t in tasks}
    tasks = source.tasks("test", n, seed=seed)
    return {t.name: t for t in tasks}


def sample_vector_episode(task: Task, shots: int, queries: int, seed: int = 0) -> Episode:
    """An episode of a vector task; with too few rows, fewer queries (at least one)."""
    rng_seed = seed
    last: TaskError | None = None
    for q in sorted({queries, max(1, queries // 2), 5, 2, 1}, reverse=True):
        if q > queries:
            continue
        try:
            return task.sample_episode(shots, q, np.random.default_rng(rng_seed))
        except TaskError as exc:
            last = exc
    raise last or TaskError("could not draw an episode")


# ---------------------------------------------------------------------------------------------
# interventions
# ---------------------------------------------------------------------------------------------
def full_mask(k: int) -> list[float]:
    return [1.0] * int(k)


def metric_name_of(result: dict[str, Any]) -> str:
    q = result["adaptation_quality"]
    return "accuracy" if "accuracy" in q else "mse"


def intervention_effects(eng: OneShotMetaLearningEngine, episode: Episode) -> tuple[dict[str, Any], list[dict]]:
    """Effect of switching each mechanism k off alone: adapt and score the query set with
    do(c_k = 0), minus the same without intervention (DESIGN section 3: L(T | do(X)) - L(T)).

    Returns (the result without intervention, one row per mechanism). The engine is left
    adapted to the episode without intervention.
    """
    k = eng.model.num_mechanisms
    base = eng.one_shot_adapt_sync(episode)
    metric = metric_name_of(base)
    rows = []
    for m in range(k):
        mask = full_mask(k)
        mask[m] = 0.0
        r = eng.one_shot_adapt_sync(episode, causal_mask=mask)
        rows.append(
            {
                "mechanism": f"mechanism {m}",
                "effect": r["adaptation_quality"]["loss"] - base["adaptation_quality"]["loss"],
                "loss_off": r["adaptation_quality"]["loss"],
                "metric": metric,
                "metric_change": r["adaptation_quality"][metric] - base["adaptation_quality"][metric],
            }
        )
    eng.one_shot_adapt_sync(episode)  # leave the engine adapted without intervention
    return base, rows


def masked_outputs(eng: OneShotMetaLearningEngine, x: Any, mask: Sequence[float] | None) -> np.ndarray:
    """Predictions (regression values) or class probabilities of the adapted model under a mask."""
    x = np.asarray(x, dtype=np.float32)
    if eng.task_type == "classification":
        return eng.predict_proba_sync(x, causal_mask=None if mask is None else list(mask)).numpy()
    return eng.predict_sync(x, causal_mask=None if mask is None else list(mask)).numpy()


def accuracy(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    p = np.asarray(probabilities)
    if len(labels) == 0:
        return float("nan")
    return float((p.argmax(-1) == np.asarray(labels)).mean())


def mse(predictions: np.ndarray, targets: Any) -> float:
    p = np.asarray(predictions, dtype=float).reshape(-1)
    t = np.asarray(targets, dtype=float).reshape(-1)
    return float(np.mean((p - t) ** 2)) if len(t) else float("nan")


# ---------------------------------------------------------------------------------------------
# optional engine parts (mechanisms, hierarchical adaptation, causal direction)
# ---------------------------------------------------------------------------------------------
def call_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with only the keyword arguments its signature accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def discovery_job(
    eng: OneShotMetaLearningEngine, tasks: Sequence[Task], held_out: Sequence[Task] | None = None
) -> Callable[[Worker], Any]:
    """Work function: ``eng.discover_causal_patterns_sync(tasks, progress=callback, stop=...,
    held_out=...)`` (held-out tasks measure the effectiveness of the discovered priors).

    The callback records progress and raises WorkerStopped when Stop was pressed, so
    discovery stops at its next progress report even if it takes no stop argument."""

    def job(worker: Worker) -> Any:
        fn = eng.discover_causal_patterns_sync
        kwargs: dict[str, Any] = {"progress": worker.progress_callback()}
        if accepts(fn, "stop"):
            kwargs["stop"] = worker.should_stop
        if held_out:
            kwargs["held_out"] = list(held_out)
        return call_supported(fn, list(tasks), **kwargs)

    return job


def score_discovery(eng: OneShotMetaLearningEngine, tasks: Sequence[Task]) -> dict[str, Any] | None:
    """Discovery scored against the known truth of SCM tasks (None when there is no truth)."""
    if not any(getattr(t, "truth", None) and "parents" in (t.truth or {}) for t in tasks):
        return None
    try:
        from engine.discovery import score_against_truth
    except ImportError:
        return None
    return score_against_truth(eng.discovered_mechanisms, getattr(eng, "discovery_report", None) or {}, tasks)


MECHANISM_COLUMNS = RECORD_FIELDS  # the engine's record fields, in its order


def mechanisms_frame(mechanisms: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The discovered mechanisms as a table with the documented columns first (nested details
    such as per-task effects are left out of the table)."""
    rows = [{k: v for k, v in m.items() if not isinstance(v, (dict, list, tuple))} for m in mechanisms]
    df = pd.DataFrame(rows)
    for c in MECHANISM_COLUMNS:
        if c not in df.columns:
            df[c] = None
    rest = [c for c in df.columns if c not in MECHANISM_COLUMNS]
    return df[[*MECHANISM_COLUMNS, *rest]]


def filter_mechanisms(
    df: pd.DataFrame, types: Sequence[str] | None = None, min_strength: float = 0.0, min_confidence: float = 0.0
) -> pd.DataFrame:
    out = df
    if types:
        out = out[out["mechanism_type"].astype(str).isin([str(t) for t in types])]
    strength = pd.to_numeric(out["causal_strength"], errors="coerce").fillna(0.0)
    conf = pd.to_numeric(out["confidence"], errors="coerce").fillna(0.0)
    return out[(strength >= min_strength) & (conf >= min_confidence)]


DIRECTION_FUNCTIONS = (
    "run_two_variable_experiment",
    "two_variable_experiment",
    "meta_transfer_experiment",
    "run_experiment",
)


def find_direction_experiment(module: Any) -> Callable[..., Any] | None:
    """The two-variable meta-transfer experiment function of ``engine.causal_direction``."""
    for name in DIRECTION_FUNCTIONS:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def direction_job(fn: Callable[..., Any], episodes: int, runs: int, n_categories: int) -> Callable[[Worker], Any]:
    """Work function of the two-variable experiment: ``runs`` seeds, ``episodes`` interventions,
    categorical variables with ``n_categories`` values; every callback reports sigma(gamma) of
    every seed, so the page can draw the belief curves live."""

    def job(worker: Worker) -> Any:
        def callback(episode: int, sigmas: Sequence[float] | None = None) -> None:
            rec: dict[str, Any] = {"done": int(episode), "total": int(episodes), "fraction": episode / max(1, episodes)}
            if sigmas is not None:
                rec["sigmas"] = [float(v) for v in sigmas]
                rec["message"] = f"median σ(γ) {float(np.median(rec['sigmas'])):.3f}"
            worker.report(rec)

        return call_supported(
            fn,
            seeds=runs,
            episodes=episodes,
            n=n_categories,
            callback=callback,
            callback_every=max(1, episodes // 100),
            stop=worker.should_stop,
        )

    return job


def live_belief(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Belief curves so far from the experiment's progress records."""
    rows = [r for r in records if "sigmas" in r]
    if not rows:
        return None
    x = [float(r["done"]) for r in rows]
    sig = np.asarray([r["sigmas"] for r in rows], dtype=float)  # (points, seeds)
    return {"episodes": x, "curves": sig.T.tolist(), "median": np.median(sig, axis=1).tolist()}


def belief_curves(result: Any) -> dict[str, Any] | None:
    """Pull (episodes, curves, median) out of the experiment's result, whatever its exact keys."""
    if result is None:
        return None
    data = result if isinstance(result, dict) else getattr(result, "__dict__", {})
    curves = None
    if data.get("sigma") is not None:  # engine.causal_direction: (episodes, seeds)
        sig = np.asarray(data["sigma"], dtype=float)
        curves = sig.T if sig.ndim == 2 else sig
    for key in ("curves", "sigma_gamma", "beliefs", "belief"):
        if curves is None and data.get(key) is not None:
            curves = np.asarray(data[key], dtype=float)
    median = data.get("median")
    if curves is None and median is None:
        return None
    if curves is not None and curves.ndim == 1:
        curves = curves[None]
    if median is None and curves is not None:
        median = np.median(curves, axis=0)
    median = np.asarray(median, dtype=float)
    episodes = data.get("episodes")
    if episodes is None or np.ndim(episodes) == 0:
        episodes = np.arange(1, len(median) + 1)
    return {
        "episodes": np.asarray(episodes, dtype=float).tolist(),
        "curves": [] if curves is None else curves.tolist(),
        "median": median.tolist(),
    }


def learned_graph_views(result: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Truth, the graph learned from interventional tasks, and PC's, as graphs for
    ``figures.scm_graph_figure`` (same variable names and target, different adjacency)."""
    base = {k: truth[k] for k in ("variable_names", "target", "parents", "children") if k in truth}
    views = {"truth": {**base, "adjacency": truth["adjacency"]}, "learned": {**base, "adjacency": result["adjacency"]}}
    if result.get("pc_adjacency") is not None:
        views["PC"] = {**base, "adjacency": result["pc_adjacency"]}
    return views
