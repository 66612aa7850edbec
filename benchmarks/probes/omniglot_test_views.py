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

from benchmarks.probes.saved_checkpoints import load_engines_and_test_episodes
from engine.algorithms.image_views import AFFINE_VIEWS, affine_views, grid_moves, grid_views
from engine.inner_loop import functional_forward

# small2 checkpoints (the mirror run) are scored on their own unseen alphabets, Balinese,
# Early_Aramaic and Korean: a second set of models and alphabets to choose views on.
engines, eps = load_engines_and_test_episodes(sys.argv[1:], train="small2" if "small2_" in sys.argv[1] else "small1")


# The engine's own views (engine.algorithms.image_views), named: grid_views' moves, then AFFINE_VIEWS.
RADIUS = 2
VIEW_NAMES = [f"s{dy},{dx}" for dy, dx in grid_moves(RADIUS)]
VIEW_NAMES += [f"r{int(deg)}" if scale == 1.0 else f"z{scale}" for deg, scale in AFFINE_VIEWS]

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
views = torch.cat([grid_views(images, RADIUS), affine_views(images)])
t0 = time.time()
emb = []  # per member: {transform: (episodes, 40, d)}
with torch.no_grad():
    for eng in engines:
        params = {n: p.detach() for n, p in eng.learner.meta_params().items()}
        per = {}
        for name, view in zip(VIEW_NAMES, views, strict=True):
            e = torch.cat([functional_forward(eng.model, params, c) for c in view.split(250)])
            per[name] = e.view(len(eps), -1, e.shape[-1])
        emb.append(per)
print(f"embedded {len(VIEW_NAMES)} transforms x {len(engines)} members in {time.time() - t0:.0f}s", flush=True)

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
