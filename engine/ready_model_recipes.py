"""The committed recipes that make the ready models in ``assets/models/`` (``python -m engine ready-models``).

One function per model; each trains, writes the checkpoint folder with ``save_sync`` and returns
what it measured. The benchmark recipes are imported from ``benchmarks/`` (never copied), so a
ready model is exactly what its benchmark measures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .engine import OneShotMetaLearningEngine
from .ready_models import READY_DIR, ready_model
from .tasks import make_task_source

REPO = Path(__file__).resolve().parents[1]
SINUSOID_ITERATIONS = 20_000
SINUSOID_EVAL_TASKS = 600
SCM_SOURCE = {"num_variables": 6, "task_type": "regression", "seed": 0}  # the Tasks page's default SCM
SCM_ITERATIONS = 2_000
SCM_DISCOVERY_TASKS = 40
OMNIGLOT_ARGV = (
    "--train small1 --minutes 60 --decay-at 45 --episodes 400 --threads 1 --cpu-time --mirrors "
    "--augment-affine 1 --augment-shift 2 --seed 0 --save-checkpoints --tag ready --no-write"
).split()


def _import_benchmark(name: str) -> Any:
    import importlib

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"benchmarks.{name}")


def _significant(value: object, digits: int = 4) -> object:
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def compact_curves(folder: Path) -> None:
    """Rewrite the checkpoint's config.json with its training curves on one line, rounded to 4 significant
    digits: 20000 iterations of curves, indented at full precision, are 1.3 MB of the folder's 1.8."""
    path = folder / "config.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    history = meta.get("history")
    if not history:
        return
    for key, values in history.items():
        if isinstance(values, list):
            history[key] = [_significant(v) for v in values]
    marker = '"@@history@@"'
    text = json.dumps({**meta, "history": "@@history@@"}, indent=2)
    path.write_text(text.replace(marker, json.dumps(history, separators=(",", ":"))) + "\n", encoding="utf-8")


def save_ready(eng: OneShotMetaLearningEngine, out: Path) -> None:
    """Save without the optimiser state (a ready model is adapted, not resumed; loading Adam would cost the
    app's first page seconds of torch imports) and with compact curves."""
    eng.optimizer = None
    eng.save_sync(out)
    compact_curves(out)


def make_sinusoid_metasgd(out: Path) -> dict[str, Any]:
    """Meta-SGD with gates (the sinusoid_quality benchmark's GRADIENT_CAUSAL) at 20000 iterations."""
    bench = _import_benchmark("sinusoid_quality")
    common = _import_benchmark("common")
    source = make_task_source("sinusoid")
    eng = bench.build_engine("GRADIENT_CAUSAL", SINUSOID_ITERATIONS, seed=0)
    t0 = time.perf_counter()
    eng.meta_train_sync(source)
    train_s = time.perf_counter() - t0
    eng.source_info = {**source.describe(), "cli_source": "sinusoid", "cli_args": {}}
    save_ready(eng, out)
    quality = {}
    for shots in (1, 2, 5):
        mean, ci = common.mean_ci95(bench.heldout_mse(eng, source, shots, SINUSOID_EVAL_TASKS))
        quality[f"mse_{shots}shot"] = {"mean": mean, "ci95": ci, "tasks": SINUSOID_EVAL_TASKS}
    return {"train_seconds": train_s, "iterations": SINUSOID_ITERATIONS, "quality": quality}


def make_scm_mechanisms(out: Path) -> dict[str, Any]:
    """The app's SCM preset on the Tasks page's default SCM, longer, then discovery (kept in the checkpoint)."""
    from ui.config_form import build_config, preset_values  # the app's preset: no streamlit in that module

    source = make_task_source("scm", **SCM_SOURCE)
    values = {**preset_values("scm"), "num_meta_iterations": SCM_ITERATIONS, "save_mechanisms": True, "seed": 0}
    eng = OneShotMetaLearningEngine(build_config(values, source))
    t0 = time.perf_counter()
    eng.meta_train_sync(source)
    train_s = time.perf_counter() - t0
    eng.source_info = {**source.describe(), "cli_source": "scm", "cli_args": dict(SCM_SOURCE)}
    t1 = time.perf_counter()
    records = eng.discover_causal_patterns_sync(source.tasks("val", SCM_DISCOVERY_TASKS, seed=0))
    discover_s = time.perf_counter() - t1
    save_ready(eng, out)
    test = eng.evaluate_sync(source, "test", episodes=100)
    return {
        "train_seconds": train_s,
        "discovery_seconds": discover_s,
        "iterations": SCM_ITERATIONS,
        "mechanisms": len(records),
        "quality": {"test": test},
    }


def make_omniglot_proto(out: Path) -> dict[str, Any]:
    """The omniglot_quality benchmark's one-hour CPU recipe; its 60-minute checkpoint is saved here as a ready
    model (``save_ready``)."""
    bench = _import_benchmark("omniglot_quality")
    t0 = time.perf_counter()
    bench.main(list(OMNIGLOT_ARGV))
    train_s = time.perf_counter() - t0
    made = bench.checkpoint_path("small1", "ready", 60)
    if not (made / "model.safetensors").is_file():
        raise RuntimeError(f"the Omniglot benchmark left no checkpoint at {made}")
    save_ready(OneShotMetaLearningEngine.from_checkpoint(made, device="cpu"), out)
    return {"train_seconds": train_s, "benchmark_argv": list(OMNIGLOT_ARGV)}


RECIPES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "omniglot_proto": make_omniglot_proto,
    "sinusoid_metasgd": make_sinusoid_metasgd,
    "scm_mechanisms": make_scm_mechanisms,
}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_ready_models(names: list[str] | None = None, root: Path = READY_DIR) -> dict[str, dict[str, Any]]:
    """Make the named ready models (all when ``names`` is empty) under ``root``; each folder gets a
    ``ready.json`` with what its recipe measured. Unknown names are refused before anything runs."""
    names = list(names or RECIPES)
    for name in names:
        ready_model(name)  # a clear error naming the known ones
    results = {}
    for name in names:
        out = root / name
        record = RECIPES[name](out)
        record = {"name": name, "command": f"python -m engine ready-models --only {name}", **record}
        record["bytes"] = folder_bytes(out)
        (out / "ready.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        results[name] = record
        print(f"{name}: {json.dumps(record, default=str)}", flush=True)
    return results
