"""Canvas drawings -> model inputs made like the Omniglot training images (engine.tasks.drawing)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.tasks.drawing import EmptyDrawingError, canvas_ink, drawing_to_input, stroke_width
from engine.tasks.image_archive import load_images

INK = (0, 0, 0, 255)


def canvas(shape: str, cx: float, cy: float, r: float, width: int = 10, side: int = 240, **kw) -> np.ndarray:
    """An RGBA canvas like streamlit-drawable-canvas returns: transparent paper, black strokes."""
    bg, ink = kw.get("bg", (0, 0, 0, 0)), kw.get("ink", INK)
    im = Image.new("RGBA", (side, side), bg)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=width)
    elif shape == "cross":
        d.line([cx - r, cy - r, cx + r, cy + r], fill=ink, width=width)
        d.line([cx - r, cy + r, cx + r, cy - r], fill=ink, width=width)
    else:
        d.line([cx, cy - r, cx, cy + r], fill=ink, width=width)
    return np.asarray(im)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_shape_range_and_type():
    x = drawing_to_input(canvas("circle", 120, 120, 80), 28)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert x[0, 0].max() == 0.0 and x[0, -1].max() == 0.0  # paper is 0 at the edges (margin)


def test_position_scale_and_pen_do_not_matter():
    """A circle drawn big, small, off-centre and with thin or thick pens gives nearly the same input,
    far from a cross or a bar."""
    circles = [
        drawing_to_input(canvas("circle", 120, 120, 80, width=10)),
        drawing_to_input(canvas("circle", 60, 70, 30, width=6)),
        drawing_to_input(canvas("circle", 170, 160, 50, width=16)),
        drawing_to_input(canvas("circle", 200, 40, 25, width=4, side=260)),
    ]
    for c in circles[1:]:
        assert corr(circles[0], c) > 0.8  # a half-pixel offset at 28 px costs about 0.15
    cross = drawing_to_input(canvas("cross", 120, 120, 70))
    bar = drawing_to_input(canvas("bar", 120, 120, 70))
    for other in (cross, bar):
        assert corr(circles[0], other) < 0.3
    # centred: the ink's centre of mass is within a pixel of the middle for every position
    rows, cols = np.mgrid[0:28, 0:28]
    for c in circles:
        m = c[0] / c[0].sum()
        assert abs(float((m * rows).sum()) - 13.5) < 1.0 and abs(float((m * cols).sum()) - 13.5) < 1.0


def test_ink_like_omniglot(omniglot_dir):
    """Mean ink of drawn characters at 28 px is within a factor of 1.5 of Omniglot's mean
    (measured 0.080; its 10th-90th percentile per image is 0.049-0.114). The bar alone is a
    single short stroke, so it is compared with the low end."""
    ref = float(load_images(omniglot_dir / "images_background_small1.zip", image_size=28).images.mean()) / 255
    assert 0.06 < ref < 0.10
    for shape in ("circle", "cross"):
        for width in (4, 10, 20):
            ink = float(drawing_to_input(canvas(shape, 120, 120, 70, width=width)).mean())
            assert ref / 1.5 < ink < ref * 1.5, (shape, width, ink)
    bar = float(drawing_to_input(canvas("bar", 120, 120, 70)).mean())
    assert 0.02 < bar < ref


def test_stroke_width_measure():
    m = np.zeros((60, 60), dtype=bool)
    m[10:50, 20:25] = True
    assert 4.0 < stroke_width(m) < 6.5


def test_inversion_and_backgrounds():
    """White paper, transparent paper and light strokes on a dark canvas all give the same input."""
    ref = drawing_to_input(canvas("cross", 120, 120, 70))
    white = drawing_to_input(canvas("cross", 120, 120, 70, bg=(255, 255, 255, 255)))
    dark = drawing_to_input(canvas("cross", 120, 120, 70, bg=(0, 0, 0, 255), ink=(255, 255, 255, 255)))
    gray = canvas("cross", 120, 120, 70, bg=(255, 255, 255, 255))[..., 0]
    np.testing.assert_allclose(white, ref, atol=1e-6)
    np.testing.assert_allclose(dark, ref, atol=1e-6)
    np.testing.assert_allclose(drawing_to_input(gray), ref, atol=1e-6)
    assert canvas_ink(canvas("cross", 120, 120, 70, bg=(0, 0, 0, 255), ink=(255, 255, 255, 255))).mean() < 0.5


@pytest.mark.parametrize("bg", [(0, 0, 0, 0), (255, 255, 255, 255), (0, 0, 0, 255)])
def test_empty_canvas_is_a_clear_error(bg):
    blank = np.asarray(Image.new("RGBA", (200, 200), bg))
    with pytest.raises(EmptyDrawingError, match="draw something first"):
        drawing_to_input(blank)


def test_other_sizes_and_bad_input():
    assert drawing_to_input(canvas("bar", 120, 120, 70), 105).shape == (1, 105, 105)
    with pytest.raises(ValueError, match="shape"):
        drawing_to_input(np.zeros((10, 10, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="image size"):
        drawing_to_input(canvas("bar", 120, 120, 70), 0)
