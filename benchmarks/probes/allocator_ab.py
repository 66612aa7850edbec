"""Probe: meta-training steps with engine.allocator's malloc thresholds against glibc's defaults
(CAUSAL_ENGINE_KEEP_FREED_MEMORY=1 / 0), one fresh process per run, alternating; per step: wall
time, process CPU time and its kernel (system) part. Prints, writes nothing.

THREADS=1 RUNS=4 PYTHONPATH=. python benchmarks/probes/allocator_ab.py
"""

import json
import os
import statistics
import subprocess
import sys

CASES = {  # name: (algorithm, ways, query shots, meta-batch, inner steps)
    "prototypical 20-way 1-shot": ("PROTOTYPICAL_CAUSAL", 20, 5, 1, 0),
    "MAML 5-way 1-shot, 2nd order, meta-batch 8": ("MAML_CAUSAL", 5, 5, 8, 1),
}

CHILD = r"""
import json, os, resource, sys, time
import torch
from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource
from engine.training import meta_step

algorithm, ways, queries, batch, steps = json.loads(sys.argv[1])
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
torch.manual_seed(0)
model = CausalMetaModel((1, 28, 28), 64, 0 if "PROTO" in algorithm else ways, 4, conv_channels=64)
cfg = OneShotMetaLearningConfig(algorithm=algorithm, inner_lr=0.4, num_inner_steps=steps, causal_weight=0,
                                enable_causal_priors=False, grad_clip=0, hidden_dim=64)
learner = make_learner(model, cfg, "classification")
opt = torch.optim.Adam(learner.parameters(), 1e-3)
src = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=ways)
eps = src.episodes("train", batch * 12, 1, queries, seed=1)
batches = [eps[i * batch:(i + 1) * batch] for i in range(12)]
for b in batches[:2]:
    meta_step(learner, opt, b, 0)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for b in batches[2:]:
    meta_step(learner, opt, b, 0)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
n = len(batches) - 2
print(json.dumps({"wall": (t1 - t0) / n, "user": (r1.ru_utime - r0.ru_utime) / n,
                  "sys": (r1.ru_stime - r0.ru_stime) / n, "faults": (r1.ru_minflt - r0.ru_minflt) / n}))
"""


def run(case: tuple, keep: str) -> dict:
    env = {**os.environ, "CAUSAL_ENGINE_KEEP_FREED_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


runs = int(os.environ.get("RUNS", "4"))
for name, case in CASES.items():
    results: dict[str, list[dict]] = {"1": [], "0": []}
    for i in range(runs):
        for keep in ("1", "0") if i % 2 == 0 else ("0", "1"):
            results[keep].append(run(case, keep))
    print(name)
    for keep, label in (("1", "kept (engine.allocator)"), ("0", "glibc defaults")):
        med = {k: statistics.median(r[k] for r in results[keep]) for k in ("wall", "user", "sys", "faults")}
        print(
            f"  {label:24s} wall {1000 * med['wall']:.0f} ms/step, CPU {1000 * (med['user'] + med['sys']):.0f} "
            f"(system {1000 * med['sys']:.0f}), minor faults {med['faults']:.0f}/step"
        )
