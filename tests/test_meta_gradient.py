"""The shared inner loop's second-order meta-gradient against plain autograd through an
explicitly unrolled loop (docs/DESIGN.md section 10: keep such a check for every model)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from engine import CausalMetaModel, OneShotMetaLearningConfig
from engine.algorithms import make_learner
from engine.tasks.base import Episode


def _unrolled_meta_grad(model, rates, ep, steps, loss_fn):
    params = dict(model.named_parameters())
    names = list(params)
    current = dict(params)
    for _ in range(steps):
        loss = loss_fn(functional_call(model, current, (ep.support_x,)), ep.support_y)
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=True)
        current = {n: current[n] - rates[n] * g for n, g in zip(names, grads)}
    qloss = loss_fn(functional_call(model, current, (ep.query_x,)), ep.query_y)
    return torch.autograd.grad(qloss, [params[n] for n in names])


def _episode(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "regression":
        return Episode(
            torch.randn(5, 3, generator=g, dtype=torch.float64),
            torch.randn(5, 1, generator=g, dtype=torch.float64),
            torch.randn(7, 3, generator=g, dtype=torch.float64),
            torch.randn(7, 1, generator=g, dtype=torch.float64),
            "regression",
        )
    return Episode(
        torch.rand(6, 1, 16, 16, generator=g, dtype=torch.float64),
        torch.tensor([0, 1, 2, 0, 1, 2]),
        torch.rand(6, 1, 16, 16, generator=g, dtype=torch.float64),
        torch.tensor([2, 1, 0, 0, 1, 2]),
        "classification",
        3,
    )


@pytest.mark.parametrize("algorithm", ["MAML_CAUSAL", "GRADIENT_CAUSAL"])
@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_second_order_meta_gradient_matches_unrolled_autograd(algorithm, kind):
    torch.manual_seed(0)
    ep = _episode(kind)
    if kind == "regression":
        model = CausalMetaModel(3, 8, 1, 2, input_gates=True).double()
        loss_fn = F.mse_loss
    else:
        model = CausalMetaModel((1, 16, 16), 8, 3, 2, conv_channels=4).double()
        loss_fn = F.cross_entropy
    config = OneShotMetaLearningConfig(
        algorithm=algorithm,
        inner_lr=0.1,
        num_inner_steps=2,
        causal_weight=0,
        enable_causal_priors=False,
    )
    learner = make_learner(model, config, kind).double()
    if algorithm == "GRADIENT_CAUSAL":  # distinct per-parameter rates, so a mix-up would show
        with torch.no_grad():
            for p in learner.inner_lrs.values():
                p.uniform_(0.02, 0.2)
    loss, _ = learner.episode_objective(ep)
    ours = torch.autograd.grad(loss, list(model.parameters()))
    rates = learner.base_rates()
    ref = _unrolled_meta_grad(model, rates, ep, 2, loss_fn)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # and it really is second order: the first-order gradient differs
    learner.config = config.replace(first_order=True)
    fo = torch.autograd.grad(learner.episode_objective(ep)[0], list(model.parameters()))
    assert max(float((a - b).abs().max()) for a, b in zip(fo, ref)) > 1e-6


def test_meta_sgd_rates_get_meta_gradients():
    model = CausalMetaModel(3, 8, 1, 2).double()
    config = OneShotMetaLearningConfig(algorithm="GRADIENT_CAUSAL", num_inner_steps=1)
    learner = make_learner(model, config, "regression").double()
    loss, _ = learner.episode_objective(_episode("regression"))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.inner_lrs.values())


@pytest.mark.parametrize("algorithm", ["MAML_CAUSAL", "GRADIENT_CAUSAL"])
def test_vmap_over_tasks_gives_the_looped_meta_gradient(algorithm):
    torch.manual_seed(1)
    model = CausalMetaModel(3, 8, 1, 2, input_gates=True).double()
    config = OneShotMetaLearningConfig(algorithm=algorithm, inner_lr=0.1, num_inner_steps=2, causal_weight=0.3)
    learner = make_learner(model, config, "regression").double()
    g = torch.Generator().manual_seed(2)
    eps = [
        Episode(
            *(torch.randn(n, d, generator=g, dtype=torch.float64) for n, d in [(5, 3), (5, 1), (7, 3), (7, 1)]),
            "regression",
        )
        for _ in range(4)
    ]
    looped = sum(learner.episode_objective(e)[0] for e in eps) / len(eps)
    ref = torch.autograd.grad(looped, list(learner.parameters()))
    batched, metrics = learner.batched_objective(eps)
    ours = torch.autograd.grad(batched, list(learner.parameters()))
    torch.testing.assert_close(batched, looped)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    assert len(metrics) == 4
