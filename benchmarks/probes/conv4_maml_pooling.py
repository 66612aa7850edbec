"""Probe: second-order MAML meta-steps on the Conv-4 (5-way 1-shot, one inner step, meta-batch
BATCH) with the engine's 2x2 max-pool against PyTorch's native one, alternating, medians
(prints, writes nothing).

BATCH=4 THREADS=2 PYTHONPATH=. python benchmarks/probes/conv4_maml_pooling.py
"""

import os
import statistics
import time

import torch
import torch.nn.functional as F

import engine.pooling as pooling
from benchmarks.maml_speed import _episodes
from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.training import meta_step

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
batch = int(os.environ.get("BATCH", "4"))
rounds = int(os.environ.get("ROUNDS", "12"))
torch.manual_seed(0)
model = CausalMetaModel((1, 28, 28), 64, 5, 4, conv_channels=64)
cfg = OneShotMetaLearningConfig(
    inner_lr=0.4, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
)
learner = make_learner(model, cfg, "classification")
opt = torch.optim.Adam(model.parameters(), 1e-3)
eps = _episodes("omniglot", 1, 5, batch, seed=1)
engine_pool = pooling.max_pool_2x2


def native_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2)


times: dict[str, list[float]] = {"engine": [], "native": []}
for r in range(rounds + 2):
    for name, fn in (
        (("engine", engine_pool), ("native", native_pool))
        if r % 2
        else (("native", native_pool), ("engine", engine_pool))
    ):
        pooling.max_pool_2x2 = fn  # MaxPool2x2.forward looks the function up at call time
        t = time.perf_counter()
        meta_step(learner, opt, eps, 0)
        if r >= 2:
            times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(f"{name:7s} meta-step median {1000 * statistics.median(ts):.1f} ms  (min {1000 * min(ts):.1f})")
