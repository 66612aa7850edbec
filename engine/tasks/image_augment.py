"""Training-split image augmentations: the same character drawn by a slightly different hand.

Each takes float images (N, S, S), strokes high on a 0 background, and a numpy generator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import TaskError


def random_shift(imgs: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (S, S) image by up to ``max_shift`` pixels per axis, filling with 0
    (training-split augmentation: a character drawn a little off-centre is the same class)."""
    n, h, w = imgs.shape
    pad = np.zeros((n, h + 2 * max_shift, w + 2 * max_shift), dtype=imgs.dtype)
    pad[:, max_shift : max_shift + h, max_shift : max_shift + w] = imgs
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.stack([pad[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def check_strength(name: str, value: object) -> float:
    """A distortion strength: a number in [0, 2] (1 = the published setting)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value <= 2:
        raise TaskError(f"{name} must be a number in [0, 2] (strength), got {value!r}")
    return float(value)


# Koch et al. (2015) distortions for Omniglot, at strength 1: rotation, shear and scale ranges.
AFFINE_ROTATION_DEG = 10.0
AFFINE_SHEAR = 0.3
AFFINE_SCALE = 0.2


def random_affine(imgs: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Distort each (S, S) float image by a random rotation, shear and scale about its centre
    (training-split augmentation: the same character drawn by a slightly different hand).
    ``strength`` scales Koch et al.'s ranges (rotation +-10 deg, shear +-0.3, scale 0.8-1.2)."""
    n = imgs.shape[0]
    theta = np.deg2rad(rng.uniform(-1, 1, n) * AFFINE_ROTATION_DEG * strength)
    shear = rng.uniform(-1, 1, (n, 2)) * AFFINE_SHEAR * strength
    scale = 1 + rng.uniform(-1, 1, (n, 2)) * AFFINE_SCALE * strength
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shr = np.stack([np.stack([np.ones(n), shear[:, 0]], -1), np.stack([shear[:, 1], np.ones(n)], -1)], -2)
    # affine_grid maps output to input coordinates, so the inverse transform goes in.
    fwd = rot @ shr * scale[:, :, None]
    inv = np.linalg.inv(fwd)
    mats = torch.from_numpy(np.concatenate([inv, np.zeros((n, 2, 1))], -1)).float()
    x = torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))[:, None]
    grid = F.affine_grid(mats, list(x.shape), align_corners=False)
    # Zero padding: the background is 0 (strokes high, see load_images).
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy()


# Simard et al. (2003) elastic distortion for 28-px digits, at strength 1: a random displacement
# field smoothed by a Gaussian of this width (pixels at 28 px) and scaled by this much.
ELASTIC_SIGMA = 4.0
ELASTIC_ALPHA = 34.0


def _gaussian_blur(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), zero-padded."""
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=field.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = field.shape[1]
    field = F.conv2d(field, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    return F.conv2d(field, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)


def random_elastic(imgs: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Warp each (S, S) float image by a smooth random displacement field (training-split
    augmentation: the wobble of a different hand's strokes, which an affine map cannot make).
    Field width and size scale with S from Simard et al.'s 28-px setting; ``strength`` scales
    the displacement."""
    n, h, w = imgs.shape
    scale = h / 28
    noise = torch.from_numpy(rng.uniform(-1, 1, (n, 2, h, w))).float()
    disp = _gaussian_blur(noise, ELASTIC_SIGMA * scale) * ELASTIC_ALPHA * scale * strength  # pixels
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    # grid_sample wants (x, y) in [-1, 1] (align_corners=False: pixel centres at (2i+1)/S - 1).
    gx = (2 * (xs + disp[:, 0]) + 1) / w - 1
    gy = (2 * (ys + disp[:, 1]) + 1) / h - 1
    x = torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))[:, None]
    out = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy()
