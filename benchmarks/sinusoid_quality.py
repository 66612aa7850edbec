"""Sinusoid quality against the published numbers (MAML protocol; Li et al. 2017 Table 1).

Protocol: 1-40-40-1 ReLU MLP (our CausalMetaModel with K mechanisms splitting the second
hidden layer, plus K gates), one inner step with inner_lr 0.01, meta-trained with 5 shots
(5 support + 5 query points per task as in MAML's code: K for both), meta-batch 25, Adam.
Evaluation: held-out tasks, K-shot support, one inner step, MSE on 100 query points,
mean and 95% interval over ``--tasks`` tasks. Four learners: plain MAML (causal_weight 0,
no priors), MAML_CAUSAL, plain Meta-SGD, GRADIENT_CAUSAL.

    python -m engine bench sinusoid_quality --iterations 20000 --tasks 600
"""

from __future__ import annotations

import argparse
import time

import torch

from engine import OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.tasks import SinusoidTaskSource

from .common import machine_line, mean_ci95, update_markdown_section, write_result

REFERENCE_5SHOT = {"MAML": 1.13, "Meta-SGD": 0.90}
VARIANTS = {
    "MAML (plain)": dict(algorithm="MAML_CAUSAL", causal_weight=0.0, enable_causal_priors=False),
    "MAML_CAUSAL": dict(algorithm="MAML_CAUSAL", causal_weight=0.5, enable_causal_priors=True),
    "Meta-SGD (plain)": dict(algorithm="GRADIENT_CAUSAL", causal_weight=0.0, enable_causal_priors=False),
    "GRADIENT_CAUSAL": dict(algorithm="GRADIENT_CAUSAL", causal_weight=0.5, enable_causal_priors=True),
}


def build_engine(variant: str, iterations: int, seed: int) -> OneShotMetaLearningEngine:
    """A fresh engine with the protocol's settings for one of ``VARIANTS`` (untrained)."""
    return create_one_shot_meta_learning_engine(
        **VARIANTS[variant],
        inner_lr=0.01,
        outer_lr=0.001,
        num_inner_steps=1,
        adaptation_steps=1,
        support_shots=5,
        query_shots=5,
        meta_batch_size=25,
        num_meta_iterations=iterations,
        hidden_dim=40,
        num_mechanisms=4,
        eval_interval=max(1, iterations // 10),
        val_episodes=50,
        seed=seed,
        device="cpu",
    )


def heldout_mse(
    eng: OneShotMetaLearningEngine, source: SinusoidTaskSource, shots: int, tasks: int, steps: int = 1
) -> list[float]:
    """Per-task MSE on 100 query points after ``steps`` inner steps (the protocol: one) from ``shots``
    support points, on held-out test tasks (the engine's config is restored afterwards)."""
    saved = eng.config
    eng.config = eng.config.replace(support_shots=shots, query_shots=100)
    eng.learner.config = eng.config
    try:
        return [
            eng.learner.evaluate_episode(ep, steps=steps)["mse"]
            for ep in source.episodes("test", tasks, shots, 100, seed=10_000 + shots)
        ]
    finally:
        eng.config = saved
        eng.learner.config = saved


def run(iterations: int, tasks: int, shots: list[int], seed: int, variants: list[str]) -> dict:
    source = SinusoidTaskSource()
    rows = []
    for name in variants:
        eng = build_engine(name, iterations, seed)
        t0 = time.perf_counter()
        eng.meta_train_sync(source)
        train_s = time.perf_counter() - t0
        row = {"variant": name, "train_seconds": train_s, "iterations": iterations}
        for k in shots:
            row[f"mse_{k}shot"], row[f"ci95_{k}shot"] = mean_ci95(heldout_mse(eng, source, k, tasks))
        rows.append(row)
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return {"rows": rows, "settings": {"iterations": iterations, "tasks": tasks, "shots": shots}}


def markdown(result: dict, m: dict) -> str:
    shots = result["settings"]["shots"]
    head = "| learner | " + " | ".join(f"{k}-shot MSE" for k in shots) + " | reference 5-shot | meta-training |"
    lines = [
        "## Sinusoid regression (MAML protocol)",
        "",
        f"{result['settings']['iterations']} meta-iterations of 25 tasks, one inner step (lr 0.01), "
        f"{result['settings']['tasks']} held-out tasks per column, 100 query points each; mean ± 95% interval.",
        "",
        head,
        "|" + "---|" * (len(shots) + 3),
    ]
    for r in result["rows"]:
        ref = REFERENCE_5SHOT["Meta-SGD" if "SGD" in r["variant"] or "GRADIENT" in r["variant"] else "MAML"]
        cells = " | ".join(f"{r[f'mse_{k}shot']:.3f} ± {r[f'ci95_{k}shot']:.3f}" for k in shots)
        lines.append(f"| {r['variant']} | {cells} | {ref:.2f} | {r['train_seconds']:.0f} s |")
    lines += ["", f"Machine: {machine_line(m)}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=20000)
    p.add_argument("--tasks", type=int, default=600)
    p.add_argument("--shots", default="5,10,20")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(
        args.iterations, args.tasks, [int(s) for s in args.shots.split(",")], args.seed, args.variants.split(",")
    )
    if not args.no_write:
        path = write_result("sinusoid_quality", result, args.seed)
        import json

        saved = json.loads(path.read_text())
        update_markdown_section("sinusoid_quality", markdown(saved, saved["machine"]))
    return result


if __name__ == "__main__":
    main()
