"""One-off probe: Conv-4 second-order MAML meta-steps (5-way 1-shot, meta-batch 8, one thread) under
CPU bfloat16 autocast against float32, alternating, ms per meta-step, and how far the bf16
meta-gradient is from the float32 one (prints, writes nothing).

PYTHONPATH=. python benchmarks/probes/conv4_maml_bf16.py
"""

import time

import torch

from benchmarks.maml_speed import _episodes
from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.training import meta_step

torch.set_num_threads(1)
eps = _episodes("omniglot", 1, 5, 8 * 8, seed=1)
batches = [eps[i * 8 : (i + 1) * 8] for i in range(8)]


def make():
    torch.manual_seed(0)
    model = CausalMetaModel((1, 28, 28), 64, 5, 4, conv_channels=64)
    cfg = OneShotMetaLearningConfig(
        inner_lr=0.4, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
    )
    learner = make_learner(model, cfg, "classification")
    return learner, torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights stay, grads comparable


def step(learner, opt, batch, bf16: bool):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        meta_step(learner, opt, batch, 0)


sides = {bf16: make() for bf16 in (False, True)}
for bf16, (learner, opt) in sides.items():
    step(learner, opt, batches[0], bf16)
grads = {bf16: torch.cat([p.grad.flatten() for p in learner.parameters()]) for bf16, (learner, _) in sides.items()}
rel = float((grads[True] - grads[False]).norm() / grads[False].norm())
print(f"bf16 meta-gradient relative error vs float32: {rel:.3g}")
times = {False: [], True: []}
for _ in range(3):
    for bf16, (learner, opt) in sides.items():
        t0 = time.perf_counter()
        for b in batches[1:]:
            step(learner, opt, b, bf16)
        times[bf16].append(1000 * (time.perf_counter() - t0) / (len(batches) - 1))
for bf16, ts in times.items():
    print("bf16" if bf16 else "fp32", "ms per meta-step:", [round(t) for t in ts])
