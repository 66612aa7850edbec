"""Command line: ``python -m engine train|evaluate|adapt`` (``--help`` on each).

Every config field is an option (``--inner-lr 0.01``, ``--no-enable-causal-priors``);
task sources are chosen with ``--source`` and its options. Long work shows a progress bar
on stderr; ``--json PATH`` (or ``--json -`` for stdout) writes the results as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .checkpoint import CheckpointError
from .config import FIELD_HELP, VIEW_KINDS, ConfigError, OneShotMetaLearningConfig
from .engine import OneShotMetaLearningEngine
from .tasks import TaskError, TaskSource, make_task_source

_TYPES = {"int": int, "float": float, "str": str}
_SEED_RANGE = (0, 2**31 - 1)
# Fields fixed by the weights: a resumed run cannot change them.
_ARCHITECTURE = ("algorithm", "hidden_dim", "num_mechanisms", "encoder", "conv_channels")
# Settings that only change how a trained model predicts: evaluate may override them.
_TEST_TIME_FIELDS = ("test_time_shifts", "test_time_views", "transductive_steps")


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
    _add_source_options(p, required=True)
    _add_config_options(p)
    p.add_argument("--out", default="checkpoints/model", help="checkpoint directory (or .zip) to write")
    p.add_argument("--resume", help="continue training from this checkpoint")
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
    p.add_argument("--support-shots", type=ranged(int, 1, 100), help="override the checkpoint's support shots")
    for field in _TEST_TIME_FIELDS:
        bounds = OneShotMetaLearningConfig.field_range(field)
        kind = {"choices": VIEW_KINDS} if bounds is None else {"type": ranged(int, *bounds)}
        p.add_argument(
            "--" + field.replace("_", "-"), **kind, help=f"override the checkpoint's {field}: {FIELD_HELP[field]}"
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
    _add_output_options(p)

    p = sub.add_parser("discover", help="discover causal mechanisms of a checkpoint by intervention")
    p.add_argument("--checkpoint", required=True)
    _add_source_options(p, required=False)
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="split the tasks come from")
    p.add_argument(
        "--tasks",
        type=ranged(int, 1, 10_000),
        default=20,
        help="tasks to intervene on (the last quarter is held out)",
    )
    p.add_argument("--task-seed", type=ranged(int, *_SEED_RANGE), default=0, help="seed of the task draw")
    p.add_argument("--threshold", type=ranged(float, 0, 1), help="least strength kept (default: the checkpoint's)")
    p.add_argument("--export", help="write the versioned mechanisms JSON here")
    p.add_argument("--graph-html", help="write the mechanism graph as self-contained HTML here")
    p.add_argument("--save", action="store_true", help="store the mechanisms in the checkpoint")
    _add_output_options(p)

    p = sub.add_parser("bench", help="run a benchmark script from benchmarks/ (see BENCHMARKS.md)")
    p.add_argument("name", help="benchmark name, e.g. sinusoid_quality (list: python -m engine bench list)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark (--help for its own)")
    return parser


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", help="write results as JSON to this path ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


def _build_source(args: argparse.Namespace, engine: OneShotMetaLearningEngine | None, n_way: int) -> TaskSource:
    if args.source is None:
        recorded = (engine.source_info if engine else {}) or {}
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
        return make_task_source(recorded["cli_source"], **kw)
    return make_task_source(args.source, **_source_kwargs(args, n_way))


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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(result: dict[str, Any], args: argparse.Namespace) -> None:
    text = json.dumps(result, indent=2, default=_json_default)
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


def cmd_train(args: argparse.Namespace) -> dict[str, Any] | None:
    """Meta-train and write the checkpoint. Under torchrun every process trains its share of each
    meta-batch (``engine.distributed``); only rank 0 shows progress and writes files."""
    if args.resume:
        engine = OneShotMetaLearningEngine.from_checkpoint(args.resume, device=args.device or "auto")
        overrides = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(OneShotMetaLearningConfig)
            if getattr(args, f.name, None) is not None
        }
        for name in _ARCHITECTURE:
            if name in overrides and str(overrides[name]).upper() != str(getattr(engine.config, name)).upper():
                raise ConfigError(
                    f"--{name.replace('_', '-')} cannot change when resuming: the checkpoint's weights "
                    f"were built for {name}={getattr(engine.config, name)} (train a new model instead)"
                )
        engine.config = engine.config.replace(**overrides)
        engine.learner.config = engine.config
    else:
        engine = OneShotMetaLearningEngine(_config_from_args(args))
    source = make_task_source(args.source, **_source_kwargs(args, engine.config.n_way))
    if not args.resume:
        engine.initialize_for_source(source)
    elif engine._incompatible(source):
        # meta_train would silently start a fresh model: say so instead.
        assert engine.model is not None
        raise TaskError(
            f"--resume: the checkpoint's model takes {engine.task_type} tasks with input shape "
            f"{list(engine.model.input_shape)} and {engine.output_dim} output(s), but --source {args.source} gives "
            f"{source.task_type} tasks with input shape {list(source.input_shape)} and {source.output_dim}"
        )
    engine.source_info = {
        **source.describe(),
        "cli_source": args.source,
        "cli_args": _jsonable(_source_kwargs(args, engine.config.n_way)),
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
    if not main_process:
        return None
    out = engine.save_sync(args.out)
    evaluation = engine.evaluate_sync(source, "test", episodes=50)
    return {
        "command": "train",
        "checkpoint": str(out),
        "world_size": distributed.world()[1],
        "config": engine.config.to_dict(),
        "source": engine.source_info,
        "iterations": len(history["iteration"]),
        "final_train_loss": history["train_loss"][-1] if history["train_loss"] else None,
        "message": history["message"],
        "test": evaluation,
        "history": history,
    }


def _jsonable(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v) for k, v in kw.items()}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    overrides = {k: getattr(args, k) for k in ("support_shots", *_TEST_TIME_FIELDS) if getattr(args, k) is not None}
    if overrides:
        engine.config = engine.config.replace(**overrides)
        engine.learner.config = engine.config
    source = _build_source(args, engine, engine.config.n_way)
    result = engine.evaluate_sync(source, args.split, episodes=args.episodes, steps=args.steps, seed=args.seed)
    return {"command": "evaluate", "checkpoint": args.checkpoint, "split": args.split, **result}


def cmd_adapt(args: argparse.Namespace) -> dict[str, Any]:
    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    source = _build_source(args, engine, engine.config.n_way)
    task = source.tasks(args.split, 1, seed=args.task_seed)[0]
    result = engine.one_shot_adapt_sync(task, steps=args.steps, seed=args.task_seed)
    return {"command": "adapt", "checkpoint": args.checkpoint, **result}


def cmd_discover(args: argparse.Namespace) -> dict[str, Any]:
    from .mechanism_graph import render_graph_html

    engine = OneShotMetaLearningEngine.from_checkpoint(args.checkpoint)
    if args.threshold is not None:
        engine.config = engine.config.replace(mechanism_threshold=args.threshold)
        engine.learner.config = engine.config
    source = _build_source(args, engine, engine.config.n_way)
    tasks = source.tasks(args.split, args.tasks, seed=args.task_seed)
    bar = None if args.quiet else _StageBar()
    try:
        records = engine.discover_causal_patterns_sync(tasks, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.export:
        engine.export_mechanisms(args.export)
    if args.graph_html:
        truth = next((t.truth for t in tasks if getattr(t, "truth", None)), None)
        Path(args.graph_html).write_text(render_graph_html(engine.mechanism_graph(truth=truth)), encoding="utf-8")
    if args.save:
        engine.save_sync(args.checkpoint)
    return {
        "command": "discover",
        "checkpoint": args.checkpoint,
        "insights": engine.get_mechanism_insights(),
        "mechanisms": records,
        "report": engine.discovery_report,
        "priors": engine.causal_priors,
        "message": f"{len(records)} mechanisms kept",
    }


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


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "adapt": cmd_adapt,
    "discover": cmd_discover,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (argparse has printed why on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "train" and distributed.launched_world_size() > 1:
        return _main_distributed(args)
    try:
        result = COMMANDS[args.command](args)
    except (ConfigError, TaskError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        _emit(result, args)
    return 0


def _main_distributed(args: argparse.Namespace) -> int:
    """``train`` as one process of a torchrun group. A failing process says which rank failed and
    exits non-zero; torchrun then stops the others, and the checkpoint at --out stays the last good one."""
    import torch.distributed as dist

    try:
        distributed.init_from_env(args.device or "auto")
        result = cmd_train(args)
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
        distributed.shutdown()
    return 0
