"""Test-time views of images for the embedding learners (``test_time_shifts``, ``test_time_views``).

An image's embedding is averaged over slightly moved copies of it, the way a person looks twice:
each image is still embedded alone, so the prediction stays inductive. The copies come from the
family the training images are distorted with (shifts, small rotations and scales), so the
learner has seen such copies of its training characters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import VIEW_KINDS

# (degrees, scale) of the extra grid_affine views: within the training distortion at strength 1
# (rotation +-10 degrees, scale 0.8-1.2; engine.tasks.image_augment.random_affine).
AFFINE_VIEWS = ((-10.0, 1.0), (-5.0, 1.0), (5.0, 1.0), (10.0, 1.0), (0.0, 0.9), (0.0, 1.1))


def _shifted(pad: torch.Tensor, radius: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    # Content moved dy down and dx right: the crop of the padded image starts dy above/dx left.
    return pad[..., radius - dy : radius - dy + h, radius - dx : radius - dx + w]


def shifted_views(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Images (B, C, H, W) -> (5, B, C, H, W): each image, then shifted by ``radius`` pixels
    down, up, right and left, the uncovered border filled with 0 (the background)."""
    h, w = x.shape[-2:]
    pad = F.pad(x, (radius,) * 4)
    moves = ((0, 0), (radius, 0), (-radius, 0), (0, radius), (0, -radius))
    return torch.stack([_shifted(pad, radius, dy, dx, h, w) for dy, dx in moves])


def grid_moves(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) moves of :func:`grid_views`, in its order: (0, 0), then the rest row by row."""
    return [(0, 0)] + [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy or dx]


def grid_views(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) -> ((2r+1)^2, B, C, H, W): every whole-pixel shift of at most ``radius`` in
    each direction (the unshifted image first), zero-filled like :func:`shifted_views`."""
    h, w = x.shape[-2:]
    pad = F.pad(x, (radius,) * 4)
    return torch.stack([_shifted(pad, radius, dy, dx, h, w) for dy, dx in grid_moves(radius)])


def affine_views(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (6, B, C, H, W): rotated and scaled about the centre by each of
    :data:`AFFINE_VIEWS` (bilinear, zero background)."""
    out = []
    for degrees, scale in AFFINE_VIEWS:
        t = math.radians(degrees)
        # affine_grid maps output to input coordinates: the inverse of rotate-then-scale.
        c, s = math.cos(t) / scale, math.sin(t) / scale
        inverse = torch.tensor([[c, s, 0.0], [-s, c, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(inverse.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.stack(out)


def image_views(x: torch.Tensor, radius: int, kind: str = "plus") -> torch.Tensor:
    """(B, C, H, W) -> (V, B, C, H, W), the views of ``kind`` (one of :data:`VIEW_KINDS`)."""
    if kind == "plus":
        return shifted_views(x, radius)
    if kind == "grid":
        return grid_views(x, radius)
    if kind == "grid_affine":
        return torch.cat([grid_views(x, radius), affine_views(x)])
    raise ValueError(f"test_time_views must be one of {VIEW_KINDS}; got {kind!r}")
