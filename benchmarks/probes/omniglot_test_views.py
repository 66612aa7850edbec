"""Probe: which test-time views help saved Omniglot checkpoints. Each image is embedded under
every transform below once (integer shifts, small rotations and scales); a view set's embedding is
the mean over its transforms, so every query is still classified alone (inductive). Scores the
members' mean class probabilities on the benchmark's 400 20-way within-alphabet episodes of the
unseen small2 alphabets, like ``omniglot_quality`` (prints only).

PYTHONPATH=. python benchmarks/probes/omniglot_test_views.py CHECKPOINT [CHECKPOINT ...]
"""

import math
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.probes.saved_checkpoints import load_engines_and_test_episodes
from engine.inner_loop import functional_forward

# small2 checkpoints (the mirror run) are scored on their own unseen alphabets, Balinese,
# Early_Aramaic and Korean: a second set of models and alphabets to choose views on.
engines, eps = load_engines_and_test_episodes(sys.argv[1:], train="small2" if "small2_" in sys.argv[1] else "small1")


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Content moved dy down and dx right; the uncovered border is 0 (the background)."""
    h, w = x.shape[-2:]
    r = max(abs(dy), abs(dx), 1)
    pad = F.pad(x, (r, r, r, r))
    return pad[..., r - dy : r - dy + h, r - dx : r - dx + w]


def warped(x: torch.Tensor, degrees: float, scale: float) -> torch.Tensor:
    """Rotated and scaled about the centre (bilinear, zero background)."""
    t = math.radians(degrees)
    fwd = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * scale
    inv = torch.linalg.inv(fwd)  # affine_grid maps output to input coordinates
    mat = torch.cat([inv, torch.zeros(2, 1)], 1)[None].expand(x.shape[0], 2, 3)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


TRANSFORMS = {f"s{dy},{dx}": (lambda x, dy=dy, dx=dx: shifted(x, dy, dx)) for dy in range(-2, 3) for dx in range(-2, 3)}
for deg in (-10, -5, 5, 10):
    TRANSFORMS[f"r{deg}"] = lambda x, deg=deg: warped(x, deg, 1.0)
for sc in (0.9, 1.1):
    TRANSFORMS[f"z{sc}"] = lambda x, sc=sc: warped(x, 0.0, sc)

plus1 = ["s0,0", "s1,0", "s-1,0", "s0,1", "s0,-1"]
grid1 = [f"s{dy},{dx}" for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
plus2 = plus1 + ["s2,0", "s-2,0", "s0,2", "s0,-2"]
grid2 = [f"s{dy},{dx}" for dy in range(-2, 3) for dx in range(-2, 3)]
rot = ["r-10", "r-5", "r5", "r10"]
zoom = ["z0.9", "z1.1"]
SETS = {
    "plain": ["s0,0"],
    "plus1 (benchmark views)": plus1,
    "grid1": grid1,
    "plus2": plus2,
    "grid2": grid2,
    "plus1+rot5": plus1 + ["r-5", "r5"],
    "plus1+rot": plus1 + rot,
    "plus1+zoom": plus1 + zoom,
    "plus1+rot5+zoom": plus1 + ["r-5", "r5"] + zoom,
    "grid1+rot5+zoom": grid1 + ["r-5", "r5"] + zoom,
    "grid1+rot+zoom": grid1 + rot + zoom,
    "plus2+rot+zoom": plus2 + rot + zoom,
    "grid2+rot5+zoom": grid2 + ["r-5", "r5"] + zoom,
    "grid2+rot+zoom (all)": grid2 + rot + zoom,
}

images = torch.cat([torch.cat([e.support_x[e.support_y.argsort()], e.query_x]) for e in eps]).float()
t0 = time.time()
emb = []  # per member: {transform: (episodes, 40, d)}
with torch.no_grad():
    for eng in engines:
        params = {n: p.detach() for n, p in eng.learner.meta_params().items()}
        per = {}
        for name, fn in TRANSFORMS.items():
            e = torch.cat([functional_forward(eng.model, params, c) for c in fn(images).split(250)])
            per[name] = e.view(len(eps), -1, e.shape[-1])
        emb.append(per)
print(f"embedded {len(TRANSFORMS)} transforms x {len(engines)} members in {time.time() - t0:.0f}s", flush=True)

labels = torch.stack([e.query_y for e in eps])  # (episodes, 20); prototypes are in label order
for set_name, names in SETS.items():
    probs = 0
    for per in emb:
        z = torch.stack([per[n] for n in names]).mean(0)
        s, q = z[:, :20], z[:, 20:]
        probs = probs + (-torch.cdist(q, s).pow(2)).softmax(-1)
    err = (probs.argmax(-1) != labels).float().mean(1)
    half = 1.96 * err.std().item() / math.sqrt(len(eps))
    print(f"{set_name:26s} {len(names):2d} views  20-way error {100 * err.mean():.1f}% ± {100 * half:.1f}")
