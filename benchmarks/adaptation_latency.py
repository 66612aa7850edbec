"""One-shot adaptation latency of each learner, beside its compute bound.

Cases: 20-way 1-shot Conv-4 (64 channels) on 28x28 images, 100 queries; 5-shot sinusoid
MLP (1-40-40-1; gradient learners only, embedding learners do not regress). Adaptation =
processing the support set (the learner's ``adapt``); prediction = scoring the queries,
reported per query. p50 and p95 over ``--runs`` runs after warm-up.

Compute bound: the floating-point operations the call needs (counted by
torch.utils.flop_counter) divided by this machine's sustained throughput on the same layers,
measured here by a plain batched forward and backward of the same model.

    python -m engine bench adaptation_latency --runs 200
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource, SinusoidTaskSource

from .common import (
    ROOT,
    machine_line,
    pick_device,
    ran_on_gpu,
    result_name,
    update_markdown_section,
    wait_for_device,
    write_result,
)

LEARNERS = ["MAML_CAUSAL", "GRADIENT_CAUSAL", "PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL"]


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def sustained_flops_per_s(model: CausalMetaModel, x: torch.Tensor, repeats: int = 10) -> float:
    """FLOP/s of a plain batched forward+backward of ``model`` on ``x`` (the machine's roofline
    here; on ``x``'s device)."""
    model = model.to(x.device)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    fwd_bwd()
    flops = count_flops(fwd_bwd)
    times = []
    for _ in range(repeats):
        wait_for_device(x.device)
        t0 = time.perf_counter()
        fwd_bwd()
        wait_for_device(x.device)
        times.append(time.perf_counter() - t0)
    return flops / min(times)  # the best repeat: what the machine sustains when nothing interferes


def time_calls(
    fn, runs: int, warmup: int = 10, device: torch.device = torch.device("cpu"), warmup_s: float = 2.0
) -> np.ndarray:
    """Seconds per call of ``fn`` after ``warmup`` calls and at least ``warmup_s`` seconds of them
    (the first case in a process ran up to 1.4x slower after only 10 calls: allocator and oneDNN
    caches still filling); on a GPU each call's queued work is waited for."""
    t_end = time.perf_counter() + warmup_s
    done = 0
    while done < warmup or time.perf_counter() < t_end:
        fn()
        done += 1
    out = np.empty(runs)
    for i in range(runs):
        wait_for_device(device)
        t0 = time.perf_counter()
        fn()
        wait_for_device(device)
        out[i] = time.perf_counter() - t0
    return out


_REFERENCES: dict[tuple[str, str], float] = {}


def _reference(case: str, device: torch.device, make) -> float:
    """The case's sustained FLOP/s, measured once per process (best of 30 repeats) and shared by
    every learner: per-row references varied 47-62 GFLOP/s within one run on this machine."""
    key = (case, str(device))
    if key not in _REFERENCES:
        model, x = make()
        _REFERENCES[key] = sustained_flops_per_s(model, x, repeats=30)
    return _REFERENCES[key]


def measure(case: str, algorithm: str, runs: int, steps: int, device: torch.device = torch.device("cpu")) -> dict:
    torch.manual_seed(0)
    if case == "conv":
        src = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=20)
        ep = src.episodes("train", 1, 1, 5, seed=0)[0]
        model_args = dict(input_dim=(1, 28, 28), hidden_dim=64, conv_channels=64, num_mechanisms=4)
        out_dim, task_type, inner_lr = 20, "classification", 0.4
        roof_x = torch.rand(256, 1, 28, 28)
    else:
        ep = SinusoidTaskSource().episodes("train", 1, 5, 100, seed=0)[0]
        model_args = dict(input_dim=1, hidden_dim=40, num_mechanisms=4)
        out_dim, task_type, inner_lr = 1, "regression", 0.01
        roof_x = torch.rand(4096, 1)
    embedding = algorithm in ("PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL")
    model = CausalMetaModel(output_dim=0 if embedding else out_dim, **model_args)
    config = OneShotMetaLearningConfig(algorithm=algorithm, inner_lr=inner_lr, adaptation_steps=steps)
    learner = make_learner(model, config, task_type).to(device).eval()
    ep, roof_x = ep.to(device), roof_x.to(device)
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    n_steps = 0 if embedding else steps

    def adapt():
        with torch.no_grad():
            return learner.adapt(ep.support_x, ep.support_y, n_steps, params=params)

    state = adapt()

    def predict():
        with torch.no_grad():
            return learner(state, ep.query_x)

    nq = ep.query_x.shape[0]
    t_adapt, t_pred = time_calls(adapt, runs, device=device), time_calls(predict, runs, device=device)
    throughput = _reference(case, device, lambda: (CausalMetaModel(output_dim=out_dim, **model_args), roof_x))
    f_adapt, f_pred = count_flops(adapt), count_flops(predict)
    row = {
        "case": "20-way 1-shot Conv-4" if case == "conv" else "5-shot sinusoid MLP",
        "learner": algorithm,
        "steps": n_steps,
        "queries": nq,
        "adapt_p50_ms": 1e3 * float(np.median(t_adapt)),
        "adapt_p95_ms": 1e3 * float(np.percentile(t_adapt, 95)),
        "predict_per_query_p50_ms": 1e3 * float(np.median(t_pred)) / nq,
        "predict_batch_p50_ms": 1e3 * float(np.median(t_pred)),
        "predict_batch_p95_ms": 1e3 * float(np.percentile(t_pred, 95)),
        "adapt_flops": f_adapt,
        "predict_flops": f_pred,
        "sustained_gflops": throughput / 1e9,
        "adapt_bound_ms": 1e3 * f_adapt / throughput,
        "predict_batch_bound_ms": 1e3 * f_pred / throughput,
    }
    row["adapt_vs_bound"] = row["adapt_p50_ms"] / row["adapt_bound_ms"] if row["adapt_bound_ms"] > 0 else None
    row["predict_vs_bound"] = row["predict_batch_p50_ms"] / row["predict_batch_bound_ms"]
    return row


def where(result: dict) -> str:
    """What ran a result: the GPU's name, or the CPU threads (old results have no device)."""
    if ran_on_gpu(result):
        return f"on the GPU ({result['machine'].get('cuda')})"
    return f"{result['settings']['threads']} threads"


def markdown(result: dict) -> str:
    gpu = ran_on_gpu(result)
    lines = [
        "## One-shot adaptation latency" + (" on the GPU" if gpu else ""),
        "",
        f"p50 / p95 over {result['settings']['runs']} runs after warm-up, {where(result)}. "
        "Bound = FLOPs of the call / sustained FLOP/s of a plain batched forward+backward of the same model "
        f"on this machine ({result['settings'].get('reference', 'measured for each row')}). "
        "Prediction: all queries in one batch (per-query time = batch / queries).",
        "",
        "| case | learner | steps | adapt p50 / p95 (ms) | adapt bound (ms) | x bound | predict batch p50 / p95 (ms) | per query (ms) | predict bound (ms) | x bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        xb = f"{r['adapt_vs_bound']:.1f}" if r["adapt_vs_bound"] else "-"
        lines.append(
            f"| {r['case']} | {r['learner']} | {r['steps']} | {r['adapt_p50_ms']:.2f} / {r['adapt_p95_ms']:.2f} | "
            f"{r['adapt_bound_ms']:.2f} | {xb} | {r['predict_batch_p50_ms']:.2f} / {r['predict_batch_p95_ms']:.2f} | "
            f"{r['predict_per_query_p50_ms']:.3f} | {r['predict_batch_bound_ms']:.2f} | {r['predict_vs_bound']:.1f} |"
        )
    lines += [
        "",
        "Reading the bound: the reference throughput is a batch-256 forward+backward, whose activations probably leave "
        "the caches; a small support set can run faster than that reference, so 'x bound' below 1 means "
        "'faster than the batched reference', not 'faster than the hardware'. On the sinusoid MLP the FLOPs are "
        "a few thousand, so the time is all per-call overhead (Python, dispatch) and the bound is not a useful "
        "target.",
        "",
        f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--conv-steps", type=int, default=10, help="gradient learners' steps on Conv-4")
    p.add_argument("--sine-steps", type=int, default=1, help="gradient learners' steps on the sinusoid MLP")
    p.add_argument("--learners", default=",".join(LEARNERS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU results go to adaptation_latency_cuda)")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rows = []
    for algorithm in args.learners.split(","):
        for case in ("conv", "sine"):
            if case == "sine" and algorithm in ("PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL"):
                continue
            row = measure(case, algorithm, args.runs, args.conv_steps if case == "conv" else args.sine_steps, device)
            rows.append(row)
            print(json.dumps(row), flush=True)
    settings = {
        "runs": args.runs,
        "threads": args.threads,
        "device": device.type,
        "reference": "once per case, best of 30",
    }
    result = {"rows": rows, "settings": settings}
    if not args.no_write:
        name = result_name("adaptation_latency", device)
        write_result(name, result, 0)
        saved = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
        update_markdown_section(name, markdown(saved))
    return result


if __name__ == "__main__":
    main()
