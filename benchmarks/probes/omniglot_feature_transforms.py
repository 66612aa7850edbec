"""Probe: inductive feature transforms on saved Omniglot checkpoints (SimpleShot, Wang et al. 2019;
power transform, Hu et al. 2021). Each image's embedding is transformed alone (base-class statistics
come from the training set), so every query is still classified alone; 400 20-way within-alphabet
episodes of the unseen small2 alphabets (prints only).

PYTHONPATH=. python benchmarks/probes/omniglot_feature_transforms.py CHECKPOINT [CHECKPOINT ...]
"""

import sys
import time

import numpy as np
import torch

import benchmarks.omniglot_quality as oq
from benchmarks.probes.saved_checkpoints import load_engines_and_test_episodes
from engine.algorithms.image_views import shifted_views
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

engines, eps = load_engines_and_test_episodes(sys.argv[1:])
size = engines[0].source_info["image_size"]
base = ImageTaskSource(OMNIGLOT_DIR / oq.SETS["small1"][0], n_way=20, split_fractions=(1, 0, 0), image_size=size)
base_eps = base.episodes("train", 30, 1, 4, seed=1)
base_x = torch.cat([torch.cat([e.support_x, e.query_x]) for e in base_eps]).float()  # 3000 training images


@torch.no_grad()
def features(eng, x, views, layer):
    lr = eng.learner
    lr.config = eng.config.replace(test_time_shifts=1 if views else 0)
    params = {n: p.detach() for n, p in lr.meta_params().items()}
    if layer == "embedding":
        st = lr.adapt(x[:1], torch.zeros(1, dtype=torch.long), params=params)
        return lr.embed(st, x, None)
    # the Conv-4 output before the mechanism layer (views averaged the same way)
    stacked = shifted_views(x, 1) if views else x[None]
    z = eng.model.encoder(stacked.flatten(0, 1)).flatten(1)
    return z.view(stacked.shape[0], x.shape[0], -1).mean(0)


def transform(f, reference, kind):
    """Power transform (square root; the features are ReLU outputs), centring on the mean of the
    equally transformed reference features, L2 normalisation: the steps named in ``kind``."""
    if "power" in kind:
        f, reference = f.clamp(min=0).sqrt(), reference.clamp(min=0).sqrt()
    if "center" in kind:
        f = f - reference.mean(0)
    if "l2" in kind:
        f = f / f.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    return f


KINDS = ("plain", "l2", "center_l2", "power_l2", "power_center_l2", "supportcenter_l2")

for layer in ("embedding", "conv"):
    for views in (False, True):
        t = time.time()
        per_member = []
        for eng in engines:
            bf = features(eng, base_x, views, layer)
            rows = [  # support rows in label order (one shot: row k is class k's prototype)
                (
                    features(eng, e.support_x[e.support_y.argsort()].float(), views, layer),
                    features(eng, e.query_x.float(), views, layer),
                )
                for e in eps
            ]
            per_member.append((bf, rows))
        print(layer, "views" if views else "plain", f"embedded in {time.time() - t:.0f}s", flush=True)
        for kind in KINDS:
            for scale in (1.0, 10.0) if len(engines) > 1 else (1.0,):
                accs = []
                for i, ep in enumerate(eps):
                    probs = 0
                    for bf, rows in per_member:
                        s, q = rows[i]
                        reference = s if kind.startswith("support") else bf  # support: inductive too
                        s2, q2 = transform(s, reference, kind), transform(q, reference, kind)
                        d = torch.cdist(q2, s2).pow(2)
                        d = d / d.mean() * scale  # comparable scale across transforms and members
                        probs = probs + (-d).softmax(1)
                    accs.append((probs.argmax(1) == ep.query_y).float().mean().item())
                e = 1 - np.mean(accs)
                ci = 1.96 * np.std(accs, ddof=1) / np.sqrt(len(accs))
                print(f"  {kind:18s} scale {scale:g}: {e:.1%} ± {ci:.1%}", flush=True)
