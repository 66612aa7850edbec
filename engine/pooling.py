"""2x2 max-pooling, stride 2, that computes the same outputs, indices and gradients as
``F.max_pool2d(x, 2)`` but runs faster on the CPU.

On one CPU thread PyTorch's native kernel spends about 30 ms on a Conv-4 layer of 120 Omniglot
images (it walks each window with scalar code to record the argmax); four element-wise maxima
over strided views give the same values in a few milliseconds. With gradients on, the argmax is
worked out from the same comparisons, in the native kernel's order (the first maximum in
row-major order wins ties), and the backward pass is the native one
(``max_pool2d_with_indices_backward``), whose own derivative autograd knows, so second-order
MAML differentiates through it unchanged. Other devices, and planes smaller than 8x8 (where
the native kernel is the faster one), use the native kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _corners(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # The four cells of every 2x2 window (an odd last row or column is dropped, as floor mode does).
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2], x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]


def max_pool_2x2_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled, flat index of each maximum within its H x W plane), as ``F.max_pool2d(x, 2,
    return_indices=True)`` gives them."""
    a, b, c, d = _corners(x)
    top, bottom = torch.maximum(a, b), torch.maximum(c, d)
    down = bottom > top  # a later cell wins only when strictly larger
    b_wins = b > a
    right = b_wins ^ ((b_wins ^ (d > c)) & down)  # torch.where(down, d > c, b > a), 30x faster
    h, w = a.shape[-2:]
    width = x.shape[-1]
    base = (torch.arange(h, device=x.device) * 2 * width)[:, None] + torch.arange(w, device=x.device) * 2
    # int32 arithmetic in place, then int64 as the native backward wants: bool-to-int64
    # promotion in `base + down * width + right` took longer than the whole native kernel
    indices = down.to(torch.int32).mul_(width).add_(right).add_(base.to(torch.int32)).long()
    return torch.maximum(top, bottom), indices


class _MaxPool2x2(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return max_pool_2x2_with_indices(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_indices: torch.Tensor) -> torch.Tensor:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


# Planes smaller than 8x8 (a Conv-4's 7x7 and 3x3 maps) pool faster in the native kernel: its
# per-window cost is small there, while the strided views' dozen small ops cost about the same
# at any size (docs/experiments.md, fwd+bwd of 20x64 planes on one thread:
# 3x3 0.20 ms native / 0.56 ms here, 7x7 0.64 / 1.09, 8x8 1.03 / 0.98, 14x14 2.95 / 1.88).
_NATIVE_BELOW = 64


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for (N, C, H, W) or (C, H, W) inputs; faster on the CPU."""
    if x.device.type != "cpu" or x.shape[-2] * x.shape[-1] < _NATIVE_BELOW:
        return F.max_pool2d(x, 2)
    if not (torch.is_grad_enabled() and x.requires_grad):
        a, b, c, d = _corners(x)
        return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))  # no argmax needed
    return _MaxPool2x2.apply(x)[0]


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` through :func:`max_pool_2x2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
