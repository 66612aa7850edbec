"""Probe: the Conv-4 of 120 Omniglot images (one 20-way episode with 5 queries per class) on one
thread, the engine's blocks (conv, GroupNorm, engine/pooling.py max-pool, ReLU) against the same
weights with ReLU then nn.MaxPool2d (the blocks before the change); wall time, alternating,
medians (prints only). IMAGES and THREADS change the batch and the thread count.

PYTHONPATH=. python benchmarks/probes/conv4_pooling.py
IMAGES=100 THREADS=2 PYTHONPATH=. python benchmarks/probes/conv4_pooling.py
"""

import os
import statistics
import time

import torch
from torch import nn

from engine.model import _conv_block

torch.set_num_threads(int(os.environ.get("THREADS", "1")))


def conv4(native: bool) -> nn.Sequential:
    torch.manual_seed(0)
    blocks = []
    for cin in (1, 64, 64, 64):
        b = _conv_block(cin, 64)
        blocks.append(nn.Sequential(b[0], b[1], nn.ReLU(), nn.MaxPool2d(2)) if native else b)
    return nn.Sequential(*blocks, nn.Flatten())


x = torch.rand(int(os.environ.get("IMAGES", "120")), 1, 28, 28)
nets = {"native pool": conv4(True), "engine pool": conv4(False)}
times: dict[str, list[float]] = {}
for _ in range(6):
    for name, net in nets.items():
        for _ in range(10):
            t = time.perf_counter()
            net(x).square().sum().backward()
            times.setdefault(f"{name}, forward + backward", []).append(time.perf_counter() - t)
        with torch.no_grad():
            for _ in range(10):
                t = time.perf_counter()
                net(x)
                times.setdefault(f"{name}, forward (no grad)", []).append(time.perf_counter() - t)
for name, ts in times.items():
    print(f"{name}: {statistics.median(ts) * 1e3:.1f} ms")
