"""Config evolution (engine/evolve.py): search space, a tiny study, pruning, shared storage, CLI."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from engine import MetaLearningAlgorithm, OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.cli import main
from engine.evolve import EvolutionError, config_params, evolve_config, search_space, trial_config
from engine.model import CausalMetaModel
from engine.tasks import SinusoidTaskSource

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "meta_batch_size": 2,
    "support_shots": 5,
    "query_shots": 5,
    "val_episodes": 2,
    "hidden_dim": 16,
}
optuna.logging.set_verbosity(optuna.logging.WARNING)


class RecordingSinusoids(SinusoidTaskSource):
    """Sinusoids that note which splits were sampled (evolution must leave "test" alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.splits: set[str] = set()

    def sample_task(self, split, rng):
        self.splits.add(split)
        return super().sample_task(split, rng)


def tiny_config(**changes) -> OneShotMetaLearningConfig:
    return OneShotMetaLearningConfig(**{**TINY, **changes})


@pytest.mark.parametrize("algorithm", list(MetaLearningAlgorithm))
def test_search_space_is_valid_for_each_learner(algorithm):
    space = search_space(algorithm)
    for name, dist in space.items():
        low, high = OneShotMetaLearningConfig.field_range(name)
        values = dist.choices if hasattr(dist, "choices") else (dist.low, dist.high)
        assert all(low <= v <= high for v in values), (name, values)
    if algorithm == MetaLearningAlgorithm.GRADIENT_CAUSAL:
        assert "adaptation_steps" not in space  # Meta-SGD adapts with at most num_inner_steps
    # Random points of the space build configs and models of the learner.
    sampler = optuna.samplers.RandomSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    base = OneShotMetaLearningConfig(algorithm=algorithm)
    for _ in range(8):
        trial = study.ask(space)
        cfg = trial_config(base, trial.params, budget=10)
        assert cfg.num_meta_iterations == 10 and cfg.algorithm == algorithm
        assert cfg.hidden_dim % cfg.num_mechanisms == 0
        model = CausalMetaModel(3, cfg.hidden_dim, 2, cfg.num_mechanisms)
        assert model.mechanism_dim * cfg.num_mechanisms == cfg.hidden_dim
        study.tell(trial, 0.0)
    # The default config's values lie in the space once snapped (it is enqueued as is).
    params = config_params(base, space)
    assert all(space[k]._contains(space[k].to_internal_repr(v)) for k, v in params.items())


@pytest.mark.slow
def test_tiny_study_returns_a_valid_config_and_its_value_without_touching_test_tasks():
    src = RecordingSinusoids()
    current = tiny_config(outer_lr=0.003, inner_lr=0.02)
    records = []
    result = evolve_config(src, current, n_trials=3, budget=4, objective_episodes=4, callback=records.append)
    assert isinstance(result.config, OneShotMetaLearningConfig)
    assert result.config.num_meta_iterations == current.num_meta_iterations  # the budget is per trial only
    assert result.metric == "mse" and result.direction == "minimize" and math.isfinite(result.value)
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert result.value == min(t["value"] for t in done)
    assert result.trials[0]["origin"] == "current config"
    assert result.trials[0]["params"] == config_params(current, search_space(current.algorithm))
    best = next(t for t in result.trials if t["number"] == result.best_trial)
    assert all(getattr(result.config, k) == v for k, v in best["params"].items())
    assert "test" not in src.splits and {"train", "val"} <= src.splits
    assert [r["trial"] for r in records if r["event"] == "trial"] == [0, 1, 2]
    assert any(r["event"] == "intermediate" for r in records)
    json.dumps(result.to_dict())  # JSON-able


@pytest.mark.slow
def test_weak_trial_is_pruned_from_its_validation_curve(tmp_path):
    # Three learners that adapt run first, then one that barely adapts (one step at the search
    # space's smallest inner_lr): its best validation value so far lies above the others' median
    # after the warm-up half of its budget, so the median pruner stops it before the end.
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    space = search_space(MetaLearningAlgorithm.MAML_CAUSAL)
    good = tiny_config(outer_lr=0.03, inner_lr=0.02, num_inner_steps=1, adaptation_steps=5, val_episodes=10)
    study = optuna.create_study(storage=storage, study_name="prune", direction="minimize")
    for hidden in (16, 24, 32):
        study.enqueue_trial(config_params(good.replace(hidden_dim=hidden), space))
    study.enqueue_trial(config_params(good.replace(inner_lr=0.001, adaptation_steps=1), space))
    budget = 40
    result = evolve_config(
        SinusoidTaskSource(), good, n_trials=4, budget=budget, objective_episodes=4, storage=storage, study_name="prune"
    )
    states = [t["state"] for t in result.trials[:4]]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"], result.trials
    steps = [int(k) for k in result.trials[3]["intermediate"]]
    assert budget // 2 <= max(steps) < budget - 1, steps  # after the warm-up half, before the end of its budget
    assert result.trials[3]["note"] == f"pruned at iteration {max(steps)}"


def test_performance_history_warm_starts_and_says_what_it_skipped():
    current = tiny_config()
    past = current.replace(outer_lr=0.005, hidden_dim=24)
    history = [
        {"config": past.to_dict(), "value": 1.5},
        {"adaptation_quality": {"loss": 1.0, "mse": 1.0}},  # an adaptation result: no config
        {"config": past.replace(algorithm="GRADIENT_CAUSAL").to_dict(), "value": 1.0},
    ]
    result = evolve_config(SinusoidTaskSource(), current, history, n_trials=1, budget=2, objective_episodes=2)
    assert result.seeding["warm_started"] == 1
    assert "no config" in result.seeding["skipped"][0] and "another learner" in result.seeding["skipped"][1]
    warm = [t for t in result.trials if t["origin"] == "performance_history"]
    assert len(warm) == 1 and warm[0]["params"]["hidden_dim"] == 24 and warm[0]["value"] == 1.5
    assert sum(t["origin"] != "performance_history" for t in result.trials) == 1  # n_trials counts new trials


def test_engine_coroutine_and_sync_twin():
    eng = OneShotMetaLearningEngine(tiny_config(num_meta_iterations=2))
    with pytest.raises(EvolutionError, match="no task source"):
        eng.evolve_meta_config_sync(n_trials=1)
    eng.meta_train_sync(SinusoidTaskSource())
    evolved = asyncio.run(
        eng.evolve_meta_config(
            current_config=eng.config, performance_history=[], n_trials=2, timeout=120, budget=2, objective_episodes=2
        )
    )
    assert isinstance(evolved, OneShotMetaLearningConfig) and eng.evolution.config == evolved
    assert math.isfinite(eng.evolution.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n_trials": 0}, "n_trials must be an integer >= 1"),
        ({"n_trials": 2, "timeout": -1}, "timeout must be a positive number"),
        ({"n_trials": 2, "budget": 0}, "budget must be"),
        ({"n_trials": 1, "storage": "nosuchdb://host/x"}, "storage 'nosuchdb://host/x' cannot be opened"),
        ({"n_trials": 1, "storage": "postgresql://u:secret@/x"}, r"postgresql://u:\*\*\*@/x"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(EvolutionError, match=message) as info:
        evolve_config(SinusoidTaskSource(), tiny_config(), **kwargs)
    assert "secret" not in str(info.value)


def test_embedding_learner_on_regression_is_a_clear_error():
    with pytest.raises(EvolutionError, match="needs classification tasks"):
        evolve_config(SinusoidTaskSource(), tiny_config(algorithm="PROTOTYPICAL_CAUSAL"), n_trials=1)


def _cli_args(out: Path, storage: str | None, trials: int = 2, *extra: str) -> list[str]:
    args = ["evolve", "--source", "sinusoid", "--trials", str(trials), "--budget", "3", "--objective-episodes", "3"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    args += ["--quiet", "--json", str(out), *extra]
    return args + (["--storage", storage] if storage else [])


@pytest.mark.slow
def test_cli_evolve_writes_json_with_a_valid_config(tmp_path, capsys):
    out = tmp_path / "evolve.json"
    assert main(_cli_args(out, str(tmp_path / "study.db"))) == 0
    data = json.loads(out.read_text())
    assert data["command"] == "evolve" and data["metric"] == "mse" and math.isfinite(data["value"])
    cfg = OneShotMetaLearningConfig.from_dict(data["config"])
    assert cfg.hidden_dim == data["trials"][data["best_trial"]]["params"]["hidden_dim"]
    assert data["counts"]["COMPLETE"] + data["counts"]["PRUNED"] == 2
    assert "best validation mse" in capsys.readouterr().out
    # A second run on the same storage continues that study: 2 more trials, 4 in all.
    assert main(_cli_args(out, str(tmp_path / "study.db"), 4, "--history", str(out))) == 0
    again = json.loads(out.read_text())
    assert sum(t["origin"] != "performance_history" for t in again["trials"]) == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--trials", "0"], "argument --trials: must be an integer in [1, 100000]; got '0'"),
        (["--trials", "1", "--storage", "nosuchdb://x"], "cannot be opened"),
    ],
)
def test_cli_evolve_bad_input(args, message, capsys):
    assert main(["evolve", "--source", "sinusoid", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_two_worker_processes_finish_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "engine", *_cli_args(tmp_path / f"w{i}.json", storage, 6, "--sampler-seed", str(i))],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="evolve-sinusoid-maml_causal", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7  # the total is shared; a race may start one extra trial
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both workers ran trials"
    # The worker that finished last saw every trial: it reports the study's best.
    best = min(t.value for t in finished if t.state == optuna.trial.TrialState.COMPLETE)
    values = [json.loads((tmp_path / f"w{i}.json").read_text())["value"] for i in range(2)]
    assert any(np.isclose(v, best) for v in values), (values, best)


def test_journal_storage_keeps_the_study_for_the_next_run(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    kwargs = dict(budget=2, objective_episodes=2, storage=storage, study_name="j")
    evolve_config(SinusoidTaskSource(), tiny_config(), n_trials=1, **kwargs)
    result = evolve_config(SinusoidTaskSource(), tiny_config(), n_trials=2, **kwargs)
    assert [t["number"] for t in result.trials] == [0, 1] and result.storage == storage


@pytest.mark.slow
def test_embedding_learner_evolves_on_classification_tasks_by_accuracy():
    from engine.tasks import make_task_source

    src = make_task_source("scm", task_type="classification")
    cfg = tiny_config(algorithm="PROTOTYPICAL_CAUSAL", support_shots=2)
    result = evolve_config(src, cfg, n_trials=1, budget=2, objective_episodes=2)
    assert result.metric == "accuracy" and result.direction == "maximize" and 0 <= result.value <= 1
    assert set(result.trials[0]["params"]) == set(search_space("PROTOTYPICAL_CAUSAL"))
