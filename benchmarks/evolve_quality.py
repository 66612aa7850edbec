"""Config evolution against the default config at the same training budget (engine/evolve.py).

Per task family (sinusoid, scm regression): an Optuna study of ``--trials`` trials, each
meta-training MAML_CAUSAL for ``--budget`` iterations from the library's default settings
(episode sizes fixed below) and scored on validation tasks. Then the default config and the
evolved one are each meta-trained for the same ``--budget`` iterations with ``--seeds`` seeds
and scored on ``--tasks`` held-out test tasks per seed (the study never saw the test split):
MSE mean with its 95% interval over all test tasks, and the paired difference.

    python -m engine bench evolve_quality --trials 12 --budget 150 --seeds 3 --tasks 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optuna
import torch

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.evolve import evolve_config
from engine.tasks import make_task_source

from .common import machine_line, mean_ci95, update_markdown_section, write_result

# Episode sizes and batch fixed for both configs; every searched field starts at the library default.
FIXED = dict(support_shots=5, query_shots=10, meta_batch_size=10, val_episodes=10, device="cpu")
SOURCES = {"sinusoid": {}, "scm": {"task_type": "regression"}}


def test_mse(config: OneShotMetaLearningConfig, source, budget: int, seed: int, tasks: int) -> list[float]:
    """Meta-train ``config`` for ``budget`` iterations with ``seed``; MSE on each of ``tasks`` test tasks."""
    eng = OneShotMetaLearningEngine(config.replace(num_meta_iterations=budget, seed=seed))
    eng.meta_train_sync(source)
    episodes = source.episodes("test", tasks, config.support_shots, config.query_shots, seed=50_000 + seed)
    return [eng.learner.evaluate_episode(ep.to(eng.device))["mse"] for ep in episodes]


def run_source(name: str, trials: int, budget: int, seeds: int, tasks: int) -> dict:
    source = make_task_source(name, **SOURCES[name])
    default = OneShotMetaLearningConfig(**FIXED)
    t0 = time.perf_counter()
    result = evolve_config(source, default, n_trials=trials, budget=budget, objective_episodes=50)
    evolve_s = time.perf_counter() - t0
    rows = {}
    for label, cfg in (("default", default), ("evolved", result.config)):
        per_seed = [test_mse(cfg, source, budget, s, tasks) for s in range(seeds)]
        flat = [v for vals in per_seed for v in vals]
        mean, ci = mean_ci95(flat)
        rows[label] = {"mse": mean, "ci95": ci, "per_seed": [float(np.mean(v)) for v in per_seed], "values": flat}
    diff_mean, diff_ci = mean_ci95(np.array(rows["evolved"]["values"]) - np.array(rows["default"]["values"]))
    for row in rows.values():
        row.pop("values")
    counts = result.counts()
    out = {
        "source": name,
        "evolve_seconds": evolve_s,
        "validation_mse_best": result.value,
        "validation_mse_default": next(t["value"] for t in result.trials if t["origin"] == "current config"),
        "evolved_params": {k: v for k, v in result.config.to_dict().items() if k in result.trials[0]["params"]},
        "counts": counts,
        "test": rows,
        "difference": {"mse": diff_mean, "ci95": diff_ci},
    }
    print(name, {k: v for k, v in out.items() if k != "evolved_params"}, flush=True)
    return out


def markdown(result: dict, m: dict) -> str:
    s = result["settings"]
    lines = [
        "## Config evolution (Optuna) against the default config",
        "",
        f"MAML_CAUSAL from the library's default settings (5-shot, query 10, meta-batch 10). A study of "
        f"{s['trials']} trials of {s['budget']} meta-iterations each, scored on 50 validation tasks (median "
        f"pruning); then both configs meta-trained for the same {s['budget']} iterations with {s['seeds']} seeds, "
        f"MSE on {s['tasks']} held-out test tasks per seed (mean ± 95% interval over all of them; the difference "
        "is paired task by task; the interval is over tasks, so the per-seed means show the spread between "
        "training runs; study time is wall time on a shared machine that was running other jobs).",
        "",
        "| tasks | default MSE | evolved MSE | evolved − default | per-seed MSE default / evolved | validation MSE "
        "default → best | trials (complete / pruned) | study time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        d, e, diff = r["test"]["default"], r["test"]["evolved"], r["difference"]
        lines.append(
            f"| {r['source']} | {d['mse']:.3f} ± {d['ci95']:.3f} | {e['mse']:.3f} ± {e['ci95']:.3f} | "
            f"{diff['mse']:+.3f} ± {diff['ci95']:.3f} | {_seeds(d)} / {_seeds(e)} | {r['validation_mse_default']:.3f} → "
            f"{r['validation_mse_best']:.3f} | {r['counts']['COMPLETE']} / {r['counts']['PRUNED']} | "
            f"{r['evolve_seconds']:.0f} s |"
        )
    lines.append("")
    for r in result["rows"]:
        params = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["evolved_params"].items()
        )
        lines.append(f"Evolved on {r['source']}: {params}.")
        lines.append("")
    lines.append(f"Machine: {machine_line(m)}. Command: `{result['command']}`.")
    return "\n".join(lines)


def _seeds(row: dict) -> str:
    return ", ".join(f"{v:.2f}" for v in row["per_seed"])


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--budget", type=int, default=150)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--sources", default=",".join(SOURCES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = [run_source(n, args.trials, args.budget, args.seeds, args.tasks) for n in args.sources.split(",")]
    settings = {"trials": args.trials, "budget": args.budget, "seeds": args.seeds, "tasks": args.tasks}
    result = {"rows": rows, "settings": settings}
    if not args.no_write:
        path = write_result("evolve_quality", result, 0)
        import json

        saved = json.loads(path.read_text())
        update_markdown_section("evolve_quality", markdown(saved, saved["machine"]))
    return result


if __name__ == "__main__":
    main()
