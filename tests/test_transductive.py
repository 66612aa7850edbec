"""Transductive prototypes for the prototypical learner (config.transductive_steps)."""

import pytest
import torch

from engine import CausalMetaModel, ConfigError, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.algorithms.prototypical import refine_prototypes
from engine.inner_loop import functional_forward
from engine.tasks.base import Episode


def test_one_step_is_the_probability_weighted_mean_and_zero_steps_change_nothing() -> None:
    protos = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    counts = torch.tensor([1.0, 2.0])
    queries = torch.tensor([[0.5, 0.0], [2.0, 1.0], [1.0, 1.0]])
    assert torch.equal(refine_prototypes(protos, counts, queries, 0), protos)
    d = torch.cdist(queries, protos).pow(2)
    w = torch.exp(-d) / torch.exp(-d).sum(1, keepdim=True)
    want = torch.stack(
        [(counts[c] * protos[c] + (w[:, c, None] * queries).sum(0)) / (counts[c] + w[:, c].sum()) for c in (0, 1)]
    )
    torch.testing.assert_close(refine_prototypes(protos, counts, queries, 1), want)


def test_refinement_follows_the_query_clusters_and_fixes_their_labels() -> None:
    # Two classes whose single support examples sit off-centre: class 0's queries lie nearer
    # class 1's support point, but they form their own cluster, which soft k-means finds.
    g = torch.Generator().manual_seed(0)
    protos = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    centres = torch.tensor([[1.7, 0.0], [4.5, 0.0]])
    labels = torch.arange(2).repeat_interleave(30)
    queries = centres[labels] + 0.3 * torch.randn(60, 2, generator=g)
    plain = (torch.cdist(queries, protos).argmin(1) == labels).float().mean()
    refined = refine_prototypes(protos, torch.ones(2), queries, 10)
    after = (torch.cdist(queries, refined).argmin(1) == labels).float().mean()
    assert plain < 0.75 and after > 0.95
    assert (refined - centres).norm(dim=1).max() < (protos - centres).norm(dim=1).min()


def _episode(n_way: int = 4) -> Episode:
    g = torch.Generator().manual_seed(0)
    sx, qx = torch.rand(n_way, 1, 16, 16, generator=g), torch.rand(3 * n_way, 1, 16, 16, generator=g)
    return Episode(sx, torch.arange(n_way), qx, torch.arange(n_way).repeat(3), "classification", n_way, "t")


def test_the_learner_refines_at_test_time_only() -> None:
    torch.manual_seed(0)
    model = CausalMetaModel((1, 16, 16), 16, 0, 2, conv_channels=8)
    learner = make_learner(
        model, OneShotMetaLearningConfig(algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16), "classification"
    )
    ep = _episode()
    plain_loss, plain_eval = learner.episode_objective(ep)[0], learner.evaluate_episode(ep)
    learner.config = learner.config.replace(transductive_steps=3)
    # Meta-training (a meta-graph) classifies each query alone: the same loss.
    torch.testing.assert_close(learner.episode_objective(ep)[0], plain_loss)
    state, logits = learner.episode_outputs(ep)
    assert state.transductive_steps == 3 and torch.equal(state.counts, torch.ones(4))
    params = {n: p.detach() for n, p in model.named_parameters()}
    q = functional_forward(model, params, ep.query_x)
    want = -torch.cdist(q, refine_prototypes(state.prototypes, state.counts, q, 3)).pow(2)
    torch.testing.assert_close(logits, want)
    assert learner.evaluate_episode(ep)["loss"] != plain_eval["loss"]
    for bad in (-1, 101, 2.5, "3"):
        with pytest.raises(ConfigError, match="transductive_steps"):
            OneShotMetaLearningConfig(transductive_steps=bad)
