"""Meta-training cost: episodes per second, peak memory, the compute bound, and how they scale.

Two parts, each point measured in its own process (so peak memory is that point's own):

- throughput: prototypical and relation meta-training on 20-way 1-shot Omniglot (5 queries
  per class, meta-batch 1), and second-order MAML on 5-way 1-shot, in episodes per second,
  beside the compute bound: the FLOPs of one meta-step (counted by torch.utils.flop_counter)
  divided by this machine's sustained FLOP/s on a plain batched forward+backward of the
  same Conv-4. "Fraction of bound" = bound time / measured time (1.0 = at the bound).
- scaling: time and peak memory per meta-iteration as ways, shots, inner steps and
  meta-batch grow one at a time from a base point (Conv-4, 64 channels), for second-order
  MAML and for prototypical networks (which have no inner steps).

Peak memory = the process's peak RSS during training minus its RSS after setup (with
``--device cuda``: peak allocated GPU memory minus what was allocated after setup).

    python -m engine bench meta_training --iters 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from statistics import median

import torch

from .common import (
    RESULTS,
    ROOT,
    machine_line,
    memory_base_mb,
    memory_peak_mb,
    peak_memory_text,
    pick_device,
    ran_on_gpu,
    result_name,
    update_markdown_section,
    wait_for_device,
    write_result,
)

BASE = {"ways": 5, "shots": 1, "steps": 1, "batch": 4}
AXES = {"ways": [5, 10, 20], "shots": [1, 5], "steps": [1, 2, 5], "batch": [1, 2, 4, 8]}
THROUGHPUT = [  # (learner, ways, meta-batch, inner steps)
    ("PROTOTYPICAL_CAUSAL", 20, 1, 0),
    ("RELATION_CAUSAL", 20, 1, 0),
    ("MAML_CAUSAL", 5, 4, 1),
]
QUERIES = 5  # per class


CONV4_MODEL = dict(input_dim=(1, 28, 28), hidden_dim=64, conv_channels=64, num_mechanisms=4)


def conv4_setup(algorithm: str, ways: int, steps: int, device: torch.device):
    """The measured learner (Conv-4, 64 channels, 4 mechanisms, plain: no causal parts) and its
    Omniglot small1 task source; shared with the data-parallel benchmark."""
    from engine import CausalMetaModel, OneShotMetaLearningConfig
    from engine.algorithms import learner_class, make_learner
    from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

    embedding = learner_class(algorithm).embedding_only
    model = CausalMetaModel(output_dim=0 if embedding else ways, **CONV4_MODEL)
    config = OneShotMetaLearningConfig(
        algorithm=algorithm,
        n_way=ways,
        inner_lr=0.4,
        num_inner_steps=max(steps, 1),
        causal_weight=0,
        enable_causal_priors=False,
        grad_clip=0,
    )
    learner = make_learner(model, config, "classification").to(device)
    return learner, ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=ways)


def worker(
    algorithm: str, ways: int, shots: int, steps: int, batch: int, iters: int, threads: int, device_name: str = "cpu"
) -> dict:
    from benchmarks.adaptation_latency import count_flops, sustained_flops_per_s
    from engine import CausalMetaModel
    from engine.training import meta_step

    device = pick_device(device_name)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    learner, src = conv4_setup(algorithm, ways, steps, device)
    warmup = 2
    episodes = [ep.to(device) for ep in src.episodes("train", batch * (iters + warmup), shots, QUERIES, seed=1)]
    batches = [episodes[i * batch : (i + 1) * batch] for i in range(iters + warmup)]
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    base = memory_base_mb(device)
    for eps in batches[:warmup]:
        meta_step(learner, opt, eps, 0)
    times = []
    for eps in batches[warmup:]:
        wait_for_device(device)
        t0 = time.perf_counter()
        meta_step(learner, opt, eps, 0)
        wait_for_device(device)
        times.append(time.perf_counter() - t0)
    peak = memory_peak_mb(device) - base
    flops = count_flops(lambda: meta_step(learner, opt, batches[0], 0))
    roof_x = torch.rand(256, 1, 28, 28, device=device)
    roof = sustained_flops_per_s(CausalMetaModel(output_dim=ways, **CONV4_MODEL), roof_x)
    step_s = median(times)
    return {
        "learner": algorithm,
        "ways": ways,
        "shots": shots,
        "steps": steps if not learner.embedding_only else 0,
        "batch": batch,
        "ms_per_iteration": 1e3 * step_s,
        "episodes_per_s": batch / step_s,
        "peak_mb": max(0.0, peak),
        "gflop_per_iteration": flops / 1e9,
        "sustained_gflops": roof / 1e9,
        "bound_ms": 1e3 * flops / roof,
        "fraction_of_bound": (flops / roof) / step_s,
    }


def _point(args: argparse.Namespace, algorithm: str, ways: int, shots: int, steps: int, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.meta_training", "--worker", algorithm]
    cmd += ["--point", json.dumps([ways, shots, steps, batch]), "--iters", str(args.iters)]
    cmd += ["--threads", str(args.threads), "--device", args.device]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def run(args: argparse.Namespace) -> dict:
    throughput = [_point(args, a, w, 1, s, b) for a, w, b, s in THROUGHPUT]
    scaling = []
    for algorithm in ("MAML_CAUSAL", "PROTOTYPICAL_CAUSAL") if args.scaling else ():
        for axis, values in AXES.items():
            if axis == "steps" and algorithm != "MAML_CAUSAL":
                continue
            for v in values:
                p = {**BASE, axis: v}
                if algorithm != "MAML_CAUSAL":
                    p["steps"] = 0
                row = _point(args, algorithm, p["ways"], p["shots"], p["steps"], p["batch"])
                scaling.append({"axis": axis, "value": v, **row})
    settings = {"iters": args.iters, "threads": args.threads, "device": args.device}
    return {"throughput": throughput, "scaling": scaling, "settings": settings}


def plot(result: dict, path) -> None:
    """Time and memory per meta-iteration against each axis (one panel per axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for col, axis in enumerate(AXES):
        for algorithm, style in (("MAML_CAUSAL", "o-"), ("PROTOTYPICAL_CAUSAL", "s--")):
            rows = [r for r in result["scaling"] if r["axis"] == axis and r["learner"] == algorithm]
            if not rows:
                continue
            xs = [r["value"] for r in rows]
            label = "MAML (2nd order)" if algorithm == "MAML_CAUSAL" else "prototypical"
            axes[0, col].plot(xs, [r["ms_per_iteration"] for r in rows], style, label=label)
            axes[1, col].plot(xs, [r["peak_mb"] for r in rows], style, label=label)
        axes[0, col].set_title(f"{axis} (others at base)")
        axes[1, col].set_xlabel(axis)
        for row in (0, 1):
            axes[row, col].set_xticks(AXES[axis])
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].set_ylabel("ms per meta-iteration")
    axes[1, 0].set_ylabel("peak MB")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend()
    fig.suptitle(
        f"Conv-4 meta-training scaling (base: {BASE['ways']}-way {BASE['shots']}-shot, "
        f"{BASE['steps']} step, meta-batch {BASE['batch']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(result: dict) -> str:
    gpu = ran_on_gpu(result)
    memory = peak_memory_text(gpu)
    reading = (
        "On the GPU these small episodes are bound by kernel launches, not FLOPs: the fraction is low."
        if gpu
        else "A fraction above 1 means the meta-step runs faster than that batched reference: these steps are "
        "compute-bound, not overhead-bound."
    )
    lines = [
        "## Meta-training throughput and scaling (Conv-4, 64 channels, Omniglot)" + (" on the GPU" if gpu else ""),
        "",
        f"{QUERIES} queries per class; median of {result['settings']['iters']} meta-iterations after 2 warm-up, "
        f"each point in its own process. Bound = FLOPs of one meta-step / sustained FLOP/s of a batch-256 "
        "forward+backward of the same Conv-4 (see the adaptation latency section on reading it). "
        f"Peak MB = {memory}. {reading}",
        "",
        "| learner | task | meta-batch | episodes/s | ms / iteration | GFLOP / iteration | bound (ms) | fraction of bound | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["throughput"]:
        task = f"{r['ways']}-way {r['shots']}-shot" + (f", {r['steps']} step 2nd order" if r["steps"] else "")
        lines.append(
            f"| {r['learner']} | {task} | {r['batch']} | {r['episodes_per_s']:.1f} | {r['ms_per_iteration']:.0f} | "
            f"{r['gflop_per_iteration']:.2f} | {r['bound_ms']:.0f} | {r['fraction_of_bound']:.2f} | {r['peak_mb']:.0f} |"
        )
    if not result["scaling"]:
        lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
        return "\n".join(lines)
    lines += [
        "",
        f"Scaling: one axis at a time from the base point ({BASE['ways']}-way {BASE['shots']}-shot, "
        f"{BASE['steps']} inner step, meta-batch {BASE['batch']}).",
        "",
        "| learner | axis | values | ms / iteration | peak MB | GFLOP / iteration | fraction of bound |",
        "|---|---|---|---|---|---|---|",
    ]
    # one row per learner and axis, each cell the values along the axis: a short table
    for (learner, axis), group in itertools.groupby(result["scaling"], key=lambda r: (r["learner"], r["axis"])):
        rows = list(group)

        def cells(key: str, fmt: str, rows: list[dict] = rows) -> str:
            return " / ".join(format(r[key], fmt) for r in rows)

        lines.append(
            f"| {learner} | {axis} | {cells('value', '')} | {cells('ms_per_iteration', '.0f')} "
            f"| {cells('peak_mb', '.0f')} | {cells('gflop_per_iteration', '.2f')} | {cells('fraction_of_bound', '.2f')} |"
        )
    lines += [
        "",
        f"![scaling](benchmarks/results/{result.get('benchmark', 'meta_training')}_scaling.png)",
        "",
        f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--point", help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, default=6, help="timed meta-iterations per point")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU results go to meta_training_cuda)")
    p.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True, help="the scaling part")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.worker:
        ways, shots, steps, batch = json.loads(args.point)
        row = worker(args.worker, ways, shots, steps, batch, args.iters, args.threads, args.device)
        print(json.dumps(row))
        return row
    name = result_name("meta_training", pick_device(args.device))
    result = run(args)
    if not args.no_write:
        write_result(name, result, 0)
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        if saved["scaling"]:
            plot(saved, RESULTS / f"{name}_scaling.png")
        update_markdown_section(name, markdown(saved))
    return result


if __name__ == "__main__":
    main()
