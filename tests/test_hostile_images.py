"""Hostile and unusual image files, through every path that decodes them.

Paths: ``decode_image`` (the engine's decoder), a zip upload (``ImageTaskSource`` with the
zip's bytes) and the Adapt page's own-picture upload (``ui.images.image_bytes_to_array`` /
``images_to_batch``, which raise ImageInputError). Valid pictures decode to the right shape
with values in [0, 1]; invalid ones raise the path's error naming the file.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from engine.tasks import ImageTaskSource, TaskError, clear_image_cache
from engine.tasks import image_archive as img_mod
from engine.tasks.image_archive import DEFAULT_MAX_PIXELS, decode_image
from ui.images import MAX_BYTES, ImageInputError, image_bytes_to_array, images_to_batch

SIZE = 16


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_image_cache()
    yield
    clear_image_cache()


def _save(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _bar(size: int = 30) -> np.ndarray:
    """White paper with a black horizontal bar across the middle rows."""
    arr = np.full((size, size), 255, dtype=np.uint8)
    arr[size // 3 : 2 * size // 3, :] = 0
    return arr


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height zero pixels; it compresses to a few kB
    (rows streamed through zlib, so the test never holds the pixels)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb_20k() -> bytes:
    data = _bomb_png(20_000, 20_000)  # 400 million pixels
    assert len(data) < 100_000
    return data


def _good_members() -> list[tuple[str, bytes]]:
    out = []
    for c in range(2):
        for i in range(3):
            arr = _bar(20)
            arr[:, (3 * c + i) % 20] = 0
            out.append((f"c{c}/{i}.png", _save(Image.fromarray(arr))))
    return out


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _through_zip(name: str, data: bytes) -> ImageTaskSource:
    """Upload the picture as a member of a zip with two good classes."""
    return ImageTaskSource(_zip(_good_members() + [(name, data)]), n_way=2, image_size=SIZE, split_fractions=(1, 0, 0))


# ---------------------------------------------------------------------------------------------- invalid

_TRUNCATED = _save(Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)))


def _corrupt_idat() -> bytes:
    data = bytearray(_TRUNCATED)
    start = data.find(b"IDAT") + 8
    data[start : start + 40] = bytes(range(40))  # garbage inside the compressed pixels
    return bytes(data)


INVALID: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated.png": (lambda: _TRUNCATED[: len(_TRUNCATED) // 2], "truncated"),
    "header_only.png": (lambda: _TRUNCATED[:33], "damaged|truncated|not a readable"),
    "signature_only.png": (lambda: _TRUNCATED[:8], "damaged|not a readable"),
    "corrupt_idat.png": (_corrupt_idat, "damaged"),
    "random.png": (lambda: np.random.default_rng(5).bytes(2000), "not a readable PNG or JPEG"),
    "text.png": (lambda: b"this is a text file, not a picture\n", "not a readable PNG or JPEG"),
    "zero.png": (lambda: b"", "is empty \\(0 bytes\\)"),
    "still.gif": (lambda: _save(Image.fromarray(_bar()), "GIF"), "not a readable PNG or JPEG"),
    "animated.gif": (
        lambda: _save(Image.fromarray(_bar()), "GIF", save_all=True, append_images=[Image.fromarray(255 - _bar())] * 2),
        "not a readable PNG or JPEG",
    ),
    "float_F.tif.png": (
        lambda: _save(Image.fromarray(np.linspace(0, 1, 900, dtype=np.float32).reshape(30, 30)), "TIFF"),
        "not a readable PNG or JPEG",
    ),
    "bitmap.png": (lambda: _save(Image.fromarray(_bar()), "BMP"), "not a readable PNG or JPEG"),
    # PostScript would be rendered by Ghostscript if PIL were allowed to try every format.
    "ghost.png": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "not a readable"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_files_are_refused_naming_the_file(name: str) -> None:
    make, why = INVALID[name]
    data = make()
    with pytest.raises(TaskError, match=rf"image '{name}'.*({why})|'{name}' is empty"):
        decode_image(data, name, SIZE)
    member = name if name.endswith(".png") else name + ".png"  # other extensions are not read from zips
    with pytest.raises(TaskError, match=rf"image 'c1/{member}'"):
        _through_zip(f"c1/{member}", data)
    with pytest.raises(ImageInputError, match=rf"'{name}'.*({why})|{name}: the file is empty"):
        image_bytes_to_array(data, name, SIZE)
    with pytest.raises(ImageInputError, match=rf"'?{name}"):
        images_to_batch([("fine.png", _save(Image.fromarray(_bar()))), (name, data)], SIZE)


def test_other_extensions_in_a_zip_are_ignored_not_decoded() -> None:
    gif = INVALID["still.gif"][0]()
    src = _through_zip("c1/picture.gif", gif)
    assert src.num_images() == 6 and src.skipped_members == []


@pytest.mark.timeout(60)
def test_decompression_bomb_20000_squared_1bit(bomb_20k: bytes) -> None:
    # Above PIL's own guard (2 x 89e6 pixels): refused while reading the header.
    with pytest.raises(TaskError, match=r"image 'bomb.png' has too many pixels .*max_pixels=16777216"):
        decode_image(bomb_20k, "bomb.png", SIZE)
    with pytest.raises(TaskError, match=r"image 'c0/bomb.png' has too many pixels"):
        _through_zip("c0/bomb.png", bomb_20k)
    with pytest.raises(ImageInputError, match=r"image 'bomb.png' has too many pixels"):
        image_bytes_to_array(bomb_20k, "bomb.png", SIZE)


@pytest.mark.timeout(60)
def test_decompression_bomb_below_pils_guard() -> None:
    bomb = _bomb_png(5000, 5000)  # 25 million pixels: under PIL's limit, over max_pixels
    with pytest.raises(TaskError, match=r"image 'b.png' has 5000x5000 pixels, more than max_pixels=16777216"):
        decode_image(bomb, "b.png", SIZE)
    with pytest.raises(TaskError, match=r"image 'c1/b.png' has 5000x5000 pixels"):
        _through_zip("c1/b.png", bomb)
    with pytest.raises(ImageInputError, match=r"image 'b.png' has 5000x5000 pixels"):
        image_bytes_to_array(bomb, "b.png", SIZE)
    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    # Between PIL's warning (89e6 pixels) and its error: our message either way, also when
    # warnings are errors.
    middle = _bomb_png(10_000, 10_000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(TaskError, match=r"'m.png' has 10000x10000"):
        decode_image(middle, "m.png", SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TaskError, match=r"image 'm.png' has (10000x10000|too many) pixels"):
            decode_image(middle, "m.png", SIZE)


def test_total_pixels_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(img_mod, "MAX_TOTAL_PIXELS", 5 * 20 * 20)  # five of the six 20x20 images
    with pytest.raises(TaskError, match=r"more than MAX_TOTAL_PIXELS=2000 pixels in all"):
        ImageTaskSource(_zip(_good_members()), n_way=2, image_size=SIZE)


def test_upload_larger_than_the_byte_cap() -> None:
    with pytest.raises(ImageInputError, match="big.png: the file is larger than 16 MB"):
        image_bytes_to_array(b"\x89PNG" + b"\x00" * MAX_BYTES, "big.png", SIZE)


# ---------------------------------------------------------------------------------------------- valid


def _modes() -> dict[str, bytes]:
    bar = _bar()
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)  # transparent paper, an opaque black bar
    rgba[10:20, :, 3] = 255
    la = np.zeros((30, 30, 2), dtype=np.uint8)
    la[10:20, :, 1] = 255
    palette = Image.fromarray(bar).convert("P")
    transparent_p = Image.fromarray(np.where(bar == 0, 1, 0).astype(np.uint8), mode="P")
    transparent_p.putpalette([255, 255, 255, 0, 0, 0])
    frames = [Image.fromarray(bar), Image.fromarray(255 - bar)]
    return {
        "L": _save(Image.fromarray(bar)),
        "1": _save(Image.fromarray(bar).convert("1")),
        "P": _save(palette),
        "P_transparency": _save(transparent_p, transparency=0),
        "I;16": _save(Image.fromarray(bar.astype(np.uint16) * 257)),
        "LA": _save(Image.fromarray(la, mode="LA")),
        "RGBA": _save(Image.fromarray(rgba, mode="RGBA")),
        "RGB": _save(Image.fromarray(np.stack([bar] * 3, axis=-1))),
        "CMYK_jpeg": _save(Image.fromarray(bar).convert("CMYK"), "JPEG", quality=95),
        "L_jpeg": _save(Image.fromarray(bar), "JPEG", quality=95),
        "progressive_jpeg": _save(Image.fromarray(bar), "JPEG", quality=95, progressive=True),
        "animated_png": _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),  # first frame
    }


MODES = _modes()


@pytest.mark.parametrize("mode", list(MODES))
def test_unusual_modes_decode_to_the_right_picture(mode: str) -> None:
    data = MODES[mode]
    raw = decode_image(data, f"{mode}.png", 30)
    assert raw.shape == (30, 30) and raw.dtype == np.uint8
    # Dark bar on light paper, whatever the mode (alpha: transparent counts as white paper).
    assert raw[15, 5] < 40 and raw[3, 5] > 215 and raw[27, 5] > 215, (raw[15, 5], raw[3, 5])
    x = image_bytes_to_array(data, f"{mode}.png", SIZE)
    assert x.shape == (1, SIZE, SIZE) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x[0, SIZE // 2, 3] > 0.8 and x[0, 1, 3] < 0.2  # inverted per image: strokes 1
    src = _through_zip(f"c1/mode_{mode}.png", data)
    imgs = src.images_of_class("c1")
    assert imgs.shape == (4, SIZE, SIZE) and imgs.dtype == np.float32
    assert 0.0 <= imgs.min() and imgs.max() <= 1.0
    assert src.inverted  # white paper everywhere: the whole set is inverted, strokes 1


def test_16bit_grayscale_is_scaled_not_clipped() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    raw = decode_image(_save(Image.fromarray(ramp)), "ramp16.png", 64)
    np.testing.assert_allclose(raw, np.rint(ramp / 257.0), atol=1)
    assert 120 < raw.mean() < 135  # clipping at 255 would give a mean near 255


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (2, 3)])
def test_tiny_images_are_upscaled(shape: tuple[int, int]) -> None:
    arr = np.full(shape, 17, dtype=np.uint8)
    raw = decode_image(_save(Image.fromarray(arr)), "tiny.png", SIZE)
    assert raw.shape == (SIZE, SIZE) and np.all(np.abs(raw.astype(int) - 17) <= 1)
    x = image_bytes_to_array(_save(Image.fromarray(arr)), "tiny.png", SIZE)
    assert x.shape == (1, SIZE, SIZE) and 0.0 <= x.min() and x.max() <= 1.0
    src = _through_zip("c0/tiny.png", _save(Image.fromarray(arr)))
    assert src.images_of_class("c0").shape == (4, SIZE, SIZE)
