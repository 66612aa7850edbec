"""Probe: train the Conv-4 embedding as a plain classifier over every small1 training class
(rotations and mirrors as classes, Koch distortions and shifts), then save it for
omniglot_screen.py to score with prototypes (prints; saves only the checkpoint it is given).

PYTHONPATH=. python benchmarks/probes/omniglot_pretrain.py /tmp/pre.pt MINUTES [cosine|linear]
PYTHONPATH=. python benchmarks/probes/omniglot_screen.py /tmp/pre.pt
"""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from engine import create_one_shot_meta_learning_engine
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource
from engine.tasks.images import random_affine, random_shift

torch.set_num_threads(1)
torch.manual_seed(0)
ck, minutes, head_kind = sys.argv[1], float(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "cosine")
src = ImageTaskSource(
    OMNIGLOT_DIR / "images_background_small1.zip",
    n_way=20,
    rotations=True,
    mirrors=True,
    split_fractions=(0.9, 0.1, 0.0),
    seed=0,
    augment_shift=2,
    augment_affine=1,
)
names = src.class_names["train"]
images = np.stack([src.images_of_class(n) for n in names])  # (C, 20, S, S)
C, per = images.shape[:2]
print("classes", C, "images per class", per, flush=True)
eng = create_one_shot_meta_learning_engine(
    algorithm="PROTOTYPICAL_CAUSAL",
    n_way=20,
    hidden_dim=64,
    conv_channels=64,
    num_mechanisms=4,
    causal_weight=0.0,
    enable_causal_priors=False,
    seed=0,
    device="cpu",
)
eng.initialize_for_source(src)
model = eng.learner.model
dim = 64
weight = torch.nn.Parameter(torch.randn(C, dim) * 0.01)
scale = torch.nn.Parameter(torch.tensor(10.0))
opt = torch.optim.Adam([*model.parameters(), weight, scale], lr=1e-3)
rng = np.random.default_rng(0)
t0, it, losses = time.process_time(), 0, []
while time.process_time() - t0 < minutes * 60:
    cls = rng.integers(0, C, 128)
    idx = rng.integers(0, per, 128)
    x = random_shift(random_affine(images[cls, idx], 1.0, rng), 2, rng)
    f = model(torch.from_numpy(x)[:, None])
    if head_kind == "cosine":
        logits = scale * F.normalize(f, dim=1) @ F.normalize(weight, dim=1).T
    else:
        logits = f @ weight.T
    loss = F.cross_entropy(logits, torch.from_numpy(cls))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
    it += 1
    if it % 200 == 0:
        print(it, f"{(time.process_time() - t0) / 60:.1f} min", f"loss {np.mean(losses[-200:]):.3f}", flush=True)
eng.save_sync(ck)
print("saved", ck, it, "iterations", flush=True)
