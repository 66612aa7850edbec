"""Probe: where engine/pooling.py's strided views beat the native 2x2 max-pool kernel, and what
sending planes smaller than 8x8 to the native kernel buys (prints only; THREADS sets the threads).

1. Forward + backward of one pooling layer on 20 images x 64 channels, per plane size, on one
   thread: native ``F.max_pool2d`` against the strided views (``_MaxPool2x2``), medians.
2. 10-step one-shot adaptation of MAML_CAUSAL and GRADIENT_CAUSAL on the 20-way 1-shot Conv-4
   case of benchmarks/adaptation_latency.py, with planes under 8x8 sent to the native kernel (as
   committed) against the strided views everywhere; alternating rounds in one process, medians.

PYTHONPATH=. python benchmarks/probes/small_map_pooling.py
"""

import os
import statistics
import time

import torch
import torch.nn.functional as F

from engine import CausalMetaModel, OneShotMetaLearningConfig, pooling
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

ROUNDS, CALLS = 8, 15


def pool_ms(pool, x: torch.Tensor, n: int = 300) -> float:
    ts = []
    for _ in range(n + 20):
        t = time.perf_counter()
        pool(x).sum().backward()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts[20:])


torch.set_num_threads(1)
for side in (3, 7, 8, 14, 28):
    x = torch.randn(20, 64, side, side, requires_grad=True)
    native = pool_ms(lambda t: F.max_pool2d(t, 2), x)
    views = pool_ms(lambda t: pooling._MaxPool2x2.apply(t)[0], x)
    print(f"{side}x{side} planes, forward + backward: native {native:.2f} ms, strided views {views:.2f} ms")

torch.set_num_threads(int(os.environ.get("THREADS", "2")))

ep = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=20).episodes("train", 1, 1, 5, seed=0)[0]
variants = {"native below 8x8": pooling._NATIVE_BELOW, "strided views everywhere": 0}
for algorithm in ("MAML_CAUSAL", "GRADIENT_CAUSAL"):
    torch.manual_seed(0)
    model = CausalMetaModel(input_dim=(1, 28, 28), hidden_dim=64, conv_channels=64, num_mechanisms=4, output_dim=20)
    config = OneShotMetaLearningConfig(algorithm=algorithm, inner_lr=0.4, adaptation_steps=10)
    learner = make_learner(model, config, "classification").eval()
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    for r in range(ROUNDS):
        for name, threshold in variants.items():
            pooling._NATIVE_BELOW = threshold
            for _ in range(CALLS):
                t = time.perf_counter()
                with torch.no_grad():
                    state = learner.adapt(ep.support_x, ep.support_y, 10, params=params)
                if r:  # the first round warms up
                    times[name].append(time.perf_counter() - t)
            with torch.no_grad():
                outputs[name] = learner(state, ep.query_x)
    same = torch.equal(*outputs.values())
    medians = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    print(algorithm, ", ".join(f"{n}: {m:.1f} ms" for n, m in medians.items()), f"(same predictions: {same})")
