"""Data-parallel meta-training (engine/distributed.py): N processes reproduce one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.cli import main
from engine.distributed import shard
from engine.tasks import make_task_source
from engine.training import meta_step, sample_meta_batch

ROOT = Path(__file__).resolve().parents[1]
CURVES = ("train_loss", "train_metric", "val_loss", "val_metric")
CASES = {  # an uneven share (5 tasks over 2 processes) on the vmap path; Conv-4 loops over its tasks
    "maml_sinusoid": (
        dict(algorithm="MAML_CAUSAL", meta_batch_size=5, num_meta_iterations=4, val_episodes=5, eval_interval=2),
        ("sinusoid", {}),
    ),
    "prototypical_conv4": (
        dict(
            algorithm="PROTOTYPICAL_CAUSAL",
            n_way=3,
            hidden_dim=16,
            conv_channels=16,  # GroupNorm's groups of 2 channels: conv biases have a gradient
            meta_batch_size=4,
            num_meta_iterations=3,
            val_episodes=3,
            eval_interval=2,
        ),
        ("images", {"n_way": 3}),
    ),
}


def test_shares_are_contiguous_in_order_and_cover_the_batch_once():
    for n in range(0, 9):
        for size in (1, 2, 3, 4):
            shares = [shard(list(range(n)), r, size) for r in range(size)]
            assert sum(shares, []) == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _train(case: str) -> dict:
    """One meta-step's gradients on a fresh model, then a short meta_train run's curves and weights."""
    fields, (source_name, source_kwargs) = CASES[case]
    config = OneShotMetaLearningConfig(device="cpu", **fields)
    source = make_task_source(source_name, **source_kwargs)
    engine = OneShotMetaLearningEngine(config)
    engine.initialize_for_source(source)
    optimizer = torch.optim.Adam(engine.learner.parameters(), lr=config.outer_lr)
    meta_step(engine.learner, optimizer, sample_meta_batch(source, config, np.random.default_rng(7)), config.grad_clip)
    grads = {n: p.grad.clone() for n, p in engine.learner.named_parameters() if p.grad is not None}
    engine = OneShotMetaLearningEngine(config)
    history = engine.meta_train_sync(source)
    weights = {n: p.detach().clone() for n, p in engine.learner.named_parameters()}
    return {"grads": grads, "history": history, "weights": weights}


def _worker(rank: int, size: int, store: str, case: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        torch.save(_train(case), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_reproduce_one_process_gradient_losses_and_weights(tmp_path, case):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: kernels on other thread counts round differently
    try:
        one = _train(case)
    finally:
        torch.set_num_threads(threads)
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), case, out), nprocs=2, join=True)
    scale = max(float(g.abs().max()) for g in one["grads"].values())
    # Adam is scale-free, so the gradient itself is compared: the all-reduce must give the one-process mean.
    # A weight whose gradient is at rounding level (e.g. one the loss does not depend on: a shift of every
    # embedding, which prototype distances cancel) gets a noise-driven, lr-sized Adam step: not compared.
    live = {n: g.abs() >= 1e-6 * scale for n, g in one["grads"].items()}
    for rank in (0, 1):
        two = torch.load(f"{out}.{rank}", weights_only=True)  # tensors and plain lists only
        assert two["grads"].keys() == one["grads"].keys()
        for name, grad in one["grads"].items():
            torch.testing.assert_close(two["grads"][name], grad, rtol=1e-5, atol=1e-6 * scale)
        for curve in CURVES:
            assert len(two["history"][curve]) == len(one["history"][curve]) > 0
            np.testing.assert_allclose(two["history"][curve], one["history"][curve], rtol=1e-5, atol=1e-6)
        for name, value in one["weights"].items():
            mask = live.get(name, torch.ones_like(value, dtype=torch.bool))
            torch.testing.assert_close(two["weights"][name][mask], value[mask], rtol=1e-4, atol=1e-5)
    assert sum(int(m.sum()) for m in live.values()) >= 0.5 * sum(m.numel() for m in live.values())  # most compared
    # the run moved the weights, so equal weights are not just the shared initialisation
    fresh = OneShotMetaLearningEngine(OneShotMetaLearningConfig(device="cpu", **CASES[case][0]))
    fresh.initialize_for_source(make_task_source(CASES[case][1][0], **CASES[case][1][1]))
    moved = [n for n, p in fresh.learner.named_parameters() if not torch.allclose(p, one["weights"][n])]
    assert len(moved) >= len(one["weights"]) // 2


TRAIN = ["train", "--source", "sinusoid", "--num-meta-iterations", "6", "--meta-batch-size", "8"]
TRAIN += ["--val-episodes", "4", "--eval-interval", "3", "--quiet"]


def _torchrun(args: list[str], script: list[str] | None = None) -> subprocess.CompletedProcess:
    # --standalone: a free local port for the rendezvous, so runs beside other torchrun jobs do not collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += script or ["-m", "engine"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.slow
def test_torchrun_train_writes_one_checkpoint_with_world_size_and_the_one_process_result(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*TRAIN, "--out", str(one), "--json", str(one) + ".json"]) == 0
    run = _torchrun([*TRAIN, "--out", str(two), "--json", str(two) + ".json"])
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "one.json", "two", "two.json"]
    single, double = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert run.stdout.count("checkpoint=") == 1  # rank 0 alone reports
    for curve in CURVES:
        np.testing.assert_allclose(double["history"][curve], single["history"][curve], rtol=1e-5, atol=1e-6)
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_with_a_clear_message_and_the_last_good_checkpoint_resumes(tmp_path):
    out = tmp_path / "ck"
    run = _torchrun([*TRAIN, "--save-every", "2", "--out", str(out)], script=["tests/distributed_failing_rank.py"])
    assert run.returncode != 0
    assert "error: rank 1 of 2: injected failure on rank 1; the run is stopped" in run.stderr
    engine = OneShotMetaLearningEngine.from_checkpoint(out, device="cpu")
    assert engine.history.iteration == [0, 1]  # saved after iteration 2; rank 1 failed in the third
    # --resume continues it under torchrun as one process would
    shutil.copytree(out, tmp_path / "one")
    assert main([*TRAIN, "--resume", str(tmp_path / "one"), "--out", str(tmp_path / "one")]) == 0
    resumed = _torchrun([*TRAIN, "--resume", str(out), "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    one = OneShotMetaLearningEngine.from_checkpoint(tmp_path / "one", device="cpu").history
    two = OneShotMetaLearningEngine.from_checkpoint(out, device="cpu").history
    assert two.iteration == one.iteration == list(range(6))  # --num-meta-iterations is the total
    np.testing.assert_allclose(two.train_loss, one.train_loss, rtol=1e-5, atol=1e-6)
