"""The engine on a GPU beside the CPU: each learner's seeded meta-training, held-out
evaluation, one-shot adaptation and checkpoint round trip, on both devices.

For each case the same seeded run (same tasks, same initial weights) trains on the CPU and
on CUDA. Reported per device: meta-training iterations per second, the first and last
training losses, the held-out metric before and after training, and the one-shot
adaptation time the engine reports (it waits for the GPU). Beside them: the largest
difference between the two devices' loss curves over the first iterations (the same
computation in another order of floating-point operations: small, not zero), and whether a
checkpoint saved from CUDA loads on the CPU with the same held-out metric.

    python -m engine bench gpu_check --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource, SinusoidTaskSource, TaskSource

from .common import RESULTS, machine_line, pick_device, update_markdown_section, write_result

SETTINGS = {
    "sinusoid": dict(inner_lr=0.01, outer_lr=0.003, support_shots=5, query_shots=10, meta_batch_size=10, hidden_dim=40),
    "omniglot 5-way 1-shot": dict(
        inner_lr=0.4, outer_lr=0.003, support_shots=1, query_shots=5, meta_batch_size=4, hidden_dim=64, conv_channels=32
    ),
}
CASES = [
    ("sinusoid", "MAML_CAUSAL"),
    ("sinusoid", "GRADIENT_CAUSAL"),
    ("omniglot 5-way 1-shot", "MAML_CAUSAL"),
    ("omniglot 5-way 1-shot", "GRADIENT_CAUSAL"),
    ("omniglot 5-way 1-shot", "PROTOTYPICAL_CAUSAL"),
    ("omniglot 5-way 1-shot", "RELATION_CAUSAL"),
]
COMPARED = 5  # first training losses compared between the devices


def source(case: str) -> TaskSource:
    if case == "sinusoid":
        return SinusoidTaskSource()
    return ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=5)


def one_device(case: str, algorithm: str, device: str, iterations: int, episodes: int) -> dict:
    """Train, evaluate, adapt once; returns the numbers and the engine."""
    src = source(case)
    config = OneShotMetaLearningConfig(
        algorithm=algorithm,
        num_meta_iterations=iterations,
        eval_interval=iterations,
        val_episodes=10,
        adaptation_steps=5,
        seed=0,
        device=device,
        **SETTINGS[case],
    )
    eng = OneShotMetaLearningEngine(config)
    eng.initialize_for_source(src)
    metric = eng.learner.metric_name()
    before = eng.evaluate_sync(src, "test", episodes)[metric]
    t0 = time.perf_counter()
    history = eng.meta_train_sync(src)
    seconds = time.perf_counter() - t0
    after = eng.evaluate_sync(src, "test", episodes)[metric]
    task = src.tasks("test", 1, seed=7)[0]
    adapt_ms = []
    for i in range(6):  # the first call warms up kernels; the median of the rest is reported
        adapt_ms.append(1e3 * eng.one_shot_adapt_sync(task, seed=100 + i)["adaptation_time"])
    return {
        "engine": eng,
        "source": src,
        "iterations_per_s": iterations / seconds,
        "losses": history["train_loss"],
        "metric_name": metric,
        "metric_before": before,
        "metric_after": after,
        "adapt_ms": sorted(adapt_ms[1:])[len(adapt_ms[1:]) // 2],
    }


def check(case: str, algorithm: str, device: torch.device, iterations: int, episodes: int) -> dict:
    cpu = one_device(case, algorithm, "cpu", iterations, episodes)
    gpu = one_device(case, algorithm, str(device), iterations, episodes)
    diffs = [abs(a - b) for a, b in zip(cpu["losses"][:COMPARED], gpu["losses"][:COMPARED], strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = gpu["engine"].save_sync(Path(tmp) / "gpu_checkpoint")
        back = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
        reloaded = back.evaluate_sync(gpu["source"], "test", episodes)[cpu["metric_name"]]
    row = {"case": case, "learner": algorithm, "iterations": iterations, "metric": cpu["metric_name"]}
    for name, r in (("cpu", cpu), ("gpu", gpu)):
        row.update(
            {
                f"{name}_iterations_per_s": r["iterations_per_s"],
                f"{name}_first_loss": r["losses"][0],
                f"{name}_last_loss": r["losses"][-1],
                f"{name}_metric_before": r["metric_before"],
                f"{name}_metric_after": r["metric_after"],
                f"{name}_adapt_ms": r["adapt_ms"],
            }
        )
    row["max_loss_difference_first_iterations"] = max(diffs)
    row["gpu_checkpoint_on_cpu_metric"] = reloaded
    row["gpu_checkpoint_metric_difference"] = abs(reloaded - gpu["metric_after"])
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict) -> str:
    lines = [
        "## The engine on the GPU beside the CPU",
        "",
        f"Each learner's seeded run on both devices ({result['settings']['iterations']} meta-iterations, held-out "
        f"metric over {result['settings']['episodes']} test tasks before and after; adaptation = the engine's "
        "reported one-shot adaptation time, median of 5 after one warm-up; loss difference = the largest gap "
        f"between the two devices' first {COMPARED} training losses; checkpoint = the GPU-trained engine saved, "
        "loaded on the CPU and evaluated again).",
        "",
        "| case | learner | it/s CPU / GPU | metric | before → after (CPU) | before → after (GPU) | adapt ms CPU / GPU | loss difference | checkpoint GPU→CPU difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['case']} | {r['learner']} | {r['cpu_iterations_per_s']:.1f} / {r['gpu_iterations_per_s']:.1f} | "
            f"{r['metric']} | {r['cpu_metric_before']:.3f} → {r['cpu_metric_after']:.3f} | "
            f"{r['gpu_metric_before']:.3f} → {r['gpu_metric_after']:.3f} | "
            f"{r['cpu_adapt_ms']:.2f} / {r['gpu_adapt_ms']:.2f} | {r['max_loss_difference_first_iterations']:.2g} | "
            f"{r['gpu_checkpoint_metric_difference']:.2g} |"
        )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="the device compared with the CPU")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--episodes", type=int, default=50, help="test tasks of each held-out evaluation")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--cases", default="all", help="'all' or a count of the first cases (the smoke test)")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cases = CASES if args.cases == "all" else CASES[: int(args.cases)]
    rows = [check(case, algorithm, device, args.iterations, args.episodes) for case, algorithm in cases]
    result = {"rows": rows, "settings": {"iterations": args.iterations, "episodes": args.episodes}}
    if not args.no_write:
        write_result("gpu_check", result, 0)
        update_markdown_section("gpu_check", markdown(json.loads((RESULTS / "gpu_check.json").read_text())))
    return result


if __name__ == "__main__":
    main()
