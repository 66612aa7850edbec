"""Probe: 10-step one-shot adaptation of MAML_CAUSAL and GRADIENT_CAUSAL on the 20-way 1-shot
Conv-4 case of benchmarks/adaptation_latency.py, with engine/pooling.py sending planes smaller
than 8x8 to the native kernel (as committed) against pooling every plane with the strided
views; alternating rounds in one process, medians (prints only). THREADS sets the threads.

PYTHONPATH=. python benchmarks/probes/small_map_pooling.py
"""

import os
import statistics
import time

import torch

from engine import CausalMetaModel, OneShotMetaLearningConfig, pooling
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
ROUNDS, CALLS = 8, 15

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
