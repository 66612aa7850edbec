"""One-off probe: Conv-4 second-order MAML meta-steps with tasks split over two Python threads
(one intra-op thread each) against the plain task loop on one and two threads (prints, writes
nothing). Behind "Noticed and left alone" in the session-4 note: no gain, not kept.

PYTHONPATH=. python benchmarks/probes/conv4_maml_task_threads.py
"""

import copy
import threading
import time

import torch

from benchmarks.maml_speed import _episodes
from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner

torch.manual_seed(0)
model = CausalMetaModel((1, 28, 28), 64, 5, 4, conv_channels=64)
cfg = OneShotMetaLearningConfig(
    inner_lr=0.4, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
)
learner = make_learner(model, cfg, "classification")
eps = _episodes("omniglot", 1, 5, 8 * 12, seed=1)
batches = [eps[i * 8 : (i + 1) * 8] for i in range(12)]
params = [p for p in learner.parameters()]


def seq(b):
    for ep in b:
        loss, _ = learner.episode_objective(ep)
        (loss / len(b)).backward()


# functional_call swaps module attributes, so each thread needs its own module copy;
# every copy reads the one model's parameters.
clones = []
for _ in range(2):
    clone = make_learner(copy.deepcopy(model), cfg, "classification")
    clone.meta_params = lambda: dict(model.named_parameters())
    clones.append(clone)


def par(b, nthreads=2):
    out = [None] * nthreads

    def work(i):
        torch.set_num_threads(1)
        gs = None
        for ep in b[i::nthreads]:
            loss, _ = clones[i].episode_objective(ep)
            g = torch.autograd.grad(loss / len(b), params, allow_unused=True)
            gs = g if gs is None else [a + c if a is not None else None for a, c in zip(gs, g)]
        out[i] = gs

    ts = [threading.Thread(target=work, args=(i,)) for i in range(nthreads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for p, *gs in zip(params, *out):
        if gs[0] is not None:
            p.grad = sum(gs)


for mode in ["seq2", "seq1", "par", "seq2", "par"]:
    if mode == "seq2":
        torch.set_num_threads(2)
    if mode == "seq1":
        torch.set_num_threads(1)
    if mode == "par":
        torch.set_num_threads(2)
    f = par if mode == "par" else seq
    for b in batches[:2]:
        f(b)
    t = time.perf_counter()
    for b in batches[2:]:
        for p in params:
            p.grad = None
        f(b)
    dt = (time.perf_counter() - t) / 10
    print(mode, f"{dt * 1000:.0f} ms/step", torch.get_num_threads(), flush=True)
# check equality
for p in params:
    p.grad = None
torch.set_num_threads(2)
seq(batches[0])
g1 = [p.grad.clone() for p in params if p.grad is not None]
for p in params:
    p.grad = None
par(batches[0])
g2 = [p.grad.clone() for p in params if p.grad is not None]
print("max diff", max((a - b).abs().max().item() for a, b in zip(g1, g2)))
