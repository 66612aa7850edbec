"""Discovery scored against the truth (docs/DESIGN.md section 3).

Part 1, scm: for each of ``--graphs`` random ``--variables``-variable graphs (SCMTaskSource
seeds 0..graphs-1, sparse mechanism shifts on one non-target variable per task), meta-train
MAML_CAUSAL, run ``discover_causal_patterns`` on ``--tasks`` training tasks, and score

* FEATURE_TRANSFER edges into the output vs the target's true parents (precision, recall, F1);
* each task's identified intervened variables vs the truth (exact-set accuracy).

Part 2, images (``--image-iterations`` > 0): a prototypical learner on the Omniglot minimal
set; patches (7 x 7) ranked by their do(patch := background) strength on discovery tasks,
then on other held-out episodes the accuracy after occluding the top-k patches vs k random
patches (faithfulness: the top patches should matter more).

    python -m engine bench bench_scm_recovery --graphs 10 --iterations 1500
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine import create_one_shot_meta_learning_engine
from engine.discovery import faithfulness_check, score_against_truth
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource, SCMTaskSource

from .common import machine_line, mean_ci95, update_markdown_section, write_result


def run_scm(graphs: int, variables: int, iterations: int, tasks: int, query_points: int, seed: int) -> dict:
    rows = []
    for g in range(graphs):
        source = SCMTaskSource(num_variables=variables, seed=g)
        eng = create_one_shot_meta_learning_engine(
            num_meta_iterations=iterations,
            meta_batch_size=16,
            inner_lr=0.1,
            outer_lr=0.003,
            num_inner_steps=3,
            adaptation_steps=3,
            eval_interval=max(1, iterations),
            seed=seed,
            device="cpu",
        )
        t0 = time.perf_counter()
        eng.meta_train_sync(source)
        train_s = time.perf_counter() - t0
        task_list = source.tasks("train", tasks, seed=1000 + g)
        t1 = time.perf_counter()
        records = eng.discover_causal_patterns_sync(task_list, query_points=query_points)
        discover_s = time.perf_counter() - t1
        score = score_against_truth(records, eng.discovery_report, task_list)
        inv = eng.discovery_report["invariance"]
        row = {
            "graph_seed": g,
            **score,
            "icp_causal_features": inv["causal_features"],
            "icp_fallback": inv["fallback"],
            "train_seconds": train_s,
            "discover_seconds": discover_s,
            "kept_mechanisms": len(records),
        }
        rows.append(row)
        print(
            f"graph {g}: F1 {score['f1']:.2f} (pred {score['predicted_parents']} vs {score['true_parents']}), "
            f"intervened acc {score['intervened_accuracy']:.2f}, discovery {discover_s:.1f}s",
            flush=True,
        )
    f1, f1_ci = mean_ci95([r["f1"] for r in rows])
    acc, acc_ci = mean_ci95([r["intervened_accuracy"] for r in rows])
    return {
        "rows": rows,
        "mean_f1": f1,
        "mean_f1_ci95": f1_ci,
        "mean_intervened_accuracy": acc,
        "mean_intervened_accuracy_ci95": acc_ci,
        "mean_precision": float(np.mean([r["precision"] for r in rows])),
        "mean_recall": float(np.mean([r["recall"] for r in rows])),
        "mean_discover_seconds": float(np.mean([r["discover_seconds"] for r in rows])),
    }


def run_images(iterations: int, tasks: int, eval_episodes: int, ks: list[int], seed: int) -> dict:
    source = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=5)
    eng = create_one_shot_meta_learning_engine(
        algorithm="PROTOTYPICAL_CAUSAL",
        num_meta_iterations=iterations,
        meta_batch_size=8,
        outer_lr=0.001,
        conv_channels=32,
        eval_interval=max(1, iterations),
        mechanism_threshold=0.0,  # rank every patch
        seed=seed,
        device="cpu",
    )
    t0 = time.perf_counter()
    eng.meta_train_sync(source)
    train_s = time.perf_counter() - t0
    disc_tasks = source.tasks("val", tasks, seed=seed + 1)
    t1 = time.perf_counter()
    records = eng.discover_causal_patterns_sync(disc_tasks, types=["FEATURE_TRANSFER"])
    discover_s = time.perf_counter() - t1
    episodes = source.episodes("test", eval_episodes, 1, 5, seed=seed + 2)
    checks = [faithfulness_check(eng.learner, episodes, records, k, eng.config.adaptation_steps, seed=seed) for k in ks]
    for c in checks:
        print(
            f"images k={c['k']}: clean {c['clean_accuracy']:.3f}, top-k occluded {c['top_k_accuracy']:.3f}, "
            f"random-k occluded {c['random_k_accuracy']:.3f}",
            flush=True,
        )
    return {"train_seconds": train_s, "discover_seconds": discover_s, "iterations": iterations, "checks": checks}


def markdown(result: dict) -> str:
    s = result["scm"]
    st = result["settings"]
    lines = [
        "## Discovery against the truth (scm parents, intervened variables, image faithfulness)",
        "",
        f"{st['graphs']} random {st['variables']}-variable graphs; MAML_CAUSAL meta-trained {st['iterations']} "
        f"iterations per graph; discovery on {st['tasks']} tasks ({st['query_points']} query points each).",
        "",
        "| measure | mean ± 95% interval | target |",
        "|---|---|---|",
        f"| F1 of FEATURE_TRANSFER -> output vs true parents | {s['mean_f1']:.2f} ± {s['mean_f1_ci95']:.2f} | >= 0.8 |",
        f"| precision / recall | {s['mean_precision']:.2f} / {s['mean_recall']:.2f} | |",
        f"| intervened variables identified (exact set per task) | {s['mean_intervened_accuracy']:.2f} ± "
        f"{s['mean_intervened_accuracy_ci95']:.2f} | >= 0.8 |",
        f"| discovery time (20 tasks) | {s['mean_discover_seconds']:.1f} s | seconds |",
    ]
    if result.get("images"):
        lines += [
            "",
            "| Omniglot 5-way 1-shot, occluded patches | clean | top-k by strength | k random |",
            "|---|---|---|---|",
        ]
        for c in result["images"]["checks"]:
            lines.append(
                f"| k = {c['k']} | {c['clean_accuracy']:.3f} | {c['top_k_accuracy']:.3f} | "
                f"{c['random_k_accuracy']:.3f} ± {c['random_k_accuracy_std']:.3f} |"
            )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", type=int, default=10)
    p.add_argument("--variables", type=int, default=6)
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--query-points", type=int, default=150)
    p.add_argument("--image-iterations", type=int, default=300, help="0 skips the image part")
    p.add_argument("--image-tasks", type=int, default=20)
    p.add_argument("--image-episodes", type=int, default=100)
    p.add_argument("--ks", default="1,2,4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {
        "settings": {
            "graphs": args.graphs,
            "variables": args.variables,
            "iterations": args.iterations,
            "tasks": args.tasks,
            "query_points": args.query_points,
            "image_iterations": args.image_iterations,
        }
    }
    result["scm"] = run_scm(args.graphs, args.variables, args.iterations, args.tasks, args.query_points, args.seed)
    if args.image_iterations > 0:
        ks = [int(k) for k in args.ks.split(",")]
        result["images"] = run_images(args.image_iterations, args.image_tasks, args.image_episodes, ks, args.seed)
    print(
        f"mean F1 {result['scm']['mean_f1']:.3f}, mean intervened accuracy {result['scm']['mean_intervened_accuracy']:.3f}"
    )
    if not args.no_write:
        import json

        path = write_result("bench_scm_recovery", result, args.seed)
        saved = json.loads(path.read_text())
        update_markdown_section("bench_scm_recovery", markdown(saved))
    return result


if __name__ == "__main__":
    main()
