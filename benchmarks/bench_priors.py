"""Causal priors in one-shot adaptation (docs/DESIGN.md section 3).

For each scm family (``--families``: ``target_term``, a shift in one term of the target's
own mechanism; ``mechanism``, a sparse shift of one non-target variable) and each graph
seed, four learners with the same total number of meta-iterations N = pre + post:

* plain MAML: causal_weight 0, no priors, N iterations (the baseline of every claim);
* MAML_CAUSAL without priors: causal_weight ``--causal-weight``, N iterations;
* MAML_CAUSAL with priors: the same model after ``pre`` iterations; discovery on
  ``--discovery-tasks`` training tasks measures do(rate_k := 0) per mechanism and searches
  per-mechanism rates on them (``engine.priors``), checked on the held-out quarter; the
  rates are applied and meta-training continues ``post`` iterations with them (the inner
  loop uses the priors, so the initialisation learns to work with them);
* the same with priors applied after all N iterations and no further training.

One-shot error: MSE on 50 query points after adapting on 1 support point, over
``--tasks`` held-out test tasks per graph; means with 95% intervals over tasks, and the
ratio to plain MAML. The no-adaptation error of the plain model is given for reference.

    python -m engine bench bench_priors --graphs 3 --tasks 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine import create_one_shot_meta_learning_engine
from engine.tasks import SCMTaskSource

from .common import machine_line, mean_ci95, update_markdown_section, write_result


def _engine(cw: float, iterations: int, setting: dict, seed: int):
    return create_one_shot_meta_learning_engine(
        causal_weight=cw,
        enable_causal_priors=cw > 0,
        num_meta_iterations=iterations,
        meta_batch_size=16,
        outer_lr=0.003,
        eval_interval=max(1, iterations),
        seed=seed,
        device="cpu",
        **setting,
    )


def _errors(eng, episodes, steps=None) -> list[float]:
    return [eng.learner.evaluate_episode(ep, steps)["loss"] for ep in episodes]


def run_one(family: str, graph: int, setting: dict, args) -> dict:
    source = SCMTaskSource(seed=graph, shift_mode=family)
    episodes = source.episodes("test", args.tasks, 1, 50, seed=10_000 + graph)
    total = args.pre + args.post
    out: dict = {"family": family, "graph_seed": graph, "setting": setting}
    t0 = time.perf_counter()

    plain = _engine(0.0, total, setting, args.seed)
    plain.meta_train_sync(source)
    out["plain_maml"] = _errors(plain, episodes)
    out["no_adaptation"] = _errors(plain, episodes, steps=0)

    causal = _engine(args.causal_weight, args.pre, setting, args.seed)
    causal.meta_train_sync(source)
    discovery_tasks = source.tasks("train", args.discovery_tasks, seed=500 + graph)
    causal.discover_causal_patterns_sync(discovery_tasks, types=["REPRESENTATION_TRANSFER"])
    priors = causal.causal_priors or {}
    rates = causal.apply_causal_priors()
    out["rates"] = rates
    out["discovery_held_out"] = priors.get("held_out")
    # Continue with the priors in the inner loop (priors-aware meta-training).
    causal.config = causal.config.replace(num_meta_iterations=args.post)
    causal.learner.config = causal.config
    causal.meta_train_sync(source)
    out["causal_with_priors"] = _errors(causal, episodes)

    full = _engine(args.causal_weight, total, setting, args.seed)
    full.meta_train_sync(source)
    out["causal_no_priors"] = _errors(full, episodes)
    full.discover_causal_patterns_sync(discovery_tasks, types=["REPRESENTATION_TRANSFER"])
    out["late_rates"] = full.apply_causal_priors()
    out["causal_priors_after_training"] = _errors(full, episodes)
    out["seconds"] = time.perf_counter() - t0
    summary = {k: round(float(np.mean(out[k])), 4) for k in ARMS}
    print(family, graph, setting, summary, "rates", [round(r, 2) for r in rates], flush=True)
    return out


ARMS = ("plain_maml", "causal_no_priors", "causal_with_priors", "causal_priors_after_training", "no_adaptation")


def summarise(rows: list[dict]) -> list[dict]:
    """Per (family, setting): mean error with 95% interval over all tasks of all graphs."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], tuple(sorted(r["setting"].items()))), []).append(r)
    out = []
    for (family, setting), rs in groups.items():
        entry = {"family": family, "setting": dict(setting), "graphs": [r["graph_seed"] for r in rs]}
        for arm in ARMS:
            values = [v for r in rs for v in r[arm]]
            entry[arm], entry[f"{arm}_ci95"] = mean_ci95(values)
            entry["tasks"] = len(values)
        base = entry["plain_maml"]
        for arm in ARMS:
            entry[f"{arm}_ratio"] = entry[arm] / base
        # Paired interval of the ratio's numerator: per-task difference priors - plain.
        diff = [a - b for r in rs for a, b in zip(r["causal_with_priors"], r["plain_maml"], strict=True)]
        entry["priors_minus_plain"], entry["priors_minus_plain_ci95"] = mean_ci95(diff)
        out.append(entry)
    return out


def markdown(result: dict) -> str:
    st = result["settings"]
    lines = [
        "## Causal priors: one-shot error on held-out scm tasks",
        "",
        f"Graph seeds {st['graphs']}, {st['tasks']} held-out test tasks per graph (1 support point, 50 query "
        f"points), every learner {st['pre'] + st['post']} meta-iterations (priors: discovered after {st['pre']}, "
        f"then {st['post']} more with the priors in the inner loop). MSE, mean ± 95% interval over tasks; "
        "ratio = error / plain MAML's.",
        "",
        "| family | inner lr x steps | plain MAML | MAML_CAUSAL no priors | with priors | priors after training "
        "| no adaptation | ratio with priors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        s = e["setting"]
        cells = " | ".join(f"{e[a]:.3f} ± {e[a + '_ci95']:.3f}" for a in ARMS)
        lines.append(
            f"| {e['family']} | {s['inner_lr']} x {s['adaptation_steps']} | {cells} | "
            f"{e['causal_with_priors_ratio']:.2f} |"
        )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


SETTINGS = {
    "default": {"inner_lr": 0.01, "num_inner_steps": 5, "adaptation_steps": 10},
    "large": {"inner_lr": 0.1, "num_inner_steps": 3, "adaptation_steps": 3},
}


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="target_term,mechanism")
    p.add_argument("--settings", default="default,large", help=f"inner-loop settings among {list(SETTINGS)}")
    p.add_argument("--graphs", type=int, default=3, help="graph seeds 0..graphs-1")
    p.add_argument("--graph-seeds", help="comma-separated graph seeds (overrides --graphs)")
    p.add_argument("--tasks", type=int, default=200, help="held-out test tasks per graph")
    p.add_argument("--pre", type=int, default=1000, help="iterations before discovery")
    p.add_argument("--post", type=int, default=500, help="iterations after the priors are applied")
    p.add_argument("--discovery-tasks", type=int, default=24)
    p.add_argument("--causal-weight", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.graph_seeds.split(",")] if args.graph_seeds else list(range(args.graphs))
    rows = []
    for family in args.families.split(","):
        for name in args.settings.split(","):
            for graph in seeds:
                rows.append(run_one(family, graph, SETTINGS[name], args))
    result = {
        "settings": {
            "graphs": seeds,
            "tasks": args.tasks,
            "pre": args.pre,
            "post": args.post,
            "discovery_tasks": args.discovery_tasks,
            "causal_weight": args.causal_weight,
        },
        "summary": summarise(rows),
        "rows": rows,
    }
    for e in result["summary"]:
        print(
            f"{e['family']} {e['setting']}: plain {e['plain_maml']:.3f}, priors {e['causal_with_priors']:.3f} "
            f"(ratio {e['causal_with_priors_ratio']:.2f}), no priors {e['causal_no_priors']:.3f}, "
            f"no adaptation {e['no_adaptation']:.3f}"
        )
    if not args.no_write:
        import json

        path = write_result("bench_priors", result, args.seed)
        saved = json.loads(path.read_text())
        update_markdown_section("bench_priors", markdown(saved))
    return result


if __name__ == "__main__":
    main()
