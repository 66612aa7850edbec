"""One-off probe behind the "Why Conv-4 MAML is not 1.5x higher" note in BENCHMARKS.md (prints, writes nothing).

PYTHONPATH=. python benchmarks/probes/conv4_maml_profile.py
"""

import torch
from torch.profiler import ProfilerActivity, profile

from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource
from engine.training import meta_step

torch.set_num_threads(1)
torch.manual_seed(0)
model = CausalMetaModel(input_dim=(1, 28, 28), hidden_dim=64, output_dim=5, conv_channels=64, num_mechanisms=4)
cfg = OneShotMetaLearningConfig(
    inner_lr=0.4, num_inner_steps=1, causal_weight=0, enable_causal_priors=False, grad_clip=0
)
L = make_learner(model, cfg, "classification")
src = ImageTaskSource(OMNIGLOT_DIR / "images_background_small1.zip", n_way=5)
eps = src.episodes("train", 8, 1, 5, seed=1)
opt = torch.optim.Adam(model.parameters(), 1e-3)
for _ in range(2):
    meta_step(L, opt, eps, 0)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        meta_step(L, opt, eps, 0)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
