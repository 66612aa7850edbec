"""Small image sets built in tests: fixed-episode zips with known roles."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(seed: int, size: int = 28) -> np.ndarray:
    """A random stroke-like binary image (white strokes on black), distinct per seed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), dtype=np.uint8)
    img[rng.random((size, size)) < 0.15] = 255
    return img


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_fixed_zip(path: Path, layout: dict[str, dict[str, dict[str, int]]]) -> Path:
    """``layout[episode][class][file name] = pattern seed``, written as ``root/episode/class/file``."""
    with zipfile.ZipFile(path, "w") as zf:
        for ep, classes in layout.items():
            for cls, files in classes.items():
                for name, seed in files.items():
                    zf.writestr(f"trials/{ep}/{cls}/{name}", png(pattern(seed)))
    return path


def copies_layout(episodes: int = 2, ways: int = 3) -> dict[str, dict[str, dict[str, int]]]:
    """Each class: ``support.png`` and one query that is an exact copy of it."""
    return {
        f"ep{e}": {f"c{k}": {"support.png": 100 * e + k, "q1.png": 100 * e + k} for k in range(ways)}
        for e in range(episodes)
    }
