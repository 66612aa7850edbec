"""Discovery by intervention on trained learners (small problems, seconds each)."""

from __future__ import annotations

import asyncio
import json
import threading

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from engine import OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.discovery import score_against_truth
from engine.mechanisms import MechanismFormatError
from engine.tasks import SCMTaskSource, TabularTaskSource


def _fast(**over):
    cfg = dict(
        meta_batch_size=16,
        inner_lr=0.1,
        outer_lr=0.003,
        num_inner_steps=3,
        adaptation_steps=3,
        eval_interval=10_000,
        seed=0,
        device="cpu",
    )
    cfg.update(over)
    return create_one_shot_meta_learning_engine(**cfg)


# ---------------------------------------------------------------------------- tabular
@pytest.fixture(scope="module")
def tabular():
    """y = tanh(2 x0) + 0.5 x1 + noise in every task; tasks shift the causes x0 (mean) and x1
    (scale) and the mechanism of the child x2 = b_task * y + noise; x3 is never used."""
    rng = np.random.default_rng(0)
    rows = []
    for task in range(40):
        n = 200
        x0 = rng.normal(rng.uniform(-1, 1), 1.0, n)
        x1 = rng.normal(0.0, rng.uniform(0.5, 2.0), n)
        y = np.tanh(2 * x0) + 0.5 * x1 + 0.05 * rng.standard_normal(n)
        x2 = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0) * y + 0.3 * rng.standard_normal(n)
        x3 = rng.standard_normal(n)
        rows.append(pd.DataFrame({"x0": x0, "x1": x1, "x2": x2, "x3": x3, "y": y, "task": task}))
    source = TabularTaskSource(pd.concat(rows), target_column="y", task_column="task", task_type="regression")
    eng = _fast(num_meta_iterations=300, mechanism_threshold=0.0)
    eng.meta_train_sync(source)
    return eng, source


def test_unused_feature_has_strength_near_zero(tabular) -> None:
    eng, source = tabular
    tasks = source.tasks("train", 12, seed=0)
    recs = [
        r.to_dict() for r in eng.discover_causal_patterns_sync(tasks, types=["FEATURE_TRANSFER"], use_invariance=False)
    ]
    out = {r["source"]: r for r in recs if r["target"] == "output"}
    assert out["x3"]["causal_strength"] < 0.05
    assert out["x0"]["causal_strength"] > 0.5 and out["x1"]["causal_strength"] > 0.5
    assert out["x0"]["confidence"] > 0.95 and out["x3"]["confidence"] < out["x0"]["confidence"]
    assert len([r for r in recs if r["source"] == "x3" and r["target"].startswith("mechanism")]) == 4


def test_invariance_keeps_only_the_causes(tabular) -> None:
    eng, source = tabular
    tasks = source.tasks("train", 12, seed=1)
    recs = [r.to_dict() for r in eng.discover_causal_patterns_sync(tasks, types=["FEATURE_TRANSFER"], query_points=150)]
    causes = {r["source"] for r in recs if r["target"] == "output"}
    assert causes == {"x0", "x1"}  # not the child x2, which predicts y too
    inv = eng.discovery_report["invariance"]
    assert inv["causal_features"] == ["x0", "x1"] and not inv["fallback"]
    assert all(r["details"]["invariant_cause"] for r in recs if r["target"] == "output")


# ---------------------------------------------------------------------------- scm
@pytest.fixture(scope="module")
def scm():
    source = SCMTaskSource(seed=4)  # target X0 with parents X1, X2 and child X3
    eng = _fast(num_meta_iterations=400)
    eng.meta_train_sync(source)
    tasks = source.tasks("train", 20, seed=1)
    events: list[dict] = []
    recs = [r.to_dict() for r in eng.discover_causal_patterns_sync(tasks, progress=events.append, query_points=150)]
    return eng, source, tasks, recs, events


def test_scm_parents_and_intervened_variables_are_recovered(scm) -> None:
    eng, source, tasks, recs, _ = scm
    score = score_against_truth(recs, eng.discovery_report, tasks)
    assert score["f1"] >= 0.8, score
    assert score["intervened_accuracy"] >= 0.8, score
    children = set(source.truth_graph()["children"])
    assert not children & set(score["predicted_parents"])  # predictive children are not causes


def test_all_five_types_are_measured(scm) -> None:
    eng, _, tasks, recs, events = scm
    report = eng.discovery_report
    assert report["measured"] > report["kept"] >= 1
    types = {r["mechanism_type"] for r in recs}
    assert {"FEATURE_TRANSFER", "PRIOR_TRANSFER"} <= types
    prior = next(r for r in recs if r["mechanism_type"] == "PRIOR_TRANSFER")
    assert prior["effect"] > 0 and prior["confidence"] > 0.9  # the meta-learned init transfers
    for r in recs:
        assert r["causal_strength"] >= eng.config.mechanism_threshold
        assert len(r["details"]["task_effects"]) == r["details"]["tasks"]
    stages = [e["stage"] for e in events]
    assert stages[0] == "interventions" and stages[-1] == "done"
    assert {"structure transfer", "invariance", "priors"} <= set(stages)
    assert all(0.0 <= e["fraction"] <= 1.0 for e in events)


def test_every_type_with_threshold_zero(scm) -> None:
    eng, _, tasks, _, _ = scm
    eng2 = _fast(num_meta_iterations=0, mechanism_threshold=0.0)
    eng2.initialize_for_source(tasks[0].source)
    eng2.learner.load_state_dict(eng.learner.state_dict())
    eng2.learner.set_mechanism_rates(torch.ones(eng2.model.num_mechanisms))  # no priors
    recs = [r.to_dict() for r in eng2.discover_causal_patterns_sync(tasks[:6], max_structure_tasks=3)]
    by_type = {}
    for r in recs:
        by_type.setdefault(r["mechanism_type"], []).append(r)
    assert set(by_type) == {
        "FEATURE_TRANSFER",
        "REPRESENTATION_TRANSFER",
        "STRUCTURE_TRANSFER",
        "PRIOR_TRANSFER",
        "OPTIMIZATION_TRANSFER",
    }
    # Plain MAML without priors: do(rates := inner_lr) changes nothing, so no effect at all.
    opt = by_type["OPTIMIZATION_TRANSFER"][0]
    assert opt["effect"] == 0.0 and opt["causal_strength"] == 0.0 and opt["confidence"] == 0.0
    assert len(by_type["STRUCTURE_TRANSFER"]) == 6  # 3 tasks, ordered pairs
    assert len(by_type["REPRESENTATION_TRANSFER"]) == eng2.model.num_mechanisms


def test_stop_ends_discovery_early(scm) -> None:
    eng, _, tasks, _, _ = scm
    clone = OneShotMetaLearningEngine(eng.config)
    clone.initialize_for_source(tasks[0].source)
    stop = threading.Event()
    seen = []

    def progress(e):
        seen.append(e)
        if e["stage"] == "interventions" and e["done"] >= 2:
            stop.set()

    clone.discover_causal_patterns_sync(tasks, progress=progress, stop=stop)
    assert clone.discovery_report["stopped_early"]
    assert clone.discovery_report["tasks_used"] == 15 and "invariance" not in clone.discovery_report


# ---------------------------------------------------------------------------- engine API
def test_insights_graph_and_explanation(scm) -> None:
    eng, source, tasks, recs, _ = scm
    ins = eng.get_mechanism_insights()
    assert ins["total_mechanisms"] == len(recs)
    assert {"type", "source", "target", "strength"} <= set(ins["strongest_mechanisms"][0])
    assert ins["strongest_mechanisms"][0]["strength"] == max(r["causal_strength"] for r in recs)
    measured = [r["effectiveness"] for r in recs if r["effectiveness"] is not None]
    assert isinstance(ins["average_effectiveness"], float) and ins["effectiveness_note"]
    if measured:
        assert ins["average_effectiveness"] == pytest.approx(np.mean(measured))
    else:  # 20 tasks: a quarter held out, so the priors' effectiveness is measured
        assert ins["average_effectiveness"] == pytest.approx(eng.causal_priors["effectiveness"])
    g = eng.mechanism_graph(truth=source.truth_graph())
    assert isinstance(g, nx.DiGraph) and g.has_node("output:output")
    result = eng.one_shot_adapt_sync(tasks[0])
    expl = result["explanation"]
    assert expl["features"] and "Features that mattered" in expl["text"]
    assert expl["features"][0]["strength"] >= expl["features"][-1]["strength"]


def test_export_import_and_nothing_half_imported(scm, tmp_path) -> None:
    eng, *_ = scm
    before = eng.discovered_mechanisms
    path = eng.export_mechanisms_sync(tmp_path / "mech.json")
    assert eng.import_mechanisms(path) == len(before)
    assert eng.discovered_mechanisms == before
    doc = json.loads(path.read_text())
    doc["mechanisms"][-1]["causal_strength"] = 2.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(MechanismFormatError):
        eng.import_mechanisms(bad)
    assert eng.discovered_mechanisms == before


def test_priors_apply_save_and_load(scm, tmp_path) -> None:
    eng, *_ = scm
    rates = eng.apply_causal_priors()
    assert len(rates) == eng.model.num_mechanisms
    assert torch.allclose(eng.learner.mechanism_rates, torch.tensor(rates))
    assert eng.set_transfer_priors({"mechanism 1": 0.0, 2: 0.5})[:3] == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError):
        eng.set_transfer_priors({9: 1.0})
    with pytest.raises(ValueError):
        eng.set_transfer_priors({0: -1.0})
    eng.save_sync(tmp_path / "ck")
    back = OneShotMetaLearningEngine.from_checkpoint(tmp_path / "ck", device="cpu")
    assert back.discovered_mechanisms == eng.discovered_mechanisms
    assert back.causal_priors["mechanism_rates"][:3] == [1.0, 0.0, 0.5]
    assert torch.equal(back.learner.mechanism_rates, eng.learner.mechanism_rates)
    eng.apply_causal_priors()


def test_known_graph_restricts_feature_mechanisms(scm) -> None:
    eng, source, *_ = scm
    saved = eng.discovered_mechanisms
    graph = nx.DiGraph([("X1", "X0"), ("X3", "X0")])  # claims X3 is a cause, X2 is not
    out = eng.enhance_mechanisms_with_graph(graph)
    kept = {r.source for r in eng.discovered_mechanisms if r.target == "output"}
    assert "X2" not in kept and "X2" in out["removed"]
    assert all(r.details.get("graph_parent") for r in eng.discovered_mechanisms if r.target == "output")
    with pytest.raises(ValueError):
        eng.enhance_mechanisms_with_graph(nx.DiGraph([("a", "b")]))
    eng.import_mechanisms(saved)


def test_online_updates_count_reuse_and_refine(scm) -> None:
    eng, source, *_ = scm
    saved = eng.discovered_mechanisms
    new_tasks = source.tasks("test", 4, seed=5)
    reused = 0
    for t in new_tasks:
        res = eng.one_shot_adapt_sync(t)
        upd = eng.update_mechanisms_sync(t, res)
        assert upd["measured_records"] >= 1
        reused += len(upd["reused"])
    assert reused >= 4  # the parents' feature mechanisms are used by every new task
    counts = {(r.mechanism_type, r.source): r.reuse_count for r in eng.discovered_mechanisms}
    assert max(counts.values()) == 4
    refined = [r.to_dict() for r in eng.refine_mechanisms_online_sync()]
    feat = [r for r in refined if r["mechanism_type"] == "FEATURE_TRANSFER" and r["target"] == "output"]
    assert feat and all(r["details"].get("refined_online") for r in feat)
    before = {r.source: r.details["tasks"] for r in saved if r.mechanism_type.name == "FEATURE_TRANSFER"}
    assert all(r["details"]["tasks"] == before[r["source"]] + 4 for r in feat)
    eng.import_mechanisms(saved)


def test_async_twin(scm) -> None:
    eng, _, tasks, *_ = scm
    recs = asyncio.run(eng.discover_causal_patterns(tasks[:4], types=["PRIOR_TRANSFER"]))
    assert [r.mechanism_type.name for r in recs] == ["PRIOR_TRANSFER"]
