"""Command line: ``python -m engine train|evaluate|adapt`` (``--help`` on each).

Every config field is an option (``--inner-lr 0.01``, ``--no-enable-causal-priors``);
task sources are chosen with ``--source`` and its options. Long work shows a progress bar
on stderr; ``--json PATH`` (or ``--json -`` for stdout) writes the results as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .checkpoint import CheckpointError
from .config import FIELD_HELP, TEST_TIME_FIELDS, VIEW_KINDS, ConfigError, OneShotMetaLearningConfig
from .engine import OneShotMetaLearningEngine
from .mechanisms import CausalMechanism, finite_or_null
from .tasks import SPLITS, ImageTaskSource, TabularTaskSource, TaskError, TaskSource, make_task_source
from .tasks.content_hash import content_sha256

_TYPES = {"int": int, "float": float, "str": str}
_SEED_RANGE = (0, 2**31 - 1)
# Fields fixed by the weights: a resumed run cannot change them.
_ARCHITECTURE = ("algorithm", "hidden_dim", "num_mechanisms", "encoder", "conv_channels")
# Data options (argparse dests) by the source kind they belong to: giving one implies that kind.
_KIND_OPTIONS = {
    "images": (
        "within_group",
        "rotations",
        "mirrors",
        "augment_shift",
        "augment_affine",
        "augment_elastic",
        "include_groups",
    ),
    "tabular": ("target_column", "task_column"),
    "scm": ("num_variables", "scm_task_type", "scm_seed", "shift_mode"),
}
_FILE_KINDS = ("images", "tabular")  # the kinds read from --path and split by --split-fractions
_SHARED_OPTIONS = ("path", "split_fractions")


def ranged(kind: type, low: float, high: float) -> Any:
    """An argparse type that parses ``kind`` and checks ``low <= value <= high``, so that a bad
    value is reported by argparse as ``argument --flag: must be ... in [low, high]; got ...``."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what} in [{low:g}, {high:g}]; got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (defaults as in OneShotMetaLearningConfig)")
    for f in dataclasses.fields(OneShotMetaLearningConfig):
        flag = "--" + f.name.replace("_", "-")
        bounds = OneShotMetaLearningConfig.field_range(f.name)
        if f.type == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=FIELD_HELP[f.name])
        elif f.name == "algorithm":
            group.add_argument(flag, default=None, help=FIELD_HELP[f.name])
        elif bounds is not None:
            low, high = bounds
            group.add_argument(
                flag,
                type=ranged(_TYPES[f.type], low, high),
                default=None,
                help=f"{FIELD_HELP[f.name]} Range [{low:g}, {high:g}].",
            )
        elif f.name == "test_time_views":
            group.add_argument(flag, choices=VIEW_KINDS, default=None, help=FIELD_HELP[f.name])
        else:
            group.add_argument(flag, type=_TYPES[f.type], default=None, help=FIELD_HELP[f.name])


def _add_source_options(parser: argparse.ArgumentParser, required: bool) -> None:
    g = parser.add_argument_group("task source")
    g.add_argument(
        "--source",
        choices=["sinusoid", "scm", "images", "tabular"],
        required=required,
        help="task family (evaluate/adapt default to the checkpoint's)",
    )
    g.add_argument("--path", help="images: zip or folder (default: Omniglot small1); tabular: CSV file")
    g.add_argument("--target-column", help="tabular: the target column")
    g.add_argument("--task-column", help="tabular: the column naming each row's task")
    g.add_argument("--within-group", action="store_true", default=None, help="images: classes of one alphabet")
    g.add_argument("--rotations", action="store_true", default=None, help="images: 90-degree rotations as classes")
    g.add_argument("--mirrors", action="store_true", default=None, help="images: mirror images as classes")
    g.add_argument("--augment-shift", type=int, help="images: random training shifts of up to N pixels (0-8)")
    g.add_argument(
        "--augment-affine",
        type=float,
        help="images: random training rotation/shear/scale, strength 0-2 (1 = Koch et al.)",
    )
    g.add_argument(
        "--augment-elastic",
        type=float,
        help="images: random training elastic warp, strength 0-2 (1 = Simard et al.)",
    )
    g.add_argument("--include-groups", help="images: comma-separated groups (alphabets) to use")
    g.add_argument(
        "--split-fractions", help="images/tabular: train,val,test fractions, e.g. 0,0,1 to test on all classes"
    )
    g.add_argument("--num-variables", type=int, help="scm: number of variables (default 6)")
    g.add_argument("--scm-task-type", choices=["regression", "classification"], help="scm: task type")
    g.add_argument("--scm-seed", type=int, help="scm: seed of the causal graph")
    g.add_argument("--shift-mode", choices=["mechanism", "target_term"], help="scm: kind of per-task shift")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Causal one-shot meta-learning engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="meta-train on a task source and write a checkpoint")
    _add_source_options(p, required=False)
    _add_config_options(p)
    p.add_argument("--out", default="checkpoints/model", help="checkpoint directory (or .zip) to write")
    p.add_argument(
        "--resume",
        help="continue training from this checkpoint: the same task source, optimiser state and settings unless "
        "an option is given (each change is reported); --num-meta-iterations is then the total",
    )
    p.add_argument(
        "--more-iterations",
        type=ranged(int, 1, 10_000_000),
        help="with --resume: iterations to add to the checkpoint's",
    )
    p.add_argument(
        "--save-every",
        type=ranged(int, 0, 10**9),
        default=0,
        help="also write the checkpoint every N iterations, so a failed run leaves the last good one (0: at the end)",
    )
    _add_output_options(p)

    p = sub.add_parser("evaluate", help="held-out loss and metric of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    _add_source_options(p, required=False)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--episodes", type=ranged(int, 1, 100_000), default=100)
    p.add_argument(
        "--steps", type=ranged(int, 0, 1000), help="adaptation steps (default: the checkpoint's adaptation_steps)"
    )
    for field in ("n_way", "support_shots", "query_shots"):
        p.add_argument(
            _flag(field),
            type=ranged(int, *OneShotMetaLearningConfig.field_range(field)),
            help=f"override the checkpoint's {field} for this evaluation (checked against the data)",
        )
    _add_test_time_options(p)
    p.add_argument(
        "--fixed-episodes",
        nargs="?",
        const="",
        metavar="PATH",
        help="score fixed one-shot trials in an image zip or folder (PATH, or --path): each group folder is one "
        "episode, files named support* in a class folder are its support set, the others its queries; every "
        "query is scored once",
    )
    p.add_argument(
        "--swap-roles", action="store_true", help="with --fixed-episodes: adapt on the queries, score the support"
    )
    p.add_argument("--seed", type=ranged(int, *_SEED_RANGE), default=1234)
    _add_output_options(p)

    p = sub.add_parser("adapt", help="adapt a checkpoint to one new task and show its predictions")
    p.add_argument("--checkpoint", required=True)
    _add_source_options(p, required=False)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--task-seed", type=ranged(int, *_SEED_RANGE), default=0, help="which held-out task (seed of its draw)"
    )
    p.add_argument(
        "--steps", type=ranged(int, 0, 1000), help="adaptation steps (default: the checkpoint's adaptation_steps)"
    )
    _add_test_time_options(p)
    _add_output_options(p)

    p = sub.add_parser("discover", help="discover causal mechanisms of a checkpoint by intervention")
    p.add_argument("--checkpoint", help="the trained model (not with --all-targets)")
    _add_source_options(p, required=False)
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="split the tasks come from")
    p.add_argument(
        "--tasks",
        type=ranged(int, 1, 10_000),
        default=20,
        help="tasks to intervene on (the last quarter is held out)",
    )
    p.add_argument("--task-seed", type=ranged(int, *_SEED_RANGE), default=0, help="seed of the task draw")
    p.add_argument(
        "--threshold",
        type=ranged(float, 0, 1),
        help="least strength kept (default: the checkpoint's; 0 with --all-targets)",
    )
    p.add_argument("--export", help="write the versioned mechanisms JSON here")
    p.add_argument("--graph-html", help="write the mechanism graph as self-contained HTML here")
    p.add_argument("--save", action="store_true", help="store the mechanisms in the checkpoint")
    p.add_argument(
        "--use-invariance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="test which features' relation to the output is the same in every task (invariant causal "
        "prediction) and keep feature -> output records only for those; --no-use-invariance keeps plain "
        "ablation importance (children of the output included)",
    )
    p.add_argument(
        "--invariance-alpha",
        type=ranged(float, 1e-6, 0.5),
        default=0.01,
        help="level of the invariance test: a feature set counts as invariant when its p-value exceeds this "
        "(smaller accepts more sets)",
    )
    g = p.add_argument_group("one graph from per-target discovery (no checkpoint)")
    g.add_argument(
        "--all-targets",
        action="store_true",
        help="every numeric column of the CSV (--path, --task-column) is the target in turn: train a small model "
        "on all regimes, discover its parents (FEATURE_TRANSFER), and assemble them into one directed graph",
    )
    g.add_argument("--truth", help="with --all-targets: two-column cause,effect CSV to score the graph against")
    g.add_argument(
        "--iterations",
        type=ranged(int, 1, 100_000),
        default=20,
        help="with --all-targets: meta-training iterations per target (few: a quick look)",
    )
    _add_output_options(p)

    p = sub.add_parser("evolve", help="evolve the config with an Optuna study (several processes may share one)")
    _add_source_options(p, required=True)
    _add_config_options(p)
    _add_evolve_options(p)
    _add_output_options(p)

    p = sub.add_parser("graph", help="learn a causal graph from a CSV of regimes, scored against PC, GES, GIES")
    p.add_argument("--path", required=True, help="CSV: one column per measured variable plus the task column")
    p.add_argument("--task-column", required=True, help="the column naming each row's regime")
    p.add_argument("--observational", help="the regime without intervention (if any)")
    p.add_argument("--targets", help='JSON file mapping regimes to the variables they act on: {"regime": ["x3"]}')
    p.add_argument("--truth", help="two-column cause,effect CSV: score ours and every baseline against it")
    p.add_argument("--no-baselines", action="store_true", help="skip PC, GES and GIES")
    p.add_argument(
        "--min-partial", type=ranged(float, 1e-3, 0.99), default=0.15, help="least |partial correlation| kept"
    )
    p.add_argument(
        "--max-condition", type=ranged(int, 0, 6), default=2, help="largest conditioning set of the skeleton"
    )
    _add_output_options(p)

    p = sub.add_parser("ready-models", help="make the ready-trained models in assets/models (see its README.md)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="make only these (default: all)")
    p.add_argument("--threads", type=ranged(int, 1, 256), default=1, help="torch threads")
    p.add_argument("--out-root", help="write the model folders here instead of assets/models")
    _add_output_options(p)

    p = sub.add_parser("bench", help="run a benchmark script from benchmarks/ (see BENCHMARKS.md)")
    p.add_argument("name", help="benchmark name, e.g. sinusoid_quality (list: python -m engine bench list)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark (--help for its own)")
    return parser


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _add_test_time_options(p: argparse.ArgumentParser) -> None:
    for field in TEST_TIME_FIELDS:
        bounds = OneShotMetaLearningConfig.field_range(field)
        kind = {"choices": VIEW_KINDS} if bounds is None else {"type": ranged(int, *bounds)}
        p.add_argument(_flag(field), **kind, help=f"override the checkpoint's {field}: {FIELD_HELP[field]}")


def _add_evolve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evolution (the config options above are the starting config)")
    g.add_argument(
        "--trials", type=ranged(int, 1, 100_000), default=20, help="trials in the study, counting other workers'"
    )
    g.add_argument("--timeout", type=ranged(float, 1e-3, 1e9), help="stop starting trials after this many seconds")
    g.add_argument("--budget", type=ranged(int, 1, 1_000_000), default=100, help="meta-iterations per trial")
    g.add_argument(
        "--objective-episodes", type=ranged(int, 2, 100_000), default=50, help="validation episodes scoring a trial"
    )
    g.add_argument(
        "--storage",
        help="Optuna storage: a URL (sqlite:///study.db, postgresql://...), journal:PATH, or a SQLite file path; "
        "several processes given the same storage and study name run trials of one study (default: in memory)",
    )
    g.add_argument("--study-name", help="default: evolve-<source>-<algorithm>")
    g.add_argument(
        "--sampler-seed",
        type=ranged(int, *_SEED_RANGE),
        help="seed of the sampler (default: the config's seed; give each worker its own)",
    )
    g.add_argument("--history", help="JSON file of past results (a list, or one result) carrying config and value")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", help="write results as JSON to this path ('-' for stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; log errors only")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="log the engine's progress (-v INFO, -vv DEBUG) on stderr"
    )


def setup_logging(verbose: int = 0, quiet: bool = False) -> logging.Handler:
    """One stderr handler on the ``engine`` logger: WARNING by default, -v INFO, -vv DEBUG,
    -q ERROR. The library itself only logs; the command line decides what is shown."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    root = logging.getLogger("engine")
    for h in [h for h in root.handlers if getattr(h, "_engine_cli", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler._engine_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _source_kwargs(args: argparse.Namespace, n_way_default: int) -> dict[str, Any]:
    name = args.source
    kw: dict[str, Any] = {}
    if name == "images":
        if args.path:
            kw["path"] = args.path
        kw["n_way"] = n_way_default  # the config's n_way
        for key in ("within_group", "rotations", "mirrors"):
            if getattr(args, key):
                kw[key] = True
        for key in ("augment_shift", "augment_affine", "augment_elastic"):
            if getattr(args, key) is not None:
                kw[key] = getattr(args, key)
        if args.include_groups:
            kw["include_groups"] = [g.strip() for g in args.include_groups.split(",") if g.strip()]
    elif name == "tabular":
        if not (args.path and args.target_column and args.task_column):
            raise TaskError("tabular needs --path CSV, --target-column and --task-column")
        kw.update(data=args.path, target_column=args.target_column, task_column=args.task_column)
    elif name == "scm":
        for key, arg in (
            ("num_variables", "num_variables"),
            ("task_type", "scm_task_type"),
            ("seed", "scm_seed"),
            ("shift_mode", "shift_mode"),
        ):
            if getattr(args, arg) is not None:
                kw[key] = getattr(args, arg)
    if args.split_fractions:
        try:
            kw["split_fractions"] = tuple(float(v) for v in args.split_fractions.split(","))
        except ValueError:
            raise TaskError(
                f"--split-fractions must be three numbers like 0.7,0.15,0.15; got {args.split_fractions!r}"
            ) from None
    return kw


def _recorded_source(engine: OneShotMetaLearningEngine, n_way: int) -> TaskSource:
    """The checkpoint's own task source, rebuilt from the options it records (``n_way`` may differ)."""
    recorded = engine.source_info or {}
    if "cli_source" not in recorded:
        raise TaskError("give --source (the checkpoint does not record how its task source was built)")
    try:
        kw = dict(recorded["cli_args"])
        if not all(isinstance(k, str) for k in kw):
            raise TypeError("argument names must be strings")
        if "split_fractions" in kw:
            kw["split_fractions"] = tuple(kw["split_fractions"])
    except (TypeError, ValueError):
        raise TaskError("the checkpoint's recorded task source is malformed: give --source") from None
    if "n_way" in kw:
        kw["n_way"] = n_way
    return make_task_source(recorded["cli_source"], **kw)


def _data_kind(args: argparse.Namespace, recorded: str | None) -> str | None:
    """The source kind the data options imply; None when none is given (the checkpoint's own data)."""
    given = {k: [d for d in opts if getattr(args, d, None) is not None] for k, opts in _KIND_OPTIONS.items()}
    implied = sorted(k for k, dests in given.items() if dests)
    shared = [d for d in _SHARED_OPTIONS if getattr(args, d, None) is not None]
    if args.source is not None:
        for kind in implied:
            if kind != args.source:
                raise TaskError(
                    f"{_flag(given[kind][0])} is an option of --source {kind}, not of --source {args.source}"
                )
        if shared and args.source not in _FILE_KINDS:
            raise TaskError(f"{_flag(shared[0])} does not apply to --source {args.source}")
        return args.source
    if len(implied) > 1:
        a, b = implied[:2]
        raise TaskError(f"{_flag(given[a][0])} ({a}) and {_flag(given[b][0])} ({b}) belong to different task sources")
    if implied:
        return implied[0]
    if not shared:
        return None
    if recorded in _FILE_KINDS:
        return recorded
    if args.path is None:
        raise TaskError(f"--split-fractions applies to images or tabular data, not to {recorded}: give --source")
    return "tabular" if str(args.path).lower().endswith(".csv") else "images"


def _same_path(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, TypeError, ValueError):
        return False


def _build_source(args: argparse.Namespace, engine: OneShotMetaLearningEngine, n_way: int) -> TaskSource:
    """The data to score: the checkpoint's own, or exactly what the data options name. Any data
    option implies its source kind; a path that does not exist is an error. New data (another
    path) without --split-fractions is all in the scored split."""
    recorded = engine.source_info or {}
    recorded_kind = recorded.get("cli_source") or recorded.get("name")
    kind = _data_kind(args, recorded_kind)
    if kind is None:
        return _recorded_source(engine, n_way)
    if args.path is not None and not Path(args.path).expanduser().exists():
        raise TaskError(f"--path {args.path!r}: no such file or folder")
    recorded_args = recorded.get("cli_args") if isinstance(recorded.get("cli_args"), dict) else {}
    same_kind = kind == recorded_kind
    view = argparse.Namespace(**{**vars(args), "source": kind})
    if kind == "tabular" and same_kind:  # the checkpoint's columns unless others are named
        view.target_column = args.target_column or recorded_args.get("target_column")
        view.task_column = args.task_column or recorded_args.get("task_column")
    kw = _source_kwargs(view, n_way)
    if kind in _FILE_KINDS and "split_fractions" not in kw:
        recorded_path = recorded_args.get("path") or recorded_args.get("data") or recorded.get("path")
        if same_kind and (args.path is None or _same_path(args.path, recorded_path)):
            if "split_fractions" in recorded_args:
                kw["split_fractions"] = tuple(recorded_args["split_fractions"])
        else:
            split = getattr(args, "split", "test")
            kw["split_fractions"] = tuple(float(s == split) for s in SPLITS)
    return make_task_source(kind, **kw)


def _check_data_fits(engine: OneShotMetaLearningEngine, source: TaskSource, split: str) -> None:
    """The model takes the data's inputs and classes, and the data has enough classes and images
    for the episodes asked for; otherwise a message naming the option to change."""
    learner, cfg = engine.learner, engine.config
    assert learner is not None and engine.model is not None
    if tuple(engine.model.input_shape) != tuple(source.input_shape) or engine.task_type != source.task_type:
        raise TaskError(
            f"the checkpoint's model takes {engine.task_type} tasks with input shape {list(engine.model.input_shape)}, "
            f"but the data gives {source.task_type} tasks with input shape {list(source.input_shape)}"
        )
    if not learner.embedding_only and source.output_dim != engine.output_dim:
        raise TaskError(
            f"this {cfg.algorithm.name} model's head has {engine.output_dim} outputs, but the data gives "
            f"{source.output_dim} (--n-way must be {engine.output_dim}; prototypical and relation models take any)"
        )
    if isinstance(source, ImageTaskSource):
        sizes = source.class_sizes(split)
        if len(sizes) < source.n_way:
            raise TaskError(
                f"split {split!r} of the data has {len(sizes)} classes, fewer than --n-way {source.n_way} "
                "(give a smaller --n-way, or --split-fractions to put more classes in this split)"
            )
        need = cfg.support_shots + cfg.query_shots
        small = min(sizes, key=sizes.get)
        if sizes[small] < need:
            raise TaskError(
                f"class {small!r} in split {split!r} has {sizes[small]} images, but --support-shots "
                f"{cfg.support_shots} + --query-shots {cfg.query_shots} need {need} per class "
                f"(the smallest class allows --query-shots {max(sizes[small] - cfg.support_shots, 0)})"
            )
    _require_tasks(source, split)


def _require_tasks(source: TaskSource, split: str) -> None:
    if not source.has_tasks(split):
        fractions = list(getattr(source, "split_fractions", []))
        raise TaskError(
            f"split {split!r} of the data has no tasks (split fractions {fractions}): give --split train, "
            "or --split-fractions with a nonzero share for this split"
        )


def _data_record(source: TaskSource, split: str, episodes: int) -> dict[str, Any]:
    """What was scored: the source kind, its path and content hash, its classes or tasks."""
    path = getattr(source, "path", None) or getattr(source, "data_path", None)
    record: dict[str, Any] = {"kind": source.name, "path": None if path is None else str(path), "sha256": None}
    if path is not None and Path(str(path)).exists():
        record["sha256"] = content_sha256(path)
    record["split"] = split
    if isinstance(source, ImageTaskSource):
        record["classes"] = source.num_classes(split)
        record["split_fractions"] = list(source.split_fractions)
    elif isinstance(source, TabularTaskSource):
        record["tasks"] = len(source.task_names(split))
        record["split_fractions"] = list(source.split_fractions)
    record["episodes"] = episodes
    return record


def _config_from_args(args: argparse.Namespace) -> OneShotMetaLearningConfig:
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(OneShotMetaLearningConfig)
        if getattr(args, f.name, None) is not None
    }
    return OneShotMetaLearningConfig(**values)


class _Progress:
    """tqdm bar on stderr (silent with --quiet)."""

    def __init__(self, total: int, quiet: bool, desc: str) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="it", dynamic_ncols=True)

    def __call__(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        post = {"loss": f"{record['train_loss']:.4f}"}
        if record.get("val_metric") is not None:
            post[f"val_{record['metric_name']}"] = f"{record['val_metric']:.4f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def trial(self, record: dict[str, Any]) -> None:
        """Evolution's callback: one step per finished trial."""
        if self.bar is None or record.get("event") != "trial":
            return
        if record.get("best_value") is not None:
            self.bar.set_postfix({"best": f"{record['best_value']:.4f}"}, refresh=False)
        self.bar.update(max(0, record["done"] - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(result: dict[str, Any], args: argparse.Namespace) -> None:
    # NaN (not measured) is not JSON: it is written as null.
    text = json.dumps(finite_or_null(result), indent=2, default=_json_default, allow_nan=False)
    if args.json == "-":
        print(text)
        return
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(_summary(result), file=sys.stderr if args.json == "-" else sys.stdout)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, CausalMechanism):
        return value.to_dict()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _summary(result: dict[str, Any]) -> str:
    keys = [k for k in ("checkpoint", "loss", "mse", "accuracy", "mse_ci95", "accuracy_ci95") if k in result]
    parts = [f"{k}={result[k]:.4f}" if isinstance(result[k], float) else f"{k}={result[k]}" for k in keys]
    if "adaptation_quality" in result:
        q = result["adaptation_quality"]
        parts += [f"{k}={v:.4f}" for k, v in q.items() if isinstance(v, float)]
        parts.append(f"adaptation_time={result['adaptation_time'] * 1000:.2f}ms")
    if result.get("message"):
        parts.append(result["message"])
    return "  ".join(parts)


def _resume(
    args: argparse.Namespace,
) -> tuple[OneShotMetaLearningEngine, TaskSource, dict[str, Any], int, list[str]]:
    """The checkpoint's engine with its optimiser, its task source rebuilt from the recorded options,
    and the given options applied on top. Returns (engine, source, its options, total iterations,
    the changes)."""
    engine = OneShotMetaLearningEngine.from_checkpoint(args.resume, device=args.device or "auto")
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(OneShotMetaLearningConfig)
        if getattr(args, f.name, None) is not None and f.name not in ("num_meta_iterations", "device")
    }
    for name in _ARCHITECTURE:
        if name in overrides and str(overrides[name]).upper() != str(getattr(engine.config, name)).upper():
            raise ConfigError(
                f"--{name.replace('_', '-')} cannot change when resuming: the checkpoint's weights "
                f"were built for {name}={getattr(engine.config, name)} (train a new model instead)"
            )
    changes = [
        f"{name}: {getattr(engine.config, name)} -> {value}"
        for name, value in overrides.items()
        if str(value).upper() != str(getattr(engine.config, name)).upper()
    ]
    done = len(engine.history.iteration) if engine.history else 0
    if args.num_meta_iterations is not None and args.more_iterations is not None:
        raise ConfigError("give --num-meta-iterations (the total) or --more-iterations (to add), not both")
    if args.more_iterations is not None:
        total = done + args.more_iterations
    else:
        total = args.num_meta_iterations if args.num_meta_iterations is not None else engine.config.num_meta_iterations
    engine.set_config(**overrides)
    recorded = engine.source_info or {}
    kind = args.source or recorded.get("cli_source")
    if kind is None:
        raise TaskError("give --source (the checkpoint does not record how its task source was built)")
    base = dict(recorded.get("cli_args") or {}) if kind == recorded.get("cli_source") else {}
    if kind == "tabular":  # the recorded columns unless others are named
        args = argparse.Namespace(**{**vars(args), "source": kind})
        args.path = args.path or base.get("data")
        args.target_column = args.target_column or base.get("target_column")
        args.task_column = args.task_column or base.get("task_column")
    given = _source_kwargs(argparse.Namespace(**{**vars(args), "source": kind}), engine.config.n_way)
    if kind != recorded.get("cli_source"):
        changes.append(f"source: {recorded.get('cli_source')} -> {kind}")
    changes += [f"{k}: {base.get(k)} -> {v}" for k, v in _jsonable(given).items() if base.get(k) != v]
    kwargs = {**base, **given}
    if "split_fractions" in kwargs:
        kwargs["split_fractions"] = tuple(kwargs["split_fractions"])
    source = make_task_source(kind, **kwargs)
    args.source = kind
    return engine, source, kwargs, total, changes


def cmd_train(args: argparse.Namespace) -> dict[str, Any] | None:
    """Meta-train and write the checkpoint. Under torchrun every process trains its share of each
    meta-batch (``engine.distributed``); only rank 0 shows progress and writes files."""
    changes: list[str] = []
    if args.resume:
        engine, source, kwargs, total, changes = _resume(args)
        for change in changes:
            print(f"resume: {change}", file=sys.stderr)
    else:
        if args.source is None:
            raise TaskError("give --source (or --resume a checkpoint)")
        if args.more_iterations is not None:
            raise ConfigError("--more-iterations needs --resume")
        engine = OneShotMetaLearningEngine(_config_from_args(args))
        kwargs = _source_kwargs(args, engine.config.n_way)
        source = make_task_source(args.source, **kwargs)
        engine.initialize_for_source(source)
        total = engine.config.num_meta_iterations
    if args.resume and engine._incompatible(source):
        # meta_train would silently start a fresh model: say so instead.
        assert engine.model is not None
        raise TaskError(
            f"--resume: the checkpoint's model takes {engine.task_type} tasks with input shape "
            f"{list(engine.model.input_shape)} and {engine.output_dim} output(s), but --source {args.source} gives "
            f"{source.task_type} tasks with input shape {list(source.input_shape)} and {source.output_dim}"
        )
    if args.resume:
        done = len(engine.history.iteration) if engine.history else 0
        if total <= done:
            raise ConfigError(
                f"the checkpoint has trained {done} iterations, so --num-meta-iterations {total} (the total) leaves "
                "nothing to do: give a larger total or --more-iterations N"
            )
        engine.set_config(num_meta_iterations=total - done)  # this run's share; the total is saved
    engine.source_info = {
        **source.describe(),
        "cli_source": args.source,
        "cli_args": _jsonable(kwargs),
    }
    main_process = distributed.is_main_process()
    progress = _Progress(engine.config.num_meta_iterations, args.quiet or not main_process, "meta-train")

    def on_iteration(record: dict[str, Any]) -> None:
        progress(record)
        if main_process and args.save_every and record["done"] % args.save_every == 0:
            engine.save_sync(args.out)

    try:
        history = engine.meta_train_sync(source, callback=on_iteration)
    finally:
        progress.close()
    engine.set_config(num_meta_iterations=total)
    if not main_process:
        return None
    out = engine.save_sync(args.out)
    evaluation = engine.evaluate_sync(source, "test", episodes=50) if source.has_tasks("test") else None
    notes = [history["message"]]
    if not source.has_tasks("val"):
        notes.append("no validation tasks (split fraction 0): trained without validation")
    if evaluation is None:
        notes.append("no test tasks (split fraction 0): not evaluated")
    return {
        "command": "train",
        "checkpoint": str(out),
        "resumed": {"from": args.resume, "changed": changes} if args.resume else None,
        "world_size": distributed.world()[1],
        "config": engine.config.to_dict(),
        "source": engine.source_info,
        "iterations": len(history["iteration"]),
        "final_train_loss": history["train_loss"][-1] if history["train_loss"] else None,
        "message": "; ".join(filter(None, notes)) or history["message"],
        "test": evaluation,
        "history": history,
    }


def _jsonable(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v) for k, v in kw.items()}


def _apply_test_time(engine: OneShotMetaLearningEngine, args: argparse.Namespace) -> None:
    engine.set_test_time(args.test_time_shifts, args.test_time_views, args.transductive_steps)


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    _apply_test_time(engine, args)
    if args.fixed_episodes is not None:
        return _evaluate_fixed(engine, args)
    if args.swap_roles:
        raise TaskError("--swap-roles applies to --fixed-episodes only")
    engine.set_config(**{k: getattr(args, k) for k in ("n_way", "support_shots", "query_shots") if getattr(args, k)})
    source = _build_source(args, engine, engine.config.n_way)
    _check_data_fits(engine, source, args.split)
    result = engine.evaluate_sync(source, args.split, episodes=args.episodes, steps=args.steps, seed=args.seed)
    cfg = engine.config
    settings = {
        "n_way": getattr(source, "n_way", None),
        "support_shots": cfg.support_shots,
        "query_shots": cfg.query_shots,
        "steps": engine.learner.default_steps() if args.steps is None else args.steps,
        "seed": args.seed,
        **engine.test_time(),
    }
    return {
        "command": "evaluate",
        "checkpoint": args.checkpoint,
        "split": args.split,
        "data": _data_record(source, args.split, result["episodes"]),
        "settings": settings,
        **result,
    }


def _evaluate_fixed(engine: OneShotMetaLearningEngine, args: argparse.Namespace) -> dict[str, Any]:
    path = args.fixed_episodes or args.path
    if not path:
        raise TaskError("--fixed-episodes needs an image zip or folder: --fixed-episodes PATH")
    if args.fixed_episodes and args.path and not _same_path(args.fixed_episodes, args.path):
        raise TaskError("--fixed-episodes and --path name different data: give one")
    fixed_by_data = ["n_way", "support_shots", "query_shots", "split_fractions"]
    given = [d for d in fixed_by_data + [o for opts in _KIND_OPTIONS.values() for o in opts] if getattr(args, d, None)]
    if given:
        raise TaskError(
            f"{_flag(given[0])} does not apply to --fixed-episodes (the episodes fix their classes and shots)"
        )
    if not Path(path).expanduser().exists():
        raise TaskError(f"--fixed-episodes {path!r}: no such file or folder")
    result = engine.evaluate_fixed_sync(path, swap_roles=args.swap_roles, steps=args.steps)
    return {"command": "evaluate", "checkpoint": args.checkpoint, **result}


def cmd_adapt(args: argparse.Namespace) -> dict[str, Any]:
    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    _apply_test_time(engine, args)
    source = _build_source(args, engine, engine.config.n_way)
    _check_data_fits(engine, source, args.split)
    task = source.tasks(args.split, 1, seed=args.task_seed)[0]
    result = engine.one_shot_adapt_sync(task, steps=args.steps, seed=args.task_seed)
    return {"command": "adapt", "checkpoint": args.checkpoint, "settings": engine.test_time(), **result}


def cmd_discover(args: argparse.Namespace) -> dict[str, Any]:
    from .discovery import invariance_fallback_note
    from .mechanism_graph import render_graph_html

    if args.all_targets:
        return _discover_all_targets(args)
    if not args.checkpoint:
        raise TaskError("discover needs --checkpoint (or --all-targets with --path and --task-column)")
    if args.truth:
        raise TaskError("--truth applies to --all-targets only")
    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    if args.threshold is not None:
        engine.set_config(mechanism_threshold=args.threshold)
    source = _build_source(args, engine, engine.config.n_way)
    _require_tasks(source, args.split)
    tasks = source.tasks(args.split, args.tasks, seed=args.task_seed)
    bar = None if args.quiet else _StageBar()
    try:
        records = engine.discover_causal_patterns_sync(
            tasks, progress=bar, use_invariance=args.use_invariance, invariance_alpha=args.invariance_alpha
        )
    finally:
        if bar is not None:
            bar.close()
    if args.export:
        engine.export_mechanisms_sync(args.export)
    if args.graph_html:
        truth = next((t.truth for t in tasks if getattr(t, "truth", None)), None)
        Path(args.graph_html).write_text(render_graph_html(engine.mechanism_graph(truth=truth)), encoding="utf-8")
    if args.save:
        engine.save_sync(args.checkpoint)
    return {
        "command": "discover",
        "checkpoint": args.checkpoint,
        "insights": engine.get_mechanism_insights(),
        "mechanisms": [r.to_dict() for r in records],
        "report": engine.discovery_report,
        "priors": engine.causal_priors,
        "settings": {"use_invariance": args.use_invariance, "invariance_alpha": args.invariance_alpha},
        "message": " ".join(
            filter(None, [f"{len(records)} mechanisms kept.", invariance_fallback_note(engine.discovery_report)])
        ),
    }


def cmd_evolve(args: argparse.Namespace) -> dict[str, Any]:
    config = _config_from_args(args)
    source = make_task_source(args.source, **_source_kwargs(args, config.n_way))
    history: list[Any] = []
    if args.history:
        try:
            loaded = json.loads(Path(args.history).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--history {args.history}: not a readable JSON file ({exc})") from None
        history = loaded if isinstance(loaded, list) else [loaded]
    if args.quiet:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial lines either
    engine = OneShotMetaLearningEngine(config)
    bar = None if args.quiet else _Progress(args.trials, False, "evolve")
    try:
        engine.evolve_meta_config_sync(
            config,
            history,
            n_trials=args.trials,
            timeout=args.timeout,
            source_tasks=source,
            budget=args.budget,
            objective_episodes=args.objective_episodes,
            storage=args.storage,
            study_name=args.study_name,
            seed=args.sampler_seed,
            callback=None if bar is None else bar.trial,
        )
    finally:
        if bar is not None:
            bar.close()
    result = engine.evolution.to_dict()
    counts = ", ".join(f"{n} {s.lower()}" for s, n in result["counts"].items() if n)
    message = f"best validation {result['metric']} {result['value']:.4f} (trial {result['best_trial']}); {counts}"
    return {"command": "evolve", "source": source.describe(), **result, "message": message}


def _discover_all_targets(args: argparse.Namespace) -> dict[str, Any]:
    from .parent_graph import SMALL_CONFIG, assemble_parent_graph

    if args.checkpoint:
        raise TaskError("--all-targets trains its own small model per column: leave out --checkpoint")
    if not (args.path and args.task_column):
        raise TaskError("--all-targets needs --path CSV and --task-column")
    if not Path(args.path).expanduser().exists():
        raise TaskError(f"--path {args.path!r}: no such file")
    config = OneShotMetaLearningConfig(**{**SMALL_CONFIG, "num_meta_iterations": args.iterations})
    result = assemble_parent_graph(
        args.path,
        args.task_column,
        truth=args.truth,
        config=config,
        use_invariance=args.use_invariance,
        invariance_alpha=args.invariance_alpha,
        threshold=0.0 if args.threshold is None else args.threshold,
        progress=None
        if args.quiet
        else lambda message, done, total: print(f"[{done + 1}/{total}] {message}", file=sys.stderr),
    )
    fallbacks = [t for t, found in result["per_target"].items() if found["invariance_fallback"]]
    parts = [f"{len(result['edges'])} edges assembled from the parents of {len(result['variables'])} columns"]
    if fallbacks:
        parts.append(
            f"the invariance test rejected every feature set for {fallbacks}: their parents come from the graph "
            "learned from the regimes' shifts instead"
        )
    parts += [f"SHD {name}={score['shd']}" for name, score in result.get("scores", {}).items()]
    return {"command": "discover", **result, "message": "; ".join(parts)}


class _StageBar:
    """Progress of a discovery run on stderr: one tqdm bar per stage."""

    def __init__(self) -> None:
        self.bar, self.stage = None, None

    def __call__(self, record: dict[str, Any]) -> None:
        from tqdm import tqdm

        if record["stage"] != self.stage:
            self.close()
            self.stage = record["stage"]
            self.bar = tqdm(total=record["total"], desc=self.stage, file=sys.stderr, dynamic_ncols=True)
        self.bar.n = record["done"]
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def available_benchmarks() -> list[str]:
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    return sorted(p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "common", "browser"))


def cmd_bench(args: argparse.Namespace) -> dict[str, Any] | None:
    import importlib

    names = available_benchmarks()
    if args.name == "list" or args.name not in names:
        if args.name != "list":
            raise ValueError(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
        print("\n".join(names))
        return None
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    importlib.import_module(f"benchmarks.{args.name}").main(args.bench_args)
    return None


def cmd_ready_models(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .ready_model_recipes import make_ready_models
    from .ready_models import READY_DIR

    torch.set_num_threads(args.threads)
    made = make_ready_models(args.only, Path(args.out_root) if args.out_root else READY_DIR)
    return {"command": "ready-models", "models": made, "message": f"made {', '.join(made)}"}


def cmd_graph(args: argparse.Namespace) -> dict[str, Any]:
    from .graph_learning import learn_graph

    result = learn_graph(
        args.path,
        task_column=args.task_column,
        observational=args.observational,
        targets=args.targets,
        truth=args.truth,
        baselines=not args.no_baselines,
        min_partial=args.min_partial,
        max_condition=args.max_condition,
    )
    parts = [f"{len(result['edges'])} directed and {len(result['undirected'])} undirected edges"]
    parts += [f"SHD {name}={score['shd']}" for name, score in result.get("scores", {}).items()]
    parts += [
        f"{name} not run: {run['skipped']}" for name, run in result.get("baselines", {}).items() if run.get("skipped")
    ]
    result["message"] = "; ".join(parts)
    return result


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "adapt": cmd_adapt,
    "discover": cmd_discover,
    "evolve": cmd_evolve,
    "graph": cmd_graph,
    "bench": cmd_bench,
    "ready-models": cmd_ready_models,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (argparse has printed why on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    logger = logging.getLogger("engine")
    level = logger.level
    handler = setup_logging(args.verbose, args.quiet) if hasattr(args, "verbose") else None
    try:
        if args.command == "train" and distributed.launched_world_size() > 1:
            return _main_distributed(args)
        result = COMMANDS[args.command](args)
    except (ConfigError, TaskError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if handler is not None:  # main() called from Python leaves the caller's logging as it was
            logger.removeHandler(handler)
            logger.setLevel(level)
    if result is not None:
        _emit(result, args)
    return 0


def _main_distributed(args: argparse.Namespace) -> int:
    """``train`` as one process of a torchrun group. A failing process says which rank failed and
    exits non-zero; torchrun then stops the others, and the checkpoint at --out stays the last good one."""
    import torch.distributed as dist

    clean = False
    try:
        distributed.init_from_env(args.device or "auto")
        result = cmd_train(args)
        clean = True
        if result is not None:
            _emit(result, args)
    except (ConfigError, TaskError, CheckpointError, ValueError, RuntimeError) as exc:
        if isinstance(exc, dist.DistBackendError) or "Connection closed by peer" in str(exc):
            why = "another process of the run failed (its own message says why)"
        else:
            why = str(exc)
        rank, size = os.environ.get("RANK", "?"), distributed.launched_world_size()
        print(
            f"error: rank {rank} of {size}: {why}; the run is stopped, and the checkpoint at {args.out} (if any) "
            "is the last one written before the failure (--save-every N writes one every N iterations)",
            file=sys.stderr,
        )
        return 2
    finally:
        distributed.shutdown(wait_for_others=clean)
    return 0
