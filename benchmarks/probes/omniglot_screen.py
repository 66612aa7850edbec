"""One-off probe behind the 5-minute Omniglot screens in BENCHMARKS.md (prints; saves only the
checkpoint it is given, to reuse it). Trains with omniglot_quality (its flags after the checkpoint
path; 5 CPU-minutes on one thread), then scores the same 400 20-way episodes of the unseen small2
alphabets plainly ("plain"), on L2-normalised embeddings ("norm"), with shifted views of the support
only ("s5") and of support and queries ("s5q", what test_time_shifts = 1 does; "s9q": 9 views).

PYTHONPATH=. python benchmarks/probes/omniglot_screen.py /tmp/mirrors.pt --augment-shift 2 --augment-affine 1 --mirrors
"""

import os
import sys
import time

import numpy as np
import torch

import benchmarks.omniglot_quality as oq
from engine import create_one_shot_meta_learning_engine
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

torch.set_num_threads(1)

ck = sys.argv[1]
extra = sys.argv[2:]
captured = {}


def grab(engines, *a, **k):
    captured["eng"] = engines[0]
    return {"accuracy": 0, "error": 1, "ci95": 0, "episodes": 0}


if not os.path.exists(ck):
    oq.evaluate_within_alphabet = grab
    oq.main(
        ["--train", "small1", "--minutes", "5", "--threads", "1", "--cpu-time", "--no-write", "--episodes", "1"] + extra
    )
    eng = captured["eng"]
    eng.save_sync(ck)
else:
    eng = create_one_shot_meta_learning_engine(algorithm="PROTOTYPICAL_CAUSAL", n_way=20, device="cpu")
    eng.load_sync(ck)
model = eng.learner.model.eval()
size = eng.source_info["image_size"]
src = ImageTaskSource(
    OMNIGLOT_DIR / "images_background_small2.zip",
    n_way=20,
    within_group=True,
    split_fractions=(0, 0, 1),
    include_groups=["Japanese_(katakana)", "Sanskrit", "Tagalog"],
    image_size=size,
)
eps = src.episodes("test", 400, 1, 1, seed=20)


def shifts(x, offs):
    out = []
    for dy, dx in offs:
        out.append(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
    return torch.stack(out)  # (V, B, 1, S, S)


O5 = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
O9 = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]


def emb(x):
    with torch.no_grad():
        return model(x.float())


def acc(variant):
    accs = []
    for ep in eps:
        sx, qx = ep.support_x.float(), ep.query_x.float()
        if variant == "plain":
            s, q = emb(sx), emb(qx)
        elif variant == "norm":
            s, q = torch.nn.functional.normalize(emb(sx), dim=1), torch.nn.functional.normalize(emb(qx), dim=1)
        elif variant.startswith("s"):
            offs = O5 if variant[1] == "5" else O9
            V = len(offs)
            s = emb(shifts(sx, offs).flatten(0, 1)).view(V, len(sx), -1).mean(0)
            q = emb(shifts(qx, offs).flatten(0, 1)).view(V, len(qx), -1).mean(0) if variant.endswith("q") else emb(qx)
        d = torch.cdist(q, s[torch.argsort(ep.support_y)])
        pred = d.argmin(1)
        accs.append((pred == ep.query_y).float().mean().item())
    return 1 - np.mean(accs), 1.96 * np.std(accs, ddof=1) / np.sqrt(len(accs))


for v in ["plain", "norm", "s5", "s5q", "s9q"]:
    t = time.time()
    e, ci = acc(v)
    print(v, f"{e:.1%} ± {ci:.1%}", f"{time.time() - t:.0f}s", flush=True)
