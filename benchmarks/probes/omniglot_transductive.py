"""Probe: transductive prototype refinement (soft k-means over the queries, Ren et al. 2018) on
saved Omniglot checkpoints; 400 20-way within-alphabet episodes of the unseen small2 alphabets,
plainly and with shifted views (prints only).

PYTHONPATH=. python benchmarks/probes/omniglot_transductive.py CHECKPOINT [CHECKPOINT ...]
"""

import sys
import time

import numpy as np
import torch

from benchmarks.probes.saved_checkpoints import load_engines_and_test_episodes
from engine.algorithms.prototypical import refine_prototypes

engines, eps = load_engines_and_test_episodes(sys.argv[1:])


# (soft k-means steps, temperature dividing the squared distances); temperature 1 is the learner's own
GRID = ((0, 1), (1, 1), (2, 1), (5, 1), (10, 1), (1, 10), (2, 10), (5, 10), (10, 10), (5, 30))
GRID += ((5, 0.3), (10, 0.3), (20, 0.3), (10, 0.1))


def refine(s, q, steps, temp):
    # Squared distances / temp are the engine's refinement on embeddings scaled by 1/sqrt(temp);
    # prototypes are weighted means of s and q, so scaling back gives them in the original units.
    r = temp**0.5
    return refine_prototypes(s / r, torch.ones(len(s)), q / r, steps) * r


@torch.no_grad()
def member_embeddings(views):
    out = []
    for eng in engines:
        lr = eng.learner
        lr.config = eng.config.replace(test_time_shifts=1 if views else 0)
        rows = []
        for ep in eps:
            st = lr.adapt(
                ep.support_x.float(), ep.support_y, params={n: p.detach() for n, p in lr.meta_params().items()}
            )
            rows.append((st.prototypes, lr.embed(st, ep.query_x.float(), None)))
        out.append(rows)
    return out


for views in (False, True):
    t = time.time()
    embs = member_embeddings(views)
    print("views" if views else "plain", f"embedded in {time.time() - t:.0f}s", flush=True)
    for steps, temp in GRID:
        accs = []
        for i, ep in enumerate(eps):
            probs = 0
            for rows in embs:
                s, q = rows[i]
                p = refine(s, q, steps, temp)
                probs = probs + (-torch.cdist(q, p).pow(2)).softmax(1)
            accs.append((probs.argmax(1) == ep.query_y).float().mean().item())
        e = 1 - np.mean(accs)
        ci = 1.96 * np.std(accs, ddof=1) / np.sqrt(len(accs))
        print(f"  steps {steps} temp {temp}: {e:.1%} ± {ci:.1%}", flush=True)
