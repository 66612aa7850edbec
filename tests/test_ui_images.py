"""ui.images: uploaded pictures to model inputs (strokes 1 on paper 0), display and PNG export."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ui.images import ImageInputError, image_bytes_to_array, images_to_batch, to_display


def _png(arr: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_uploaded_dark_on_light_image_is_inverted_to_strokes_one():
    pic = np.full((105, 105), 255, dtype=np.uint8)
    pic[40:60, 10:95] = 0  # a black bar on white paper
    x = image_bytes_to_array(_png(pic), "bar.png")
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert x[0, 14, 14] > 0.9 and x[0, 2, 2] < 0.05  # stroke 1, background 0


def test_light_on_dark_image_is_kept_and_alpha_is_paper():
    pic = np.zeros((28, 28), dtype=np.uint8)
    pic[10:18, :] = 255
    x = image_bytes_to_array(_png(pic))
    assert x[0, 12, 5] > 0.9 and x[0, 0, 0] < 0.05
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # transparent everywhere but a black stroke
    rgba[5:8, :, 3] = 255
    y = image_bytes_to_array(_png(rgba, "RGBA"))
    assert y[0, 6, 10] > 0.9 and y[0, 20, 10] < 0.05


def test_display_and_upload_roundtrip():
    x = np.zeros((1, 28, 28), dtype=np.float32)
    x[0, 5:20, 13:15] = 1.0
    pic = to_display(x, scale=3)
    assert pic.shape == (84, 84) and pic.dtype == np.uint8 and pic[0, 0] == 255 and pic[20, 40] == 0
    back = image_bytes_to_array(_png(to_display(x, scale=1)))  # a shown picture uploaded again
    np.testing.assert_allclose(back, x, atol=0.02)


def test_bad_uploads_raise_clear_messages():
    with pytest.raises(ImageInputError, match="empty"):
        image_bytes_to_array(b"", "a.png")
    with pytest.raises(ImageInputError, match="unreadable image 'b.png'"):
        image_bytes_to_array(b"not an image", "b.png")
    ok = _png(np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(ImageInputError, match="c.png"):
        images_to_batch([("ok.png", ok), ("c.png", b"junk")])
    assert images_to_batch([]).shape == (0, 1, 28, 28)
    assert images_to_batch([("a.png", ok), ("b.png", ok)]).shape == (2, 1, 28, 28)
