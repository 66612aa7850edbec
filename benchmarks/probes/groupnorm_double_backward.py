"""One-off probe behind the "Why Conv-4 MAML is not 1.5x higher" note in BENCHMARKS.md (prints, writes nothing).

PYTHONPATH=. python benchmarks/probes/groupnorm_double_backward.py
"""

import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
x = torch.randn(25, 64, 28, 28, requires_grad=True)
w = torch.ones(64, requires_grad=True)
b = torch.zeros(64, requires_grad=True)


def comp(x, w, b, G=32, eps=1e-5):
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    m = xg.mean(-1, keepdim=True)
    v = xg.var(-1, unbiased=False, keepdim=True)
    y = ((xg - m) * torch.rsqrt(v + eps)).reshape(N, C, H, W)
    return y * w.view(1, C, 1, 1) + b.view(1, C, 1, 1)


for name, f in (("native", lambda: F.group_norm(x, 32, w, b)), ("composite", lambda: comp(x, w, b))):

    def run(f=f):
        y = f()
        g = torch.autograd.grad((y * y).sum(), (x, w, b), create_graph=True)
        s = sum(t.sum() for t in g)
        s.backward()

    run()
    ts = []
    for _ in range(10):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    print(name, min(ts) * 1e3, "ms")
print((F.group_norm(x, 32, w, b) - comp(x, w, b)).abs().max())
