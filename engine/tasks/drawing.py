"""A drawing from a canvas -> a model input made like the training images (Omniglot).

Omniglot characters are binary 105 x 105 pictures, resized with LANCZOS to the training size
(``image_archive.decode_image``) and inverted so strokes are 1 and paper 0. Measured on
``images_background_small1.zip``: the strokes' bounding box spans a median 0.64 of the frame
(18 of 28 px) with its centre near the middle, strokes are about 5.5 px wide at 105 px
(``stroke_width`` below), and the mean ink at 28 px is 0.080 (10th-90th percentile 0.049-0.114).

A drawing is turned into the same kind of picture: ink = darkness over white paper
(transparent pixels are paper; light strokes on a dark canvas are inverted), cropped to the
strokes' bounding box, centred in a square 105 px frame with the box spanning ``BOX_FRACTION``
of it, thresholded to binary, its strokes thickened or thinned to Omniglot's width, then
resized with LANCZOS to ``size`` like every training image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FRAME = 105  # Omniglot's stored size: strokes are normalised at this scale, as drawn there
BOX_FRACTION = 0.64  # the strokes' bounding box, longer side, as a share of the frame (Omniglot median)
STROKE_WIDTH = 5.5  # Omniglot's stroke width at FRAME px, as ``stroke_width`` measures it
PEN_RADIUS = 2.0  # redrawing the thinned strokes with this round pen gives about STROKE_WIDTH
MIN_INK = 0.2  # a pixel darker than this counts as a stroke when finding the drawing
MAX_SIDE = 4096


class EmptyDrawingError(ValueError):
    """The canvas holds no strokes."""


def canvas_ink(image: np.ndarray) -> np.ndarray:
    """Canvas pixels (H, W, 4) RGBA, (H, W, 3) RGB or (H, W) gray, uint8 -> ink in [0, 1] (H, W).

    Ink is darkness over white paper (transparent pixels are paper). A drawing that is
    mostly ink (light strokes on a dark canvas) is inverted, so the strokes are the ink."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ValueError(f"a drawing must be H x W gray, RGB or RGBA pixels, got shape {a.shape}")
    if max(a.shape[:2]) > MAX_SIDE:
        raise ValueError(f"a drawing of {a.shape[1]}x{a.shape[0]} pixels is larger than {MAX_SIDE} on a side")
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 or a.max() > 1.0 else 1.0)
    if a.ndim == 2:
        gray = a
    else:
        gray = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if a.shape[2] == 4:
            gray = a[..., 3] * gray + (1.0 - a[..., 3])  # composite over white paper
    ink = np.clip(1.0 - gray, 0.0, 1.0)
    return 1.0 - ink if float(ink.mean()) > 0.5 else ink


def _square(ink: np.ndarray, centre: tuple[float, float], side: int) -> np.ndarray:
    """The ``side`` x ``side`` square of ``ink`` centred at ``centre`` (paper outside the drawing)."""
    out = np.zeros((side, side), dtype=np.float32)
    r0, c0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(ink.shape[0], r0 + side), min(ink.shape[1], c0 + side)
    out[rs - r0 : re - r0, cs - c0 : ce - c0] = ink[rs:re, cs:ce]
    return out


def _lines(square: np.ndarray) -> np.ndarray:
    """A square of ink -> its strokes' middle lines in a FRAME x FRAME picture."""
    frame = Image.fromarray((255 * square).astype(np.uint8)).resize((FRAME, FRAME), Image.Resampling.BILINEAR)
    return skeleton(np.asarray(frame) > 127)


def _box(mask: np.ndarray) -> tuple[float, float, float]:
    """Centre (row, col) and longer side of the bounding box of a mask's True pixels."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        raise EmptyDrawingError("the canvas is empty: draw something first")
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2, float(side)


def _framed_lines(ink: np.ndarray) -> np.ndarray:
    """The strokes' middle lines, centred in a FRAME picture where they span BOX_FRACTION.

    The first pass frames the whole ink to find the middle lines; the second frames those, so a
    thick pen does not make the character smaller."""
    r, c, side = _box(ink > MIN_INK)
    first = int(np.ceil(side * 1.1)) + 2
    lines = _lines(_square(ink, (r, c), first))
    lr, lc, lside = _box(lines)
    scale = first / FRAME  # frame px -> drawing px
    top, left = r - first / 2, c - first / 2
    centre = (top + (lr + 0.5) * scale, left + (lc + 0.5) * scale)
    final = max(2, int(np.ceil(lside * scale / BOX_FRACTION)))
    return _lines(_square(ink, centre, final))


def _neighbours(m: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours of every pixel, clockwise from north (P2..P9 in the thinning papers)."""
    p = np.pad(m, 1)
    h, w = m.shape
    at = [(0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0)]
    return [p[r : r + h, c : c + w] for r, c in at]


def skeleton(mask: np.ndarray) -> np.ndarray:
    """The strokes thinned to 1 px lines (Guo and Hall's thinning, vectorised; unlike Zhang and
    Suen's it keeps 2 px diagonal lines)."""
    m = np.asarray(mask, dtype=bool).copy()
    for _ in range(max(m.shape)):
        changed = False
        for first in (True, False):
            p2, p3, p4, p5, p6, p7, p8, p9 = _neighbours(m)
            c = (~p2 & (p3 | p4)).astype(np.int8) + (~p4 & (p5 | p6)) + (~p6 & (p7 | p8)) + (~p8 & (p9 | p2))
            n1 = (p9 | p2).astype(np.int8) + (p3 | p4) + (p5 | p6) + (p7 | p8)
            n2 = (p2 | p3).astype(np.int8) + (p4 | p5) + (p6 | p7) + (p8 | p9)
            n = np.minimum(n1, n2)
            side = ((p6 | p7 | ~p9) & p8) if first else ((p2 | p3 | ~p5) & p4)
            drop = m & (c == 1) & (n >= 2) & (n <= 3) & ~side
            if drop.any():
                m &= ~drop
                changed = True
        if not changed:
            break
    return m


def _pen(lines: np.ndarray, radius: float) -> np.ndarray:
    """1 px lines drawn again with a round pen of ``radius``."""
    h, w = lines.shape
    r = int(np.ceil(radius))
    p = np.pad(lines, r)
    out = np.zeros_like(lines)
    for dr in range(-r, r + 1):
        for dc in range(-r, r + 1):
            if dr * dr + dc * dc <= radius * radius:
                out |= p[r + dr : r + dr + h, r + dc : r + dc + w]
    return out


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary picture: 2 x area / boundary pixels (a strip of width w
    and length L has area w L and about 2 L boundary pixels)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return 2.0 * float(m.sum()) / float(max(1, (m & ~inner).sum()))


def drawing_to_input(image: np.ndarray, size: int = 28) -> np.ndarray:
    """A canvas drawing -> float32 (1, size, size) in [0, 1], strokes 1 and paper 0, centred,
    scaled and stroked like the Omniglot training images.

    Raises EmptyDrawingError ("draw something first") for a canvas without strokes and
    ValueError for pixels that are not a picture."""
    if not 4 <= int(size) <= 512:
        raise ValueError(f"image size must be 4-512 px, got {size}")
    mask = _pen(_framed_lines(canvas_ink(image)), PEN_RADIUS)
    picture = Image.fromarray((255 * mask).astype(np.uint8))
    if size != FRAME:
        picture = picture.resize((size, size), Image.Resampling.LANCZOS)  # as decode_image does
    return (np.asarray(picture, dtype=np.float32) / 255.0)[None]
