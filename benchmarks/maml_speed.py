"""Second-order MAML meta-training speed and peak memory: our engine against `higher`.

Identical model (CausalMetaModel, causal_weight 0), tasks, inner steps and meta-batch on
both sides. Each measurement runs in its own process (so peak memory is that side's own),
sides alternate, and medians over ``--repeats`` runs are reported.

Peak memory is the process's peak resident set size during training minus the resident
size after setup (model built, data sampled, before the first step), from getrusage. With
``--device cuda`` both sides train on the GPU, and peak memory is the peak of allocated
tensor memory during training minus what was allocated after setup.

    python -m engine bench maml_speed --repeats 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from statistics import median

import torch

from .common import (
    ROOT,
    machine,
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

MODELS = {
    # name: (source kind, model args, support shots, query shots, meta-batch, inner lr)
    "sinusoid MLP 1-40-40-1": ("sine", {"input_dim": 1, "hidden_dim": 40, "output_dim": 1}, 5, 10, 25, 0.01),
    "Conv-4 (64 ch) 5-way 1-shot": (
        "omniglot",
        {"input_dim": (1, 28, 28), "hidden_dim": 64, "output_dim": 5, "conv_channels": 64},
        1,
        5,
        8,
        0.4,
    ),
}


def _episodes(kind: str, support: int, query: int, n: int, seed: int):
    from engine.tasks import OMNIGLOT_DIR, ImageTaskSource, SinusoidTaskSource

    if kind == "sine":
        src = SinusoidTaskSource()
    else:
        src = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=5)
    return src.episodes("train", n, support, query, seed=seed)


def worker(
    side: str, model_name: str, steps: int, iters: int, warmup: int, threads: int, device_name: str = "cpu"
) -> dict:
    device = pick_device(device_name)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from engine import CausalMetaModel, OneShotMetaLearningConfig
    from engine.algorithms import make_learner
    from engine.training import meta_step

    kind, margs, support, query, batch, inner_lr = MODELS[model_name]
    task_type = "regression" if kind == "sine" else "classification"
    model = CausalMetaModel(num_mechanisms=4, **margs).to(device)
    episodes = [ep.to(device) for ep in _episodes(kind, support, query, batch * (iters + warmup), seed=1)]
    batches = [episodes[i * batch : (i + 1) * batch] for i in range(iters + warmup)]
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if side == "ours":
        config = OneShotMetaLearningConfig(
            inner_lr=inner_lr, num_inner_steps=steps, causal_weight=0, enable_causal_priors=False, grad_clip=0
        )
        learner = make_learner(model, config, task_type).to(device)

        def step(eps):
            meta_step(learner, meta_opt, eps, 0)

    else:
        import higher

        loss_fn = torch.nn.functional.mse_loss if task_type == "regression" else torch.nn.functional.cross_entropy
        inner_opt = torch.optim.SGD(model.parameters(), lr=inner_lr)

        def step(eps):
            meta_opt.zero_grad()
            for ep in eps:
                with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                    for _ in range(steps):
                        diffopt.step(loss_fn(fmodel(ep.support_x), ep.support_y))
                    (loss_fn(fmodel(ep.query_x), ep.query_y) / len(eps)).backward()
            meta_opt.step()

    base = memory_base_mb(device)  # before the first step: training's own memory is what we compare
    for eps in batches[:warmup]:
        step(eps)
    wait_for_device(device)
    t0 = time.perf_counter()
    for eps in batches[warmup:]:
        step(eps)
    wait_for_device(device)
    elapsed = time.perf_counter() - t0
    peak = memory_peak_mb(device)
    return {"tasks_per_s": iters * batch / elapsed, "peak_mb": max(0.0, peak - base), "seconds": elapsed}


def run(args: argparse.Namespace) -> dict:
    rows = []
    for model_name in args.models.split(";"):
        kind, _, support, query, batch, _ = MODELS[model_name]
        iters = args.iters_sine if kind == "sine" else args.iters_conv
        runs: dict[str, list[dict]] = {"ours": [], "higher": []}
        for _ in range(args.repeats):
            for side in ("higher", "ours"):
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.maml_speed",
                    "--worker",
                    side,
                    "--model",
                    model_name,
                    "--steps",
                    str(args.steps),
                    "--iters",
                    str(iters),
                    "--threads",
                    str(args.threads),
                    "--device",
                    args.device,
                ]
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
        row = {"model": model_name, "meta_batch": batch, "support": support, "query": query, "steps": args.steps}
        for side in runs:
            row[f"{side}_tasks_per_s"] = median(r["tasks_per_s"] for r in runs[side])
            row[f"{side}_peak_mb"] = median(r["peak_mb"] for r in runs[side])
        row["speedup"] = row["ours_tasks_per_s"] / row["higher_tasks_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    settings = {"repeats": args.repeats, "threads": args.threads, "steps": args.steps, "device": args.device}
    return {"rows": rows, "settings": settings}


def markdown(result: dict) -> str:
    gpu = ran_on_gpu(result)
    memory = peak_memory_text(gpu)
    lines = [
        "## Second-order MAML meta-training: engine vs `higher`" + (" on the GPU" if gpu else ""),
        "",
        f"Same model, tasks, {result['settings']['steps']} inner step(s) and meta-batch; one process per side, "
        f"alternating, median of {result['settings']['repeats']} runs. Peak memory = {memory}.",
        "",
        "| model | meta-batch | engine tasks/s | higher tasks/s | speed-up | engine peak MB | higher peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['meta_batch']} | {r['ours_tasks_per_s']:.0f} | {r['higher_tasks_per_s']:.0f} | "
            f"{r['speedup']:.2f}x | {r['ours_peak_mb']:.0f} | {r['higher_peak_mb']:.0f} |"
        )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=["ours", "higher"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--models", default=";".join(MODELS))
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--iters-sine", type=int, default=200)
    p.add_argument("--iters-conv", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU results go to maml_speed_cuda)")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.steps, args.iters, 3, args.threads, args.device)))
        return {}
    name = result_name("maml_speed", pick_device(args.device))
    result = run(args)
    if not args.no_write:
        write_result(name, result, 0)
        saved = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
        update_markdown_section(name, markdown(saved))
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    main()
