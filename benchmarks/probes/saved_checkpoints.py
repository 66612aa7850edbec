"""Shared by the probes that rescore saved Omniglot checkpoints: the engines, and the benchmark's
own 400 20-way within-alphabet test episodes of the alphabets that the training set (small1 unless
told) lacks."""

import os

import torch

import benchmarks.omniglot_quality as oq
from engine import create_one_shot_meta_learning_engine


def load_engines_and_test_episodes(paths: list[str], train: str = "small1") -> tuple[list, list]:
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    engines = []
    for path in paths:
        eng = create_one_shot_meta_learning_engine(algorithm="PROTOTYPICAL_CAUSAL", n_way=20, device="cpu")
        eng.load_sync(path)
        engines.append(eng)
    _, test_groups, other = oq.SETS[train]
    size = engines[0].source_info["image_size"]
    source = oq.unseen_alphabets_source(oq.SETS[other][0], test_groups, 20, size)
    return engines, list(source.episodes("test", 400, 1, 1, seed=20))  # the benchmark's seed for 20-way
