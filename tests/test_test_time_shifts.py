"""Test-time shifted views for the embedding learners (config.test_time_shifts)."""

import math

import pytest
import torch

from engine import CausalMetaModel, ConfigError, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.algorithms.image_views import AFFINE_VIEWS, affine_views, grid_views, image_views, shifted_views
from engine.inner_loop import functional_forward
from engine.tasks.base import Episode


def test_shifted_views_moves_a_pixel_one_step_each_way_with_zero_fill() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    v = shifted_views(x, 1)
    assert v.shape == (5, 1, 1, 5, 5)
    where = [tuple(torch.nonzero(img[0, 0]).flatten().tolist()) for img in v]
    assert where == [(2, 2), (3, 2), (1, 2), (2, 3), (2, 1)]
    edge = torch.zeros(1, 1, 5, 5)
    edge[0, 0, 4, 4] = 1.0  # shifted off the image: gone, not wrapped round
    assert shifted_views(edge, 1)[[1, 3]].sum() == 0


def _episode(n_way: int = 4) -> Episode:
    g = torch.Generator().manual_seed(0)
    sx, qx = torch.rand(n_way, 1, 16, 16, generator=g), torch.rand(3 * n_way, 1, 16, 16, generator=g)
    return Episode(sx, torch.arange(n_way), qx, torch.arange(n_way).repeat(3), "classification", n_way, "t")


@pytest.mark.parametrize("algorithm", ["PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL"])
def test_views_average_embeddings_at_test_time_and_leave_meta_training_alone(algorithm: str) -> None:
    torch.manual_seed(0)
    model = CausalMetaModel((1, 16, 16), 16, 0, 2, conv_channels=8)
    learner = make_learner(model, OneShotMetaLearningConfig(algorithm=algorithm, hidden_dim=16), "classification")
    ep = _episode()
    plain_loss, plain_eval = learner.episode_objective(ep)[0], learner.evaluate_episode(ep)
    plain_protos = learner.adapt(ep.support_x, ep.support_y, 0).prototypes.detach()
    learner.config = learner.config.replace(test_time_shifts=2)  # same weights (and relation module)
    params = {n: p.detach() for n, p in model.named_parameters()}
    state = learner.adapt(ep.support_x, ep.support_y, 0, params=params)
    emb = functional_forward(model, params, shifted_views(ep.support_x, 2).flatten(0, 1)).view(5, 4, -1).mean(0)
    torch.testing.assert_close(state.prototypes, emb)
    assert not torch.allclose(state.prototypes, plain_protos)
    # Meta-training (a meta-graph) sees the plain images: the same loss with or without views.
    torch.testing.assert_close(learner.episode_objective(ep)[0], plain_loss)
    # Evaluation scores the views.
    viewed_eval = learner.evaluate_episode(ep)
    assert viewed_eval["loss"] != plain_eval["loss"] and 0.0 <= viewed_eval["accuracy"] <= 1.0


def test_views_leave_vector_inputs_alone_and_the_setting_is_range_checked() -> None:
    model = CausalMetaModel(6, 16, 0, 2)
    learner = make_learner(
        model, OneShotMetaLearningConfig(algorithm="PROTOTYPICAL_CAUSAL", test_time_shifts=1), "classification"
    )
    x = torch.rand(4, 6)
    state = learner.adapt(x, torch.arange(4), 0)
    assert not state.views
    for bad in (-1, 5, 1.5, "2"):
        with pytest.raises(ConfigError, match="test_time_shifts"):
            OneShotMetaLearningConfig(test_time_shifts=bad)


def test_grid_views_hold_every_shift_within_the_radius_once() -> None:
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 1.0
    v = grid_views(x, 2)
    assert v.shape == (25, 1, 1, 7, 7)
    torch.testing.assert_close(v[0], x)  # the unshifted image first
    where = {tuple(torch.nonzero(img[0, 0]).flatten().tolist()) for img in v}
    assert where == {(3 + dy, 3 + dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert image_views(x, 1, "grid").shape[0] == 9 and image_views(x, 1, "plus").shape[0] == 5


def _centre_of_mass(img: torch.Tensor) -> torch.Tensor:
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    return torch.stack([(img * xs).sum(), (img * ys).sum()]) / img.sum()


def test_affine_views_rotate_and_scale_about_the_centre() -> None:
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 19:22, 29:32] = 1.0  # a blob 10 px right of the centre
    views = affine_views(x)
    assert views.shape == (len(AFFINE_VIEWS), 1, 1, 41, 41)
    for (degrees, scale), view in zip(AFFINE_VIEWS, views):
        t = math.radians(degrees)  # x right, y down: a positive angle turns x towards y
        expected = torch.tensor([10 * scale * math.cos(t), 10 * scale * math.sin(t)])
        torch.testing.assert_close(_centre_of_mass(view[0, 0]), expected, atol=0.15, rtol=0)
    assert image_views(x, 1, "grid_affine").shape[0] == 9 + len(AFFINE_VIEWS)


def test_the_view_kind_is_checked_and_used_by_the_learner() -> None:
    with pytest.raises(ConfigError, match="test_time_views must be one of"):
        OneShotMetaLearningConfig(test_time_views="rotated")
    torch.manual_seed(0)
    model = CausalMetaModel((1, 16, 16), 16, 0, 2, conv_channels=8)
    config = OneShotMetaLearningConfig(algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16, test_time_shifts=1)
    learner = make_learner(model, config.replace(test_time_views="grid_affine"), "classification")
    ep = _episode()
    params = {n: p.detach() for n, p in model.named_parameters()}
    state = learner.adapt(ep.support_x, ep.support_y, 0, params=params)
    views = image_views(ep.support_x, 1, "grid_affine")
    emb = functional_forward(model, params, views.flatten(0, 1)).view(15, 4, -1).mean(0)
    torch.testing.assert_close(state.prototypes, emb)
