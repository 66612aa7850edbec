"""The CPU max-pooling matches PyTorch's native 2x2 max-pooling in values, indices and gradients
(first and second order), including ties and odd sizes."""

import pytest
import torch
import torch.nn.functional as F

from engine.model import CausalMetaModel, _conv_block
from engine.pooling import MaxPool2x2, max_pool_2x2, max_pool_2x2_with_indices


@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 5, 7, 7), (2, 3, 3, 6), (4, 9, 9)])
def test_values_and_indices_equal_native_including_ties(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    ties = torch.randint(0, 3, shape, generator=g).float()  # many equal cells in one window
    for inp in (x, ties, x.relu()):
        want, want_idx = F.max_pool2d(inp, 2, return_indices=True)
        got, idx = max_pool_2x2_with_indices(inp)
        assert torch.equal(got, want)
        assert torch.equal(idx, want_idx)
        assert torch.equal(max_pool_2x2(inp), want)  # the no-grad path


def test_gradients_equal_native_first_and_second_order():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 4, (2, 3, 9, 9), generator=g).double()  # ties: the first maximum takes the gradient
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.double)
    grads = []
    for pool in (max_pool_2x2, lambda t: F.max_pool2d(t, 2)):
        xi = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad((pool(xi) * w).sum(), xi)
        grads.append(gx)
    assert torch.equal(grads[0], grads[1])
    # 9x9: planes under 8x8 go to the native kernel, so a smaller one would not check ours
    xd = torch.randn(2, 3, 9, 9, dtype=torch.double, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(max_pool_2x2, (xd,))
    assert torch.autograd.gradgradcheck(max_pool_2x2, (xd,))


def test_conv_block_matches_the_relu_then_native_pool_block():
    torch.manual_seed(0)
    block = _conv_block(1, 8)
    reference = torch.nn.Sequential(block[0], block[1], torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    assert isinstance(block[2], MaxPool2x2)
    x = torch.rand(6, 1, 28, 28)
    out = block(x)
    ref = reference(x)
    assert torch.equal(out, ref)
    ga = torch.autograd.grad(out.square().sum(), list(block.parameters()), create_graph=True)
    gb = torch.autograd.grad(ref.square().sum(), list(reference.parameters()), create_graph=True)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # second order (what MAML's meta-gradient differentiates): the gradient of a gradient norm
    hb = torch.autograd.grad(sum(g.square().sum() for g in ga), list(block.parameters()))
    hr = torch.autograd.grad(sum(g.square().sum() for g in gb), list(reference.parameters()))
    for a, b in zip(hb, hr, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_vmap_over_a_batch_of_images():
    x = torch.randn(3, 2, 4, 8, 8, requires_grad=True)  # (tasks, images, C, H, W)
    out = torch.vmap(max_pool_2x2)(x)
    assert torch.equal(out, F.max_pool2d(x.detach().flatten(0, 1), 2).view(3, 2, 4, 4, 4))
    model = CausalMetaModel((1, 28, 28), 16, 0, 4)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 16)
