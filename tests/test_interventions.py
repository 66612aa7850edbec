"""Interventions on the model: masks, do(c_k := 0), do(feature := reference), levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import OneShotMetaLearningConfig, create_one_shot_meta_learning_engine
from engine.algorithms import make_learner
from engine.causal.probe import FeatureUnit, Probe
from engine.interventions import create_intervention_mask, hierarchical_adapt
from engine.model import CausalMetaModel
from engine.tasks import SinusoidTaskSource
from engine.tasks.base import Episode


def test_mask_from_indices_names_records_and_mappings() -> None:
    assert create_intervention_mask([1], 1.0, 4) == [1.0, 0.0, 1.0, 1.0]
    assert create_intervention_mask(["mechanism 0", 3], 0.25, 4) == [0.75, 1.0, 1.0, 0.75]
    rec = {"mechanism_type": "REPRESENTATION_TRANSFER", "source": "mechanism 2", "target": "tasks"}
    assert create_intervention_mask([rec], 1.0, 4) == [1.0, 1.0, 0.0, 1.0]
    assert create_intervention_mask({0: 0.5, "mechanism 1": 1.0}, 0.0, 3) == [0.5, 0.0, 1.0]
    assert create_intervention_mask([0, 1], [1.0, 0.5], 2) == [0.0, 0.5]


@pytest.mark.parametrize(
    ("mechs", "strength"),
    [([4], 1.0), (["mechanism x"], 1.0), ([0], 1.5), ([0], -0.1), ([0, 1], [1.0]), ([True], 1.0)],
)
def test_bad_masks_are_rejected(mechs, strength) -> None:
    with pytest.raises(ValueError):
        create_intervention_mask(mechs, strength, 4)


def test_switched_off_mechanism_changes_only_what_it_feeds() -> None:
    """do(c_2 := 0) on a model whose mechanism 2 feeds output 1 only: output 0 is unchanged."""
    torch.manual_seed(0)
    model = CausalMetaModel(3, 16, 2, 4)
    m = model.mechanism_dim
    with torch.no_grad():
        model.head.weight[0, 2 * m : 3 * m] = 0.0  # mechanism 2 does not feed output 0
    x = torch.randn(20, 3)
    off = torch.tensor([1.0, 1.0, 0.0, 1.0])
    base, cut = model(x), model(x, causal_mask=off)
    assert torch.allclose(base[:, 0], cut[:, 0])
    assert (base[:, 1] - cut[:, 1]).abs().max() > 1e-3
    # ... and it leaves every other mechanism's activation alone.
    assert torch.equal(model.mechanism_outputs(x), model.mechanism_outputs(x))
    e_base, e_cut = model.embed(x), model.embed(x, off)
    keep = [i for i in range(4 * m) if not 2 * m <= i < 3 * m]
    assert torch.equal(e_base[:, keep], e_cut[:, keep]) and e_cut[:, 2 * m : 3 * m].abs().max() == 0


def test_feature_intervention_reaches_only_the_mechanisms_it_feeds() -> None:
    """Feature 1 enters only mechanism 0 (input gates closed elsewhere): do(x1 := 0) moves
    mechanism 0's activations and no other mechanism's."""
    torch.manual_seed(1)
    model = CausalMetaModel(3, 16, 1, 4, input_gates=True)
    with torch.no_grad():
        model.input_gate_logits[1:, 1] = -1e4  # sigmoid -> 0
    x = torch.randn(30, 3)
    x_do = FeatureUnit("x1", column=1).apply(x, 0.0)
    a, b = model.mechanism_outputs(x), model.mechanism_outputs(x_do)
    assert torch.allclose(a[:, 1:], b[:, 1:])
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3


def test_per_mechanism_contributions_sum_to_the_output() -> None:
    cfg = OneShotMetaLearningConfig(adaptation_steps=2, inner_lr=0.05)
    model = CausalMetaModel(4, 20, 2, 4, input_gates=True)
    learner = make_learner(model, cfg, "regression")
    probe = Probe(learner, 2)
    ep = Episode(torch.randn(5, 4), torch.randn(5, 2), torch.randn(7, 4), torch.randn(7, 2), "regression")
    state = probe.adapt(ep)
    contrib = probe.contributions(state, ep.query_x)
    total = contrib.sum(1) + state.params["head.bias"]
    assert torch.allclose(total, probe.outputs(state, ep.query_x), atol=1e-5)


def _sin_engine(**over):
    cfg = dict(num_meta_iterations=0, adaptation_steps=5, inner_lr=0.02, seed=0, device="cpu")
    cfg.update(over)
    eng = create_one_shot_meta_learning_engine(**cfg)
    eng.initialize_sync(1, 1, "regression")
    return eng


def test_hierarchical_levels_report_gains_that_add_up() -> None:
    eng = _sin_engine(inner_lr=0.005)
    ep = SinusoidTaskSource().tasks("test", 1, seed=4)[0].sample_episode(20, 1, np.random.default_rng(0))
    # Query = support, so gradient steps that lower the support loss must show a gain.
    ep = Episode(ep.support_x, ep.support_y, ep.support_x, ep.support_y, "regression", None, "sine")
    out = eng.hierarchical_adapt_sync(ep)
    levels = out["levels"]
    assert [r["level"] for r in levels] == ["feature", "structure", "optimization"]
    assert levels[0]["skipped"] and "input gates" in levels[0]["reason"]  # sinusoid model has none
    first, last = levels[0]["loss_before"], out["final_loss"]
    assert sum(r["gain"] for r in levels) == pytest.approx(first - last, rel=1e-6, abs=1e-9)
    assert levels[2]["gain"] > 0 and levels[1]["gain"] >= 0
    assert set(out["gains"]) == {"feature", "structure", "optimization"}
    assert eng.get_adaptation_trace("sine") == out["trace"]
    with pytest.raises(ValueError):
        eng.hierarchical_adapt_sync(ep, adaptation_levels=["everything"])


def test_structure_level_moves_only_the_gates() -> None:
    torch.manual_seed(0)
    cfg = OneShotMetaLearningConfig(adaptation_steps=3, inner_lr=0.5)
    learner = make_learner(CausalMetaModel(2, 8, 1, 2, input_gates=True), cfg, "regression")
    ep = Episode(torch.randn(6, 2), torch.randn(6, 1), torch.randn(6, 2), torch.randn(6, 1), "regression")
    out = hierarchical_adapt(learner, ep, ["structure"])
    meta = dict(learner.meta_params())
    for name, value in out["state"].params.items():
        moved = not torch.equal(value, meta[name].detach())
        assert moved == (name == "gate_logits"), name


def test_adapt_with_intervention_reports_the_change() -> None:
    eng = _sin_engine()
    task = SinusoidTaskSource().tasks("test", 1, seed=2)[0]
    same = eng.adapt_with_intervention_sync(task, intervention_mask=[1.0] * 4, seed=0)
    assert same["intervention"]["mean_absolute_change"] == 0.0
    off = eng.adapt_with_intervention_sync(task, intervention_mask=eng.create_intervention_mask([0, 1], 1.0), seed=0)
    assert off["intervention"]["switched_off"] == [0, 1]
    assert off["intervention"]["mean_absolute_change"] > 0
    assert np.isfinite(off["intervention"]["effect"])
    with pytest.raises(ValueError):
        eng.adapt_with_intervention_sync(task, intervention_mask=[1.0, 0.0])


def test_image_patches_tile_the_image_and_occlude_only_their_pixels() -> None:
    from engine.causal.probe import feature_units

    units = feature_units((1, 28, 28))
    assert len(units) == 16 and units[0].patch == (0, 7, 0, 7) and units[-1].patch == (21, 28, 21, 28)
    covered = torch.zeros(28, 28)
    for u in units:
        r0, r1, c0, c1 = u.patch
        covered[r0:r1, c0:c1] += 1
    assert torch.equal(covered, torch.ones(28, 28))  # every pixel in exactly one patch
    x = torch.rand(3, 1, 28, 28) + 1.0
    out = units[5].apply(x, 0.0)
    r0, r1, c0, c1 = units[5].patch
    assert (out[..., r0:r1, c0:c1] == 0).all()
    out[..., r0:r1, c0:c1] = x[..., r0:r1, c0:c1]
    assert torch.equal(out, x)  # nothing else changed, and the input was not modified
    assert len(feature_units((1, 30, 30), patch_size=8)) == 16  # edge patches take the remainder


def test_mechanism_effects_are_the_single_mechanism_interventions() -> None:
    """mechanism_effects_sync's do(c_k := 0) per mechanism gives the loss change that
    adapt_with_intervention_sync reports for the mask switching mechanism k off alone."""
    eng = _sin_engine(num_meta_iterations=4, meta_batch_size=2)
    eng.meta_train_sync(SinusoidTaskSource())
    task = SinusoidTaskSource().tasks("test", 1, seed=5)[0]
    base, rows = eng.mechanism_effects_sync(task, seed=3)
    plain = eng.one_shot_adapt_sync(task, seed=3)
    assert base["adaptation_quality"] == plain["adaptation_quality"] and base["predictions"] == plain["predictions"]
    assert [r["mechanism"] for r in rows] == [f"mechanism {k}" for k in range(eng.model.num_mechanisms)]
    for k, row in enumerate(rows):
        out = eng.adapt_with_intervention_sync(task, intervention_mask=eng.create_intervention_mask([k]), seed=3)
        assert row["effect"] == pytest.approx(out["intervention"]["effect"], rel=1e-6, abs=1e-9)
        assert row["loss_off"] == pytest.approx(out["adaptation_quality"]["loss"], rel=1e-6, abs=1e-9)
        assert row["metric"] == "mse"
        change = out["adaptation_quality"]["mse"] - base["adaptation_quality"]["mse"]
        assert row["metric_change"] == pytest.approx(change, rel=1e-6, abs=1e-9)
    assert any(abs(r["effect"]) > 1e-6 for r in rows)
    # the engine is left adapted without intervention
    x = torch.linspace(-5, 5, 7).reshape(-1, 1)
    eng.mechanism_effects_sync(task, seed=3)
    after_effects = eng.predict_sync(x)
    eng.one_shot_adapt_sync(task, seed=3)
    assert torch.equal(after_effects, eng.predict_sync(x))
