"""Data-parallel meta-training throughput: tasks per second with 1 and N processes under torchrun.

Each point is its own ``torchrun --standalone --nproc-per-node N`` run of ``engine.training.meta_step``
on Conv-4 (64 channels) Omniglot episodes, with the global meta-batch fixed (each process adapts to
its share, the meta-gradient is all-reduced; engine/distributed.py). On the CPU the machine's cores
are split between the processes (2 cores: 1 process x 2 threads against 2 processes x 1 thread), so
the speed-up is at most the core count over what one process already used; on GPUs each process
has its own device (``--device cuda``, results in distributed_training_cuda).

    python -m engine bench distributed_training --iters 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from statistics import median

import torch

from .common import (
    RESULTS,
    ROOT,
    machine_line,
    pick_device,
    ran_on_gpu,
    result_name,
    update_markdown_section,
    wait_for_device,
    write_result,
)

LEARNERS = {  # learner: (ways, inner steps)
    "PROTOTYPICAL_CAUSAL": (5, 0),
    "MAML_CAUSAL": (5, 1),
}
QUERIES = 5  # per class


def worker(algorithm: str, batch: int, iters: int, threads: int, device_name: str) -> dict | None:
    """One process of a torchrun group: time ``iters`` meta-steps; rank 0 returns the row."""
    from engine import distributed
    from engine.training import meta_step

    from .meta_training import conv4_setup

    distributed.init_from_env(device_name)
    device = pick_device(device_name)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ways, steps = LEARNERS[algorithm]
    learner, src = conv4_setup(algorithm, ways, steps, device)  # the learner meta_training measures
    warmup = 2
    episodes = src.episodes("train", batch * (iters + warmup), 1, QUERIES, seed=1)  # the same on every rank
    batches = [episodes[i * batch : (i + 1) * batch] for i in range(iters + warmup)]
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    times = []
    for i, eps in enumerate(batches):
        wait_for_device(device)
        t0 = time.perf_counter()
        meta_step(learner, opt, eps, 0)
        wait_for_device(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    # every step ends in the same all-reduce, so the processes wait for each other: their mean is the pace
    rank, size = distributed.world()
    step_s = distributed.all_reduce_sum([median(times)], device)[0] / size if size > 1 else median(times)
    distributed.shutdown()
    if rank != 0:
        return None
    return {
        "learner": algorithm,
        "ways": ways,
        "steps": steps,
        "batch": batch,
        "processes": size,
        "threads_per_process": threads,
        "ms_per_iteration": 1e3 * step_s,
        "tasks_per_s": batch / step_s,
    }


def _point(args: argparse.Namespace, algorithm: str, nprocs: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nprocs)]
    cmd += ["-m", "benchmarks.distributed_training", "--worker", algorithm, "--batch", str(args.batch)]
    cmd += ["--iters", str(args.iters), "--threads", str(threads), "--device", args.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"torchrun ({nprocs} processes, {algorithm}) failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def run(args: argparse.Namespace) -> dict:
    # (processes, threads each): the cores split between the processes, and on the CPU one process on
    # one thread too, which separates the gain of a second process from that of a second thread
    points = [(int(n), max(1, args.cores // int(n)) if args.device == "cpu" else 1) for n in args.nprocs.split(",")]
    if args.device == "cpu" and (1, 1) not in points:
        points.insert(0, (1, 1))
    rows, load_before = [], os.getloadavg()[0]
    for algorithm in LEARNERS:
        for n, threads in points:
            repeats = [_point(args, algorithm, n, threads) for _ in range(args.repeats)]
            best = sorted(repeats, key=lambda r: r["tasks_per_s"])[len(repeats) // 2]  # the median run
            rows.append({**best, "tasks_per_s_runs": [r["tasks_per_s"] for r in repeats]})
    settings = {k: getattr(args, k) for k in ("iters", "batch", "nprocs", "cores", "repeats", "device")}
    load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"  # other work on the machine skews these timings
    return {"rows": rows, "settings": settings, "load_average": load}


def markdown(result: dict) -> str:
    gpu = ran_on_gpu(result)
    s = result["settings"]
    lines = [
        "## Data-parallel meta-training under torchrun" + (" on GPUs" if gpu else ""),
        "",
        f"Conv-4 (64 channels), Omniglot 5-way 1-shot, {QUERIES} queries per class, global meta-batch "
        f"{s['batch']} split over the processes; median meta-step of {s['iters']} after 2 warm-up (mean over "
        f"the processes, which wait for each other); median of {s['repeats']} runs. Speed-up: against one process on "
        + (
            "one GPU."
            if gpu
            else f"one thread (one core): with {s['cores']} cores, {s['cores']}x is the ceiling. One process on "
            f"all {s['cores']} threads is shown too; it suffers most when other work shares the cores "
            f"(load average {result.get('load_average', '?')} during this run)."
        ),
        "",
        "| learner | processes | threads each | tasks/s | ms / iteration | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    base = {}
    for r in reversed(result["rows"]):  # one process on the fewest threads (rows run from fewest)
        if r["processes"] == 1:
            base[r["learner"]] = r["tasks_per_s"]
    for r in result["rows"]:
        up = r["tasks_per_s"] / base[r["learner"]] if r["learner"] in base else float("nan")
        task = "2nd-order MAML, 1 step" if r["steps"] else "prototypical"
        lines.append(
            f"| {task} | {r['processes']} | {r['threads_per_process']} | {r['tasks_per_s']:.1f} | "
            f"{r['ms_per_iteration']:.0f} | {up:.2f}x |"
        )
    lines += ["", f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, default=8, help="timed meta-iterations per point")
    p.add_argument("--batch", type=int, default=8, help="global meta-batch (tasks per meta-step)")
    p.add_argument("--nprocs", default="1,2", help="process counts to measure, comma-separated")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores split between the processes")
    p.add_argument("--repeats", type=int, default=3, help="runs per point (the median is reported)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    if args.worker:
        row = worker(args.worker, args.batch, args.iters, args.threads, args.device)
        if row is not None:
            print(json.dumps(row))
        return row
    name = result_name("distributed_training", pick_device(args.device))
    result = run(args)
    if not args.no_write:
        write_result(name, result, 0)
        update_markdown_section(name, markdown(json.loads((RESULTS / f"{name}.json").read_text())))
    return result


if __name__ == "__main__":
    main()
