"""Causal structure from adaptation speed (docs/DESIGN.md section 3).

Part 1: Bengio et al. 2019's two-variable experiment (categorical A -> B, N = 10,
interventions on the marginal of A, structural parameter gamma trained on the online
adaptation log-likelihood; ``engine.causal_direction.run_two_variable_experiment``), over
``--seeds`` seeds: the median sigma(gamma) at episodes 100, 200, 400 and 1000. Published:
about 0.9 near 400 episodes and 0.99 near 1000.

Part 2: graphs of scm families with 5 to 8 variables learned from ``--tasks`` interventional
tasks (``learn_scm_graph``), structural Hamming distance against the truth, beside
causal-learn's PC (Fisher-z, alpha 0.05) on the same pooled data.

    python -m engine bench bench_causal_direction --seeds 10 --episodes 1000 --graphs 5
"""

from __future__ import annotations

import argparse

import numpy as np

from engine.causal_direction import learn_scm_graph, run_two_variable_experiment
from engine.tasks import SCMTaskSource

from .common import machine_line, mean_ci95, update_markdown_section, write_result


def run_graphs(sizes: list[int], graphs: int, tasks: int, samples: int, seed: int) -> dict:
    rows = []
    for d in sizes:
        for g in range(graphs):
            out = learn_scm_graph(
                SCMTaskSource(num_variables=d, seed=g), n_tasks=tasks, samples_per_task=samples, seed=seed
            )
            rows.append({k: v for k, v in out.items() if k not in ("adjacency", "pc_adjacency")} | {"graph_seed": g})
            print(
                f"{d} variables, graph {g}: SHD {out['shd']} (PC {out['pc_shd']}), {out['true_edges']} true edges, "
                f"targets identified {out['target_accuracy']:.2f}",
                flush=True,
            )
    per_size = {}
    for d in sizes:
        rs = [r for r in rows if r["num_variables"] == d]
        shd, shd_ci = mean_ci95([r["shd"] for r in rs])
        pc, pc_ci = mean_ci95([r["pc_shd"] for r in rs])
        per_size[str(d)] = {
            "shd": shd,
            "shd_ci95": shd_ci,
            "pc_shd": pc,
            "pc_shd_ci95": pc_ci,
            "true_edges": float(np.mean([r["true_edges"] for r in rs])),
            "target_accuracy": float(np.mean([r["target_accuracy"] for r in rs])),
            "seconds": float(np.mean([r["elapsed_s"] for r in rs])),
        }
    return {"rows": rows, "per_size": per_size}


def markdown(result: dict) -> str:
    tv = result["two_variable"]
    st = result["settings"]
    lines = [
        "## Causal direction from adaptation speed",
        "",
        f"Two variables (N = {tv['n']}), {len(tv['seeds'])} seeds, {tv['transfer_samples']} transfer samples per "
        f"episode, adaptation rate {tv['adapt_lr']}, meta rate {tv['meta_lr']}: median sigma(gamma).",
        "",
        "| episode | 100 | 200 | 400 | 1000 |",
        "|---|---|---|---|---|",
        "| ours | "
        + " | ".join(f"{tv['median_at'].get(str(e), float('nan')):.3f}" for e in (100, 200, 400, 1000))
        + " |",
        "| Bengio et al. 2019 | | | about 0.9 | about 0.99 |",
        "",
        f"Graphs learned from {st['tasks']} interventional tasks of {st['samples']} samples ({st['graphs']} graphs "
        "per size); structural Hamming distance, mean ± 95% interval:",
        "",
        "| variables | true edges | ours | PC (Fisher-z) | task targets identified |",
        "|---|---|---|---|---|",
    ]
    for d, s in result["graphs"]["per_size"].items():
        lines.append(
            f"| {d} | {s['true_edges']:.1f} | {s['shd']:.2f} ± {s['shd_ci95']:.2f} | "
            f"{s['pc_shd']:.2f} ± {s['pc_shd_ci95']:.2f} | {s['target_accuracy']:.2f} |"
        )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--sizes", default="5,6,7,8")
    p.add_argument("--graphs", type=int, default=5, help="graphs per size")
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    two = run_two_variable_experiment(seeds=args.seeds, episodes=args.episodes)
    print("two variables, median sigma(gamma):", {k: round(v, 4) for k, v in two["median_at"].items()}, flush=True)
    two_out = {k: v for k, v in two.items() if k != "sigma"}  # the median curve is enough on disk
    result = {
        "settings": {"tasks": args.tasks, "samples": args.samples, "graphs": args.graphs, "sizes": args.sizes},
        "two_variable": two_out,
        "graphs": run_graphs([int(s) for s in args.sizes.split(",")], args.graphs, args.tasks, args.samples, args.seed),
    }
    if not args.no_write:
        import json

        path = write_result("bench_causal_direction", result, args.seed)
        saved = json.loads(path.read_text())
        update_markdown_section("bench_causal_direction", markdown(saved))
    return result


if __name__ == "__main__":
    main()
