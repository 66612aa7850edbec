"""Facts about an algorithm live on its learner class; inner-loop rates are an explicit argument."""

import pytest
import torch

from engine import CausalMetaModel, MetaLearningAlgorithm, OneShotMetaLearningConfig
from engine.algorithms import LEARNERS, learner_class, make_learner

A = MetaLearningAlgorithm


@pytest.mark.parametrize(
    ("algorithm", "embedding", "head", "task_type", "transductive"),
    [
        (A.MAML_CAUSAL, False, True, "regression", False),
        (A.GRADIENT_CAUSAL, False, True, "regression", False),
        (A.PROTOTYPICAL_CAUSAL, True, False, "classification", True),
        (A.RELATION_CAUSAL, True, False, "classification", False),
    ],
)
def test_each_learner_class_states_its_facts(algorithm, embedding, head, task_type, transductive):
    cls = learner_class(algorithm)
    assert cls is LEARNERS[algorithm] is learner_class(algorithm.name) is learner_class(algorithm.name.lower())
    assert (cls.embedding_only, cls.has_linear_head, cls.default_task_type) == (embedding, head, task_type)
    assert cls.supports_transductive is transductive


def test_unknown_algorithm_names_the_valid_ones():
    with pytest.raises(ValueError, match="MAML_CAUSAL"):
        learner_class("reptile")


def test_an_embedding_learner_refuses_regression_by_its_class_fact():
    config = OneShotMetaLearningConfig(algorithm=A.PROTOTYPICAL_CAUSAL)
    with pytest.raises(ValueError, match="classification method"):
        make_learner(CausalMetaModel(3, 8, 0, 2), config, "regression")


def _relation_and_proto():
    torch.manual_seed(0)
    out = {}
    for alg in (A.PROTOTYPICAL_CAUSAL, A.RELATION_CAUSAL):
        config = OneShotMetaLearningConfig(algorithm=alg, hidden_dim=8, num_mechanisms=2, adaptation_steps=0)
        out[alg] = make_learner(CausalMetaModel(3, 8, 0, 2), config, "classification")
    return out


def test_probabilities_sum_to_one_for_logits_and_for_relation_scores():
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    for learner in _relation_and_proto().values():
        with torch.no_grad():
            state = learner.adapt(x, y, 0)
            outputs = learner(state, torch.randn(4, 3))
            p = learner.probabilities(state, outputs)
        assert p.shape == (4, 3)
        assert torch.allclose(p.sum(-1), torch.ones(4), atol=1e-6)
        assert bool((p >= 0).all())
    relation = _relation_and_proto()[A.RELATION_CAUSAL]
    scores = torch.tensor([[0.2, 0.6, 0.2]])
    assert torch.allclose(relation.probabilities(None, scores), scores)  # already sums to one: unchanged
    assert not torch.allclose(relation.probabilities(None, scores * 0.5), torch.softmax(scores * 0.5, -1))


def _sine_learner(algorithm=A.MAML_CAUSAL, **fields):
    torch.manual_seed(0)
    config = OneShotMetaLearningConfig(algorithm=algorithm, hidden_dim=16, num_mechanisms=4, inner_lr=0.05, **fields)
    return make_learner(CausalMetaModel(1, 16, 1, 4), config, "regression")


def test_zero_rates_hold_every_parameter_and_none_means_the_learners_own_rates():
    learner = _sine_learner()
    x, y = torch.randn(5, 1), torch.randn(5, 1)
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    held = learner.adapt(x, y, 3, params=params, rates=learner.scaled_rates(torch.zeros(4), plain=True))
    moved = learner.adapt(x, y, 3, params=params)
    explicit = learner.adapt(x, y, 3, params=params, rates=learner.inner_rates())
    # zero multipliers hold every mechanism block; only shared parameters (the head bias) move
    shared = set(params) - set(learner.model.mechanism_axes())
    for name in learner.model.mechanism_axes():
        assert torch.equal(held.params[name], params[name])
    assert any(not torch.equal(held.params[n], params[n]) for n in shared)
    assert any(not torch.equal(moved.params[n], params[n]) for n in learner.model.mechanism_axes())
    for name in params:
        assert torch.equal(explicit.params[name], moved.params[name])


def test_inner_rates_apply_the_priors_through_scaled_rates_only_when_enabled():
    learner = _sine_learner(enable_causal_priors=True)
    learner.set_mechanism_rates(torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with_priors = learner.inner_rates()
    scaled = learner.scaled_rates(learner.mechanism_rates)
    for name in with_priors:
        assert torch.equal(torch.as_tensor(with_priors[name]), torch.as_tensor(scaled[name]))
    off = _sine_learner(enable_causal_priors=False)
    off.set_mechanism_rates(torch.tensor([0.0, 1.0, 2.0, 1.0]))
    assert all(v == off.config.inner_lr for v in off.inner_rates().values())


def test_meta_sgd_scaled_rates_keep_the_gradient_to_its_learned_rates():
    learner = _sine_learner(A.GRADIENT_CAUSAL)
    rates = learner.scaled_rates([1.0, 0.5, 0.0, 2.0])
    assert all(isinstance(r, torch.Tensor) and r.requires_grad for r in rates.values())


def test_causal_weight_enters_the_meta_objective_once_on_both_paths():
    """The looped and the vmapped meta-batch objectives agree, with the causal penalty added once."""
    from engine.tasks import SinusoidTaskSource

    episodes = SinusoidTaskSource().episodes("train", 3, 5, 5, seed=0)
    for weight in (0.0, 2.0):
        learner = _sine_learner(causal_weight=weight, num_inner_steps=1)
        batched, _ = learner.batched_objective(episodes)
        looped = torch.stack([learner.episode_objective(ep)[0] for ep in episodes]).mean()
        assert torch.allclose(batched, looped, atol=1e-5)
        plain = _sine_learner(causal_weight=0.0, num_inner_steps=1)
        base = torch.stack([plain.episode_objective(ep)[0] for ep in episodes]).mean()
        if weight == 0:
            assert torch.allclose(looped, base)
        else:
            penalty = torch.stack(
                [
                    plain.causal_penalty(plain.meta_params(), plain.adapt(ep.support_x, ep.support_y, 1).params)
                    for ep in episodes
                ]
            ).mean()
            assert torch.allclose(looped, base + weight * penalty, atol=1e-5)
