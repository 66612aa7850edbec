"""One-off probe: Conv-4 second-order MAML meta-steps (5-way 1-shot, meta-batch 8, one thread) with
the model and images in channels-last memory layout against the default contiguous layout,
alternating, ms per meta-step (prints, writes nothing). Pass any argument to also flush denormals.
Behind the session-5 note: channels-last was 8-20% slower, flushing denormals changed nothing.

PYTHONPATH=. python benchmarks/probes/conv4_maml_channels_last.py [flush]
"""

import dataclasses
import sys
import time

import torch

from benchmarks.maml_speed import _episodes
from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.training import meta_step

torch.set_num_threads(1)
if len(sys.argv) > 1:
    print("flush denormals:", torch.set_flush_denormal(True))
eps = _episodes("omniglot", 1, 5, 8 * 8, seed=1)
batches = [eps[i * 8 : (i + 1) * 8] for i in range(8)]


def make(channels_last: bool):
    torch.manual_seed(0)
    model = CausalMetaModel((1, 28, 28), 64, 5, 4, conv_channels=64)
    cfg = OneShotMetaLearningConfig(
        inner_lr=0.4, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
    )
    bs = batches
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        fmt = torch.channels_last
        bs = [
            [
                dataclasses.replace(
                    e,
                    support_x=e.support_x.contiguous(memory_format=fmt),
                    query_x=e.query_x.contiguous(memory_format=fmt),
                )
                for e in b
            ]
            for b in batches
        ]
    learner = make_learner(model, cfg, "classification")
    return learner, torch.optim.Adam(model.parameters(), lr=1e-3), bs


sides = {layout: make(layout) for layout in (False, True)}
times = {False: [], True: []}
for _ in range(4):
    for layout, (learner, opt, bs) in sides.items():
        meta_step(learner, opt, bs[0], 0)  # warm-up
        t0 = time.perf_counter()
        for b in bs[1:]:
            meta_step(learner, opt, b, 0)
        times[layout].append(1000 * (time.perf_counter() - t0) / (len(bs) - 1))
for layout, ms in times.items():
    print("channels_last" if layout else "contiguous", [round(t) for t in ms], "ms per meta-step")
