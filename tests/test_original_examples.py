"""The original description's examples, run as written (the import line aside: ``from engine
import ...``) on small built-in tasks; each asserts that what it prints is meaningful.

The engine is trained briefly on SCM regression tasks, so discovery finds few mechanisms: the
continual-learning loop and the insights must work right after such a run."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import re

import networkx as nx
import numpy as np
import pytest
import torch

from engine import (
    CausalMechanism,
    CausalMechanismType,
    CausalMetaModel,
    MAMLCausalLearner,
    MetaLearningAlgorithm,
    OneShotMetaLearningConfig,
    PrototypicalCausalLearner,
    create_one_shot_meta_learning_engine,
)
from engine.tasks import Episode, SCMTaskSource, SinusoidTaskSource

FAST = dict(
    num_meta_iterations=40,
    meta_batch_size=8,
    inner_lr=0.05,
    num_inner_steps=2,
    adaptation_steps=3,
    eval_interval=20,
    val_episodes=4,
    hidden_dim=16,
    mechanism_threshold=0.3,  # a short training: keep the few mechanisms it has
    device="cpu",
)


TRAINED_ITERATIONS = 150  # short: discovery finds a few mechanisms (the prior and a feature or two)


def numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]


def support_of(task, shots: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ep = task.sample_episode(shots, 1, np.random.default_rng(seed))
    return ep.support_x.numpy(), ep.support_y.numpy()


@pytest.fixture(scope="module")
def trained():
    """Examples 1, 2 and 4 as written: build, initialise, meta-train, discover, print insights
    (about 15 s on 2 cores: the tests that use it are marked slow)."""
    source = SCMTaskSource(seed=4)
    source_tasks = source.tasks("train", 16, seed=0)
    tasks = source.tasks("val", 8, seed=2)

    async def example():
        engine = create_one_shot_meta_learning_engine(
            algorithm=MetaLearningAlgorithm.MAML_CAUSAL, **{**FAST, "num_meta_iterations": TRAINED_ITERATIONS}
        )
        await engine.initialize(input_dim=5, output_dim=1)
        results = await engine.meta_train(source_tasks)
        await engine.discover_causal_patterns(tasks)
        insights = engine.get_mechanism_insights()
        print(f"Total mechanisms: {insights['total_mechanisms']}")
        print(f"Average effectiveness: {insights['average_effectiveness']:.3f}")
        return engine, results

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        engine, results = asyncio.run(example())
    return engine, source, results, printed.getvalue()


@pytest.mark.slow
def test_initialize_and_meta_train(trained) -> None:
    engine, _, results, _ = trained
    assert engine.is_trained and len(results["train_loss"]) == TRAINED_ITERATIONS
    assert all(math.isfinite(v) for v in results["train_loss"])


@pytest.mark.slow
def test_one_shot_adapt(trained, capsys) -> None:
    engine, source, *_ = trained
    target_task = source.tasks("test", 1, seed=3)[0]
    support_data = support_of(target_task)

    async def example():
        result = await engine.one_shot_adapt(target_task, support_data)
        print(f"Adaptation time: {result['adaptation_time']:.3f}s")
        print(f"Quality: {result['adaptation_quality']}")
        return result

    result = asyncio.run(example())
    out = capsys.readouterr().out
    assert "Adaptation time:" in out and "mse" in out
    assert all(math.isfinite(v) for v in numbers(out))
    assert result["adaptation_quality"]["mse"] >= 0


@pytest.mark.slow
def test_discovery_insights_and_average_effectiveness(trained) -> None:
    engine, *_, out = trained
    assert re.search(r"Total mechanisms: \d+", out)
    # 8 tasks given: a quarter is held out by default, so effectiveness is measured
    assert engine.discovery_report["held_out_tasks"] == 2
    insights = engine.get_mechanism_insights()
    assert math.isfinite(insights["average_effectiveness"]), insights["effectiveness_note"]
    assert -1.0 <= float(out.split("Average effectiveness:")[1]) <= 1.0


@pytest.mark.slow
def test_discovered_mechanisms_are_records_with_attributes(trained, capsys) -> None:
    engine, *_ = trained
    assert engine.discovered_mechanisms, "discovery kept at least the meta-learned prior"
    for mech in engine.discovered_mechanisms:
        print(mech.mechanism_type, mech.causal_strength, mech.effectiveness)
    out = capsys.readouterr().out
    for mech, line in zip(engine.discovered_mechanisms, out.splitlines(), strict=True):
        assert isinstance(mech, CausalMechanism) and isinstance(mech.mechanism_type, CausalMechanismType)
        assert isinstance(mech.causal_strength, float) and 0 <= mech.causal_strength <= 1
        assert isinstance(mech.effectiveness, float)  # NaN when not measured, never None
        assert "None" not in line
        assert mech.to_dict()["mechanism_type"] == mech.mechanism_type.name


@pytest.mark.slow
def test_export_and_import_mechanisms(trained, tmp_path) -> None:
    engine, *_ = trained
    before = engine.discovered_mechanisms

    async def example():
        await engine.export_mechanisms(tmp_path / "mechanisms.json")

    asyncio.run(example())
    text = (tmp_path / "mechanisms.json").read_text()
    assert "NaN" not in text  # unmeasured effectiveness is written as null
    assert engine.import_mechanisms(tmp_path / "mechanisms.json") == len(before)
    assert engine.discovered_mechanisms == before


@pytest.mark.slow
def test_intervention_mask_from_insights(trained) -> None:
    engine, source, *_ = trained
    task = source.tasks("test", 1, seed=4)[0]
    support_data = support_of(task)
    insights = engine.get_mechanism_insights()

    async def example():
        mask = engine.create_intervention_mask(mechanisms=insights["strongest_mechanisms"], intervention_strength=0.8)
        return mask, await engine.adapt_with_intervention(task, support_data, mask)

    mask, result = asyncio.run(example())
    assert len(mask) == engine.model.num_mechanisms
    assert mask.masked or mask.features, mask.explanation
    assert all(s == pytest.approx(0.8) for s in mask.features.values())
    prior = [m for m in insights["strongest_mechanisms"] if m["type"] == "PRIOR_TRANSFER"]
    if prior:
        assert "skipped" in mask.explanation and "PRIOR_TRANSFER" in mask.explanation
    assert math.isfinite(result["intervention"]["effect"])
    assert result["explanation"]["mask"] == mask.explanation


def test_mask_takes_records_of_both_kinds_and_skips_the_rest() -> None:
    engine = create_one_shot_meta_learning_engine(**FAST)
    engine.initialize_sync(input_dim=2, output_dim=1, feature_names=["a", "b"])
    entries = [
        {"type": "PRIOR_TRANSFER", "source": "meta-learned initialisation", "target": "tasks", "strength": 0.9},
        {"type": "REPRESENTATION_TRANSFER", "source": "mechanism 2", "target": "tasks", "strength": 0.8},
        {"type": "FEATURE_TRANSFER", "source": "b", "target": "output", "strength": 0.7},
    ]
    mask = engine.create_intervention_mask(mechanisms=entries, intervention_strength=0.8)
    assert mask == [1.0, 1.0, pytest.approx(0.2), 1.0] and mask.features == {"b": 0.8}
    assert mask.skipped == ["PRIOR_TRANSFER 'meta-learned initialisation' -> 'tasks'"]
    x = torch.randn(20, 2)
    y = x[:, 1:] * 2.0
    ep = Episode(x[:5], y[:5], x[5:], y[5:], "regression", None, "two columns")
    out = engine.adapt_with_intervention_sync(ep, None, mask)
    assert out["intervention"]["features"] == {"b": 0.8} and math.isfinite(out["intervention"]["effect"])
    # do(b := 0.2 b) on the inputs changes the predictions of a model that reads b
    assert out["intervention"]["mean_absolute_change"] > 0


def test_mask_from_unmaskable_records_only_is_a_clear_error() -> None:
    engine = create_one_shot_meta_learning_engine(**FAST)
    engine.initialize_sync(input_dim=1, output_dim=1)
    prior = {"type": "PRIOR_TRANSFER", "source": "meta-learned initialisation", "target": "tasks", "strength": 0.9}
    with pytest.raises(ValueError, match="none of the given records names a mechanism or feature"):
        engine.create_intervention_mask(mechanisms=[prior], intervention_strength=0.8)


@pytest.mark.slow
def test_hierarchical_adapt_and_trace(trained) -> None:
    engine, source, *_ = trained
    target_task = source.tasks("test", 1, seed=5)[0]
    support_data = support_of(target_task)

    async def example():
        return await engine.hierarchical_adapt(
            target_task, adaptation_levels=["feature", "structure", "optimization"], support_data=support_data
        )

    result = asyncio.run(example())
    assert set(result["gains"]) == {"feature", "structure", "optimization"}
    assert all(math.isfinite(g) for g in result["gains"].values())
    trace = engine.get_adaptation_trace(target_task)
    assert trace and all(math.isfinite(v) for v in trace)


@pytest.mark.slow
def test_continual_learning_loop_after_a_short_training(trained) -> None:
    engine, source, *_ = trained

    async def task_stream():
        for task in source.tasks("test", 3, seed=6):
            yield task

    async def example():
        updates = []
        async for new_task in task_stream():
            support_data = support_of(new_task)
            r = await engine.one_shot_adapt(new_task, support_data)
            updates.append(await engine.update_mechanisms(new_task, r))
            await engine.refine_mechanisms_online()
        return updates

    updates = asyncio.run(example())
    assert [u["tasks_seen_online"] for u in updates][-1] >= 3
    assert all(isinstance(u["updated"], str) and "task counted" in u["updated"] for u in updates)


def test_continual_learning_with_no_mechanisms_says_what_was_updated() -> None:
    source = SinusoidTaskSource()
    engine = create_one_shot_meta_learning_engine(**{**FAST, "num_meta_iterations": 2})
    engine.meta_train_sync(source)
    task = source.tasks("test", 1, seed=0)[0]
    r = engine.one_shot_adapt_sync(task)
    u = asyncio.run(engine.update_mechanisms(task, r))
    assert u["measured_records"] == 0 and "no mechanism records yet" in u["updated"]
    assert asyncio.run(engine.refine_mechanisms_online()) == []
    insights = engine.get_mechanism_insights()
    assert math.isnan(insights["average_effectiveness"]) and insights["effectiveness_note"]


@pytest.mark.slow
def test_transfer_priors_and_known_graph(trained) -> None:
    engine, source, *_ = trained
    rates = engine.set_transfer_priors({"mechanism 0": 0.5, 1: 0.0})
    assert rates[:2] == [0.5, 0.0]
    truth = source.truth_graph()
    names = truth["variable_names"]
    graph = nx.DiGraph()
    adj = np.asarray(truth["adjacency"])
    graph.add_edges_from((names[i], names[j]) for i, j in zip(*np.nonzero(adj), strict=True))
    out = engine.enhance_mechanisms_with_graph(graph)
    assert out["output_node"] == truth["target"] and isinstance(out["kept"], int)
    engine.apply_causal_priors()


def test_custom_learner_from_config_and_model(capsys) -> None:
    source = SinusoidTaskSource()
    source_tasks = source.tasks("train", 20, seed=0)
    target_task = source.tasks("test", 1, seed=1)[0]
    support_data = support_of(target_task)
    config = OneShotMetaLearningConfig(**{**FAST, "num_meta_iterations": 30})
    input_dim, hidden_dim, output_dim, num_mechanisms = 1, 16, 1, 4

    async def example():
        model = CausalMetaModel(input_dim, hidden_dim, output_dim, num_mechanisms)
        learner = MAMLCausalLearner(config, model)
        results = await learner.meta_train(source_tasks)
        adapted_model = await learner.adapt(target_task, support_data)
        print(adapted_model)
        return learner, results, adapted_model

    learner, results, adapted_model = asyncio.run(example())
    assert learner.task_type == "regression"  # inferred: a one-output MLP
    assert len(results["train_loss"]) == 30 and all(math.isfinite(v) for v in results["train_loss"])
    assert math.isfinite(adapted_model.quality["mse"]) and adapted_model.trace
    assert adapted_model.predict(np.zeros((3, 1))).shape == (3, 1)
    assert "MAML_CAUSAL" in capsys.readouterr().out
    # the functional verb is intact: tensors in, an adapted state out
    state = learner.adapt(*[torch.as_tensor(v) for v in support_data], 1)
    assert type(state).__name__ == "AdaptedState"


def test_embedding_learner_infers_classification() -> None:
    config = OneShotMetaLearningConfig(algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16)
    learner = PrototypicalCausalLearner(config, CausalMetaModel(4, 16, 0, 2))
    assert learner.task_type == "classification"
    with pytest.raises(TypeError, match=r"takes \(config, model\)"):
        MAMLCausalLearner(config, config)


def test_engine_logs_under_the_engine_logger_and_prints_nothing(caplog, capsys) -> None:
    source = SinusoidTaskSource()
    with caplog.at_level(logging.INFO, logger="engine"):
        engine = create_one_shot_meta_learning_engine(**{**FAST, "num_meta_iterations": 3})
        engine.meta_train_sync(source)
        engine.one_shot_adapt_sync(source.tasks("test", 1, seed=0)[0])
    names = {r.name for r in caplog.records}
    assert {"engine.training", "engine.engine"} <= names
    assert any("meta-training" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith("adapted to") for r in caplog.records)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def _representation_record() -> dict:
    return {
        "mechanism_type": "REPRESENTATION_TRANSFER",
        "source": "mechanism 0",
        "target": "tasks",
        "causal_strength": 0.8,
        "confidence": 0.9,
        "effectiveness": None,
        "reuse_count": 0,
        "effect": 0.1,
        "effect_std": 0.01,
        "source_kind": "mechanism",
        "target_kind": "task",
        "details": {"mechanism_index": 0},
    }
