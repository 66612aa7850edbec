"""One-off probe behind the "Why Conv-4 MAML is not 1.5x higher" note in BENCHMARKS.md (prints, writes nothing).

PYTHONPATH=. python benchmarks/probes/conv4_maml_compile.py
"""

import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, grad_and_value

from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource
from engine.training import meta_step

torch.set_num_threads(1)
torch.manual_seed(0)
model = CausalMetaModel(input_dim=(1, 28, 28), hidden_dim=64, output_dim=5, conv_channels=64, num_mechanisms=4)
src = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=5)
eps = src.episodes("train", 8, 1, 5, seed=1)
params = {n: p.detach().clone() for n, p in model.named_parameters()}
alpha = 0.4


def task_loss(p, sx, sy, qx, qy):
    def sl(q):
        return F.cross_entropy(functional_call(model, q, (sx,)), sy)

    g = grad(sl)(p)
    fast = {n: p[n] - alpha * g[n] for n in p}
    return F.cross_entropy(functional_call(model, fast, (qx,)), qy)


def meta_loss(p, batch):
    return sum(task_loss(p, *b) for b in batch) / len(batch)


mg = grad_and_value(meta_loss)
batch = [(e.support_x, e.support_y, e.query_x, e.query_y) for e in eps]


def bench(f, n=5):
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts), sorted(ts)[len(ts) // 2]


print("eager func.grad", bench(lambda: mg(params, batch)))
cfg = OneShotMetaLearningConfig(
    inner_lr=alpha, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
)
L = make_learner(model, cfg, "classification")
opt = torch.optim.SGD(model.parameters(), 0.0)
print("engine meta_step", bench(lambda: meta_step(L, opt, eps, 0)))
t0 = time.perf_counter()
cmg = torch.compile(mg)
cmg(params, batch)
print("compile s", time.perf_counter() - t0)
print("compiled", bench(lambda: cmg(params, batch)))
g1, _ = mg(params, batch)
g2, _ = cmg(params, batch)
print("maxdiff", max((g1[n] - g2[n]).abs().max().item() for n in g1))
