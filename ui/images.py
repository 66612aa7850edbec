"""Uploaded pictures <-> model inputs, and model inputs -> pictures to show.

The engine's image tasks store strokes as 1 and background as 0 (Omniglot is inverted on
load because it is dark ink on white paper). An uploaded picture is decoded by the engine's
``decode_image`` (transparent pixels count as white paper, grayscale, LANCZOS resize to
``size`` x ``size``), scaled to [0, 1]; then, per image,
it is inverted when it is mostly light (dark strokes on light paper), so strokes become 1.
"""

from __future__ import annotations

import numpy as np

from engine.tasks import TaskError
from engine.tasks.image_archive import DEFAULT_MAX_PIXELS, decode_image

MAX_PIXELS = DEFAULT_MAX_PIXELS  # same guard as the engine's image loader
MAX_BYTES = 16 * 1024 * 1024


class ImageInputError(ValueError):
    """An uploaded picture cannot be used (the message names the file and why)."""


def image_bytes_to_array(data: bytes, name: str = "image", size: int = 28) -> np.ndarray:
    """One uploaded PNG/JPEG -> float32 array (1, size, size) in [0, 1], strokes 1, background 0."""
    if not data:
        raise ImageInputError(f"{name}: the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"{name}: the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        arr = decode_image(data, name, size, MAX_PIXELS).astype(np.float32) / 255.0
    except TaskError as exc:
        raise ImageInputError(str(exc)) from None
    if float(arr.mean()) > 0.5:  # dark strokes on light paper, as drawn or scanned
        arr = 1.0 - arr
    return arr[None].astype(np.float32)


def images_to_batch(files: list[tuple[str, bytes]], size: int = 28) -> np.ndarray:
    """Several uploads -> (n, 1, size, size); raises ImageInputError naming the first bad file."""
    if not files:
        return np.zeros((0, 1, size, size), dtype=np.float32)
    return np.stack([image_bytes_to_array(data, name, size) for name, data in files])


def to_display(x: np.ndarray, scale: int = 3) -> np.ndarray:
    """A model input (strokes 1) -> uint8 picture with dark strokes on white, enlarged ``scale`` times."""
    a = np.asarray(x, dtype=np.float32)
    while a.ndim > 2:
        a = a[0]
    pic = (255.0 * (1.0 - np.clip(a, 0.0, 1.0))).round().astype(np.uint8)
    if scale > 1:
        pic = np.kron(pic, np.ones((scale, scale), dtype=np.uint8))
    return pic
