"""Determinism: the same seed gives the same training curve, weights and adaptation
predictions (exactly), through the engine API and through ``python -m engine``; another
seed gives another curve (so these tests can fail)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine import create_one_shot_meta_learning_engine
from engine.cli import main
from engine.tasks import SCMTaskSource, SinusoidTaskSource
from tests.conftest import ROOT

CURVES = ("iteration", "train_loss", "train_metric", "val_iteration", "val_loss", "val_metric")
SMALL = dict(
    num_meta_iterations=12,
    meta_batch_size=2,
    support_shots=2,
    query_shots=4,
    num_inner_steps=1,
    eval_interval=4,
    val_episodes=3,
    hidden_dim=16,
    adaptation_steps=3,
    device="cpu",
)
CASES = {
    "MAML_CAUSAL": (lambda: SinusoidTaskSource(), {}),
    "PROTOTYPICAL_CAUSAL": (lambda: SCMTaskSource(num_variables=4, task_type="classification"), {}),
}


def run(algorithm: str, seed: int, disturb: int, iterations: int = 12) -> dict:
    """Train and adapt; ``disturb`` scrambles every global RNG in between, which must not matter."""
    make_source, extra = CASES[algorithm]
    source = make_source()
    config = {**SMALL, **extra, "num_meta_iterations": iterations}
    eng = create_one_shot_meta_learning_engine(algorithm=algorithm, seed=seed, **config)
    eng.initialize_for_source(source)
    random.seed(disturb)
    np.random.seed(disturb)
    torch.manual_seed(disturb)
    history = eng.meta_train_sync(source)
    task = source.tasks("test", 1, seed=11)[0]
    adapted = eng.one_shot_adapt_sync(task, seed=3)
    return {
        "curves": {k: history[k] for k in CURVES},
        "weights": {k: v.clone() for k, v in eng.learner.state_dict().items()},
        "predictions": adapted["predictions"],
        "loss": adapted["adaptation_quality"]["loss"],
        "trace": adapted["trace"],
    }


@pytest.mark.parametrize("algorithm", list(CASES))
def test_same_seed_same_curve_weights_and_predictions(algorithm):
    a, b = run(algorithm, seed=4, disturb=1), run(algorithm, seed=4, disturb=2)
    assert len(a["curves"]["train_loss"]) == SMALL["num_meta_iterations"]
    assert a["curves"] == b["curves"]  # exactly: the same floats, not merely close
    assert a["weights"].keys() == b["weights"].keys()
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert a["predictions"] == b["predictions"] and a["loss"] == b["loss"] and a["trace"] == b["trace"]
    c = run(algorithm, seed=5, disturb=1, iterations=3)  # another seed: another curve from the start
    assert c["curves"]["train_loss"] != a["curves"]["train_loss"][:3]
    assert c["predictions"] != a["predictions"] or c["loss"] != a["loss"]


def test_repeated_adaptation_is_identical_and_leaves_the_meta_weights():
    eng = create_one_shot_meta_learning_engine(**{**SMALL, "num_meta_iterations": 4})
    source = SinusoidTaskSource()
    eng.meta_train_sync(source)
    before = {k: v.clone() for k, v in eng.learner.state_dict().items()}
    task = source.tasks("test", 1, seed=2)[0]
    first = eng.one_shot_adapt_sync(task, seed=9)
    second = eng.one_shot_adapt_sync(task, seed=9)
    assert first["predictions"] == second["predictions"] and first["trace"] == second["trace"]
    assert all(torch.equal(v, before[k]) for k, v in eng.learner.state_dict().items())
    assert eng.one_shot_adapt_sync(task, seed=10)["predictions"] != first["predictions"]


# ---------------------------------------------------------------------------- the CLI
TRAIN = [
    "--source",
    "sinusoid",
    "--num-meta-iterations",
    "8",
    "--meta-batch-size",
    "2",
    "--support-shots",
    "3",
    "--num-inner-steps",
    "1",
    "--eval-interval",
    "3",
    "--adaptation-steps",
    "2",
    "--val-episodes",
    "2",
    "--hidden-dim",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


def test_cli_same_seed_twice_gives_identical_curves_weights_and_adaptation(tmp_path):
    # Two separate processes at once, with different hash seeds (set/dict order must not matter).
    procs = []
    for i in (1, 2):
        d = tmp_path / f"run{i}"
        cmd = (
            f"{sys.executable} -m engine train {' '.join(TRAIN)} --seed 7 --out {d}/ck --json {d}/train.json && "
            f"{sys.executable} -m engine adapt --checkpoint {d}/ck --task-seed 5 --json {d}/adapt.json"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(i)}
        procs.append(subprocess.Popen(["sh", "-c", cmd], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    train = [json.loads((tmp_path / f"run{i}" / "train.json").read_text()) for i in (1, 2)]
    adapt = [json.loads((tmp_path / f"run{i}" / "adapt.json").read_text()) for i in (1, 2)]
    curves = [{k: t["history"][k] for k in CURVES} for t in train]
    assert len(curves[0]["train_loss"]) == 8 and curves[0] == curves[1]
    assert train[0]["test"] == train[1]["test"] and train[0]["config"] == train[1]["config"]
    weights = [load_file(tmp_path / f"run{i}" / "ck" / "model.safetensors") for i in (1, 2)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert adapt[0]["predictions"] == adapt[1]["predictions"] and adapt[0]["targets"] == adapt[1]["targets"]
    assert adapt[0]["adaptation_quality"] == adapt[1]["adaptation_quality"] and adapt[0]["trace"] == adapt[1]["trace"]

    # another seed, same everything else: another curve and other weights
    other = tmp_path / "other.json"
    assert main(["train", *TRAIN, "--seed", "8", "--out", str(tmp_path / "other"), "--json", str(other)]) == 0
    other_curve = json.loads(other.read_text())["history"]
    assert other_curve["iteration"] == curves[0]["iteration"]
    assert other_curve["train_loss"] != curves[0]["train_loss"]
    other_weights = load_file(tmp_path / "other" / "model.safetensors")
    assert not all(torch.equal(other_weights[k], weights[0][k]) for k in weights[0])


def _forbid_global_seed(monkeypatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the engine set torch's process-wide seed")

    monkeypatch.setattr(torch, "manual_seed", refuse)
    monkeypatch.setattr(torch.random, "manual_seed", refuse)


def test_the_engine_never_sets_the_process_wide_seed(monkeypatch):
    _forbid_global_seed(monkeypatch)
    for algorithm in ("MAML_CAUSAL", "RELATION_CAUSAL"):
        source = SCMTaskSource(num_variables=4, task_type="classification")
        eng = create_one_shot_meta_learning_engine(algorithm=algorithm, seed=2, **{**SMALL, "num_meta_iterations": 2})
        eng.initialize_for_source(source)
        eng.meta_train_sync(source)
        eng.discover_causal_patterns_sync(source, n_tasks=2)


def test_concurrent_builds_with_one_seed_give_one_model():
    """Sessions building models at once (and another thread drawing from the process-wide
    generator all the while) all get the weights a lone build gets."""
    import threading

    def build(algorithm: str) -> dict:
        eng = create_one_shot_meta_learning_engine(algorithm=algorithm, seed=9, hidden_dim=16, device="cpu")
        eng.initialize_sync(6, 3, "classification")
        return {k: v.clone() for k, v in eng.learner.state_dict().items()}

    alone = {alg: build(alg) for alg in ("MAML_CAUSAL", "RELATION_CAUSAL")}
    results: list[tuple[str, dict]] = []
    done = threading.Event()

    def disturb() -> None:
        while not done.is_set():
            torch.rand(64)
            torch.manual_seed(int(torch.randint(0, 1000, ())))

    def session(alg: str) -> None:
        for _ in range(3):
            results.append((alg, build(alg)))

    noise = threading.Thread(target=disturb)
    noise.start()
    workers = [threading.Thread(target=session, args=(alg,)) for alg in list(alone) * 4]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    noise.join()
    assert len(results) == 24
    for alg, weights in results:
        assert all(torch.equal(weights[k], alone[alg][k]) for k in alone[alg]), alg


def test_explicit_generator_draws_what_the_process_wide_seed_drew():
    """Recorded results stay reproducible: a model built from its own generator equals the one
    that seeding the process-wide generator with the same seed built."""
    from engine.model import CausalMetaModel

    for shape in (1, (1, 28, 28)):
        torch.random.manual_seed(5)
        old = CausalMetaModel(shape, 32, 4, 4).state_dict()
        new = CausalMetaModel(shape, 32, 4, 4, generator=torch.Generator().manual_seed(5)).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old)
        other = CausalMetaModel(shape, 32, 4, 4, generator=torch.Generator().manual_seed(6)).state_dict()
        assert not torch.equal(other["mech_weight"], new["mech_weight"])
