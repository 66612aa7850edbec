"""N-way image classification tasks from a zip or folder of class folders (Omniglot layout).

Accepted layouts (PNG or JPEG files)::

    <root>/<group>/<class>/*.png      e.g. images_background/Greek/character03/0394_01.png
    <root>/<class>/*.png
    <class>/*.png                     (zip only: class folders at the top level)

``<root>`` may be one wrapper folder (e.g. ``images_background_small1/``); it is stripped.
Zips are read in memory and never extracted. Member names that are absolute (``/x``,
``C:\\x``, ``\\\\server``) or contain ``..``, and symbolic-link members, are ignored (listed in
``skipped_members``), never followed. Other files (text, nested archives, ...) are ignored
and never opened. Only PNG and JPEG are decoded, whatever the file name says.

Limits (each refusal is a TaskError naming it): ``max_images`` image files and
``max_pixels`` pixels per image (declared in the header, checked before decoding),
MAX_MEMBERS archive entries, MAX_MEMBER_BYTES per image file and MAX_TOTAL_BYTES for all
of them (the sizes the zip declares, and again the bytes actually read, so a zip bomb or a
lying header is refused), MAX_TOTAL_PIXELS pixels in all. Encrypted members are refused.

Every image is converted to grayscale, resized to ``image_size`` square and stored as uint8.
If the mean pixel of the whole set is above 0.5 (dark strokes on white, as in Omniglot)
all images are inverted so that strokes are 1 and the background 0 (``background_value``).
A class is one (group, class folder); classes (not images) are split into train/val/test.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .base import SPLITS, Episode, Task, TaskError, TaskSource, check_shots, check_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_MAX_IMAGES = 100_000  # the full Omniglot set is 32,460 images
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image; guards against decompression bombs
MAX_MEMBER_BYTES = 32 * 1024 * 1024  # one encoded image file
MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # all image files of an archive, uncompressed
MAX_MEMBERS = 200_000  # entries of a zip (files and folders); checked before decoding any
MAX_TOTAL_PIXELS = 1_000_000_000  # all images of a set, at their stored size (Omniglot: 0.36e9)
IMAGE_FORMATS = ("PNG", "JPEG")  # what PIL may decode; other decoders are never tried
ROTATIONS = (0, 1, 2, 3)  # multiples of 90 degrees (counter-clockwise, np.rot90); +4: of the mirror image

ImageInput = str | os.PathLike | bytes | BinaryIO


@dataclass(frozen=True)
class _Loaded:
    """One decoded archive: images of all classes, read-only."""

    images: np.ndarray  # (N, S, S) uint8, strokes high
    groups: list[str]  # per class, "" when the layout has no group level
    classes: list[str]  # per class, the class folder name
    indices: list[np.ndarray]  # per class, rows of ``images``
    inverted: bool
    skipped_members: list[str]


_CACHE: OrderedDict[tuple, _Loaded] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def clear_image_cache() -> None:
    """Forget decoded archives (tests, or to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """Path components of an archive member, or None if it is unsafe or not relevant."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def _is_image_member(parts: tuple[str, ...]) -> bool:
    if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return False
    return parts[-1].lower().endswith(IMAGE_EXTENSIONS)


def _class_keys(dirs: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """(group, class) per image from its directory components."""
    # Strip wrapper folders shared by every image while the layout is deeper than
    # group/class, e.g. images_background_small1/Greek/character01 -> Greek/character01.
    while dirs and all(len(d) >= 3 for d in dirs) and len({d[0] for d in dirs}) == 1:
        dirs = [d[1:] for d in dirs]
    keys = []
    for d in dirs:
        keys.append(("/".join(d[:-1]), d[-1]))
    return keys


def decode_image(data: bytes, member: str, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (size, size) grayscale; transparent pixels count as white paper.

    Raises TaskError naming ``member`` for empty, corrupt or other-format files, and for
    more than ``max_pixels`` pixels (checked from the header, before decoding).
    16-bit grayscale is scaled to 8 bits; animated images give their first frame.
    Not inverted: callers decide (archives by the whole set's mean, uploads per image).
    """
    return _decode(data, member, size, max_pixels)[0]


def _decode(data: bytes, member: str, size: int, max_pixels: int) -> tuple[np.ndarray, int]:
    """decode_image, and the image's stored pixel count."""
    if not data:
        raise TaskError(f"image {member!r} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise TaskError(f"image {member!r} has {w}x{h} pixels, more than max_pixels={max_pixels}")
            if img.format == "JPEG":
                img.draft("L", (size * 2, size * 2))  # decode JPEGs at reduced size
            img.load()
            if img.mode == "I" or img.mode.startswith("I;16"):
                # 16-bit grayscale PNG: scale to 8 bits (convert("L") would clip at 255).
                wide = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                # Transparent pixels count as white paper, not black.
                rgba = img.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img2 = Image.alpha_composite(paper, rgba).convert("L")
            else:
                img2 = img.convert("L")
            if img2.size != (size, size):
                img2 = img2.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(img2, dtype=np.uint8), w * h
    except TaskError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL's own guard (above 89e6 pixels) fires while reading the header.
        raise TaskError(
            f"image {member!r} has too many pixels (decompression-bomb guard), more than max_pixels={max_pixels}"
        ) from None
    except Exception as exc:  # PIL raises many types for broken files
        # PIL's messages can carry object reprs ("<_io.BytesIO object at 0x...>"): keep them out.
        reason = "not a readable PNG or JPEG" if isinstance(exc, UnidentifiedImageError) else f"damaged ({exc})"
        raise TaskError(f"corrupt or unreadable image {member!r}: {reason}") from exc


def _finish(
    members: list[tuple[tuple[str, ...], bytes | Path]],
    read: Callable[[object], bytes],
    size: int,
    max_images: int,
    max_pixels: int,
    skipped: list[str],
    where: str,
) -> _Loaded:
    if not members:
        raise TaskError(
            f"no images found in {where}: expected PNG/JPEG files in class folders "
            "(<root>/<group>/<class>/*.png or <root>/<class>/*.png)"
        )
    top = [m for m in members if len(m[0]) == 1]
    members = [m for m in members if len(m[0]) >= 2]
    skipped.extend("/".join(m[0]) + " (not in a class folder)" for m in top)
    if not members:
        raise TaskError(
            f"no images found in class folders in {where}: the images must be in <class>/ folders, not at the top level"
        )
    if len(members) > max_images:
        raise TaskError(f"{where} has {len(members)} images, more than max_images={max_images}")
    members.sort(key=lambda m: m[0])
    keys = _class_keys([m[0][:-1] for m in members])
    images = np.empty((len(members), size, size), dtype=np.uint8)
    total_pixels = 0
    for i, (parts, handle) in enumerate(members):
        images[i], pixels = _decode(read(handle), "/".join(parts), size, max_pixels)
        total_pixels += pixels
        if total_pixels > MAX_TOTAL_PIXELS:
            raise TaskError(
                f"the images in {where} have more than MAX_TOTAL_PIXELS={MAX_TOTAL_PIXELS} pixels in all; "
                "use smaller images or fewer of them"
            )
    uniq = sorted(set(keys))
    pos = {k: i for i, k in enumerate(uniq)}
    cls = np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))
    order = np.argsort(cls, kind="stable")
    bounds = np.searchsorted(cls[order], np.arange(len(uniq) + 1))
    indices = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniq))]
    inverted = float(images.mean()) / 255.0 > 0.5
    if inverted:
        np.subtract(255, images, out=images)
    images.setflags(write=False)
    for ix in indices:
        ix.setflags(write=False)
    return _Loaded(
        images=images,
        groups=[k[0] for k in uniq],
        classes=[k[1] for k in uniq],
        indices=indices,
        inverted=inverted,
        skipped_members=skipped,
    )


def _declared_members(fp: BinaryIO) -> int:
    """Entries the zip's end-of-central-directory record declares (0 if unknown), read
    before the central directory is parsed."""
    end_record = getattr(zipfile, "_EndRecData", None)  # handles zip64; private, hence the guard
    try:
        rec = end_record(fp) if end_record is not None else None
        return int(rec[4]) if rec else 0  # rec[_ECD_ENTRIES_TOTAL]
    except Exception:
        return 0
    finally:
        fp.seek(0)


def _open_zip(fp: BinaryIO, what: str) -> zipfile.ZipFile:
    declared = _declared_members(fp)
    if declared > MAX_MEMBERS:
        raise TaskError(f"{what} declares {declared} entries, more than MAX_MEMBERS={MAX_MEMBERS}")
    try:
        return zipfile.ZipFile(fp)
    except Exception as exc:  # BadZipFile, but also OSError/ValueError/UnicodeDecodeError for mangled ones
        raise TaskError(f"{what} is not a valid zip file: {exc}") from None


def _load_zip(zf: zipfile.ZipFile, size: int, max_images: int, max_pixels: int, where: str):
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise TaskError(f"{where} has {len(infos)} entries, more than MAX_MEMBERS={MAX_MEMBERS}")
    members, skipped = [], []
    declared_total = 0
    for info in infos:
        if info.filename.endswith("/"):  # a folder (info.is_dir() fails on an empty name)
            continue
        if not info.filename:
            skipped.append("'' (empty name)")
            continue
        parts = _safe_parts(info.filename)
        if parts is None:
            skipped.append(info.filename + " (unsafe name)")
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            skipped.append(info.filename + " (symbolic link)")
            continue
        if not _is_image_member(parts):
            continue
        if info.flag_bits & 0x1:
            raise TaskError(f"image {info.filename!r} is encrypted; password-protected zips are not supported")
        if info.file_size > MAX_MEMBER_BYTES:
            raise TaskError(
                f"image {info.filename!r} is {info.file_size} bytes, more than MAX_MEMBER_BYTES={MAX_MEMBER_BYTES}"
            )
        declared_total += info.file_size
        members.append((parts, info))
    if declared_total > MAX_TOTAL_BYTES:
        raise TaskError(
            f"the images in {where} are {declared_total} bytes uncompressed, more than MAX_TOTAL_BYTES={MAX_TOTAL_BYTES}"
        )
    total_read = 0

    def read(info: zipfile.ZipInfo) -> bytes:
        nonlocal total_read
        try:
            with zf.open(info) as fh:  # never more than the cap, whatever the header says
                data = fh.read(MAX_MEMBER_BYTES + 1)
        except Exception as exc:
            raise TaskError(f"corrupt zip member {info.filename!r}: {exc}") from None
        if len(data) > MAX_MEMBER_BYTES:
            raise TaskError(f"image {info.filename!r} is more than MAX_MEMBER_BYTES={MAX_MEMBER_BYTES} bytes")
        total_read += len(data)
        if total_read > MAX_TOTAL_BYTES:
            raise TaskError(f"the images in {where} are more than MAX_TOTAL_BYTES={MAX_TOTAL_BYTES} bytes uncompressed")
        return data

    return _finish(members, read, size, max_images, max_pixels, skipped, where)


def _load_folder(root: Path, size: int, max_images: int, max_pixels: int) -> _Loaded:
    members = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        rel = Path(dirpath).relative_to(root).parts
        for fn in filenames:
            parts = (*rel, fn)
            if _is_image_member(parts):
                members.append((parts, Path(dirpath) / fn))
                if len(members) > max_images:
                    raise TaskError(f"{root} has more than max_images={max_images} images")

    def read(p: Path) -> bytes:
        with open(p, "rb") as fh:
            data = fh.read(MAX_MEMBER_BYTES + 1)
        if len(data) > MAX_MEMBER_BYTES:
            raise TaskError(f"image {str(p)!r} is larger than MAX_MEMBER_BYTES={MAX_MEMBER_BYTES} bytes")
        return data

    return _finish(members, read, size, max_images, max_pixels, [], str(root))


def _cached(key: tuple, load: Callable[[], _Loaded]) -> _Loaded:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    loaded = load()
    with _CACHE_LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded


def load_images(
    path: ImageInput,
    image_size: int = 28,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> _Loaded:
    """Decode a zip / folder / zip bytes / binary file object (cached in-process)."""
    limits = (int(image_size), int(max_images), int(max_pixels))
    if isinstance(path, (bytes, bytearray)) or hasattr(path, "read"):
        data = bytes(path) if isinstance(path, (bytes, bytearray)) else path.read()
        if not data:
            raise TaskError("the uploaded archive is empty")
        key = ("bytes", hashlib.sha256(data).hexdigest(), *limits)

        def load_bytes() -> _Loaded:
            with _open_zip(io.BytesIO(data), "the uploaded file") as zf:
                return _load_zip(zf, *limits, where="the uploaded zip")

        return _cached(key, load_bytes)
    p = Path(path).expanduser()
    if not p.exists():
        raise TaskError(f"image path not found: {str(p)!r}")
    p = p.resolve()
    if p.is_dir():
        # Folder contents can change without the folder's mtime changing: key on files.
        stamp = []
        for dirpath, _, filenames in os.walk(p):
            for fn in filenames:
                st = os.stat(os.path.join(dirpath, fn))
                stamp.append((dirpath, fn, st.st_mtime_ns, st.st_size))
        digest = hashlib.sha256(repr(sorted(stamp)).encode()).hexdigest()
        return _cached(("dir", str(p), digest, *limits), lambda: _load_folder(p, *limits))
    if not p.is_file():
        raise TaskError(f"{str(p)!r} is not a regular file or folder")
    st = p.stat()

    def load_file() -> _Loaded:
        with open(p, "rb") as fh, _open_zip(fh, repr(str(p))) as zf:
            return _load_zip(zf, *limits, where=str(p))

    return _cached(("zip", str(p), st.st_mtime_ns, st.st_size, *limits), load_file)


def _check_fractions(fr: tuple[float, float, float]) -> tuple[float, float, float]:
    try:
        vals = tuple(float(f) for f in fr)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"split_fractions must be three numbers, got {fr!r}") from exc
    if len(vals) != 3 or any(not (0.0 <= f <= 1.0) for f in vals) or abs(sum(vals) - 1) > 1e-6:
        raise TaskError(f"split_fractions must be three numbers in [0, 1] summing to 1, got {fr!r}")
    return vals  # type: ignore[return-value]


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes of train/val/test for ``n`` items, summing to n: rounded shares, and each
    split with a nonzero fraction gets >= 1 item while n allows (train first, then val)."""
    want = [f * n for f in fractions]
    counts = [round(w) for w in want]
    floor = [1 if f > 0 else 0 for f in fractions]
    counts = [max(c, m) for c, m in zip(counts, floor, strict=True)]
    while sum(counts) > n:
        above = [k for k in range(3) if counts[k] > floor[k]]
        if above:  # take from the most over-allocated split
            i = max(above, key=lambda k: (counts[k] - want[k], counts[k]))
        else:  # too few items for every split: test gives up first, then val
            i = next(k for k in (2, 1, 0) if counts[k] > 0)
        counts[i] -= 1
    while sum(counts) < n:
        i = max(range(3), key=lambda k: want[k] - counts[k])
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def random_shift(imgs: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (S, S) image by up to ``max_shift`` pixels per axis, filling with 0
    (training-split augmentation: a character drawn a little off-centre is the same class)."""
    n, h, w = imgs.shape
    pad = np.zeros((n, h + 2 * max_shift, w + 2 * max_shift), dtype=imgs.dtype)
    pad[:, max_shift : max_shift + h, max_shift : max_shift + w] = imgs
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return np.stack([pad[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def _strength(name: str, value: object) -> float:
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


class ImageTask(Task):
    """An N-way task over a fixed set of classes; labels are 0..N-1."""

    def __init__(
        self,
        name: str,
        source: ImageTaskSource,
        class_ids: list[int],
        class_names: list[str],
        group: str | None,
        split: str = "train",
    ) -> None:
        super().__init__(
            name=name,
            task_type="classification",
            output_dim=len(class_ids),
            group=group,
            truth=None,
            class_names=class_names,
        )
        self.source = source
        self.class_ids = class_ids  # ids into source's (possibly rotated) class table
        self.split = split

    def sample_episode(self, support_shots: int, query_shots: int, rng: np.random.Generator) -> Episode:
        check_shots(support_shots, query_shots)
        need = support_shots + query_shots
        src = self.source
        sx, qx, sy, qy = [], [], [], []
        for label, cid in enumerate(self.class_ids):
            rows = src._rows_of(cid)
            if len(rows) < need:
                raise TaskError(
                    f"class {src._names[cid]!r} has {len(rows)} images, fewer than "
                    f"support_shots + query_shots = {support_shots} + {query_shots}"
                )
            pick = rows[rng.choice(len(rows), size=need, replace=False)]
            imgs = src._pixels(pick, src._rotation[cid])
            if src.augment_affine and self.split == "train":
                imgs = random_affine(imgs, src.augment_affine, rng)
            if src.augment_elastic and self.split == "train":
                imgs = random_elastic(imgs, src.augment_elastic, rng)
            if src.augment_shift and self.split == "train":
                imgs = random_shift(imgs, src.augment_shift, rng)
            sx.append(imgs[:support_shots])
            qx.append(imgs[support_shots:])
            sy.append(np.full(support_shots, label, dtype=np.int64))
            qy.append(np.full(query_shots, label, dtype=np.int64))
        n_way = len(self.class_ids)
        s_perm = rng.permutation(n_way * support_shots)
        q_perm = rng.permutation(n_way * query_shots)
        s_x = np.concatenate(sx)[s_perm][:, None]
        q_x = np.concatenate(qx)[q_perm][:, None]
        return Episode(
            torch.from_numpy(np.ascontiguousarray(s_x)),
            torch.from_numpy(np.concatenate(sy)[s_perm]),
            torch.from_numpy(np.ascontiguousarray(q_x)),
            torch.from_numpy(np.concatenate(qy)[q_perm]),
            "classification",
            n_way,
            self.name,
        )


class ImageTaskSource(TaskSource):
    """N-way K-shot image tasks from an Omniglot-style zip or folder."""

    name = "images"
    task_type = "classification"
    background_value = 0.0

    def __init__(
        self,
        path: ImageInput,
        n_way: int = 5,
        image_size: int = 28,
        rotations: bool = False,
        mirrors: bool = False,
        within_group: bool = False,
        split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        include_groups: list[str] | None = None,
        exclude_groups: list[str] | None = None,
        seed: int = 0,
        max_images: int = DEFAULT_MAX_IMAGES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        augment_shift: int = 0,
        augment_affine: float = 0.0,
        augment_elastic: float = 0.0,
    ) -> None:
        if isinstance(n_way, bool) or not isinstance(n_way, (int, np.integer)) or n_way < 2:
            raise TaskError(f"n_way must be an integer >= 2, got {n_way!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not 4 <= image_size <= 256:
            raise TaskError(f"image_size must be an integer in [4, 256], got {image_size!r}")
        self.split_fractions = _check_fractions(split_fractions)
        self.path = path if isinstance(path, (str, os.PathLike)) else "<uploaded zip>"
        self.n_way = int(n_way)
        self.image_size = int(image_size)
        self.rotations = bool(rotations)
        self.mirrors = bool(mirrors)
        if (
            isinstance(augment_shift, bool)
            or not isinstance(augment_shift, (int, np.integer))
            or not 0 <= augment_shift <= 8
        ):
            raise TaskError(f"augment_shift must be an integer in [0, 8] pixels, got {augment_shift!r}")
        self.augment_shift = int(augment_shift)
        self.augment_affine = _strength("augment_affine", augment_affine)
        self.augment_elastic = _strength("augment_elastic", augment_elastic)
        self.within_group = bool(within_group)
        self.seed = int(seed)
        self.input_shape = (1, self.image_size, self.image_size)
        self.output_dim = self.n_way

        data = load_images(path, self.image_size, max_images, max_pixels)
        self._data = data
        self.inverted = data.inverted
        self.skipped_members = list(data.skipped_members)
        all_groups = sorted(set(data.groups))
        base = list(range(len(data.classes)))
        if include_groups is not None:
            include = list(include_groups)
            unknown = [g for g in include if g not in all_groups]
            if unknown:
                raise TaskError(f"unknown groups {unknown}; available: {all_groups}")
            base = [c for c in base if data.groups[c] in include]
        if exclude_groups is not None:
            exclude = list(exclude_groups)
            unknown = [g for g in exclude if g not in all_groups]
            if unknown:
                raise TaskError(f"unknown groups {unknown}; available: {all_groups}")
            base = [c for c in base if data.groups[c] not in exclude]
        if not base:
            raise TaskError("no classes left after include_groups / exclude_groups")
        self.groups = sorted({data.groups[c] for c in base})

        # Split base classes; rotated copies stay with their base class so that a
        # test character is never seen in training under another rotation.
        rng = np.random.default_rng(self.seed)
        perm = [base[i] for i in rng.permutation(len(base))]
        n_tr, n_va, _ = split_counts(len(base), self.split_fractions)
        split_base = {
            "train": sorted(perm[:n_tr]),
            "val": sorted(perm[n_tr : n_tr + n_va]),
            "test": sorted(perm[n_tr + n_va :]),
        }
        # Class table: (base class, rotation) pairs; rotation 4-7 is 0-3 of the left-right mirror image.
        self._base: list[int] = []
        self._rotation: list[int] = []
        self._names: list[str] = []
        self._group_of: list[str] = []
        self._split_ids: dict[str, list[int]] = {}
        rots = ROTATIONS if self.rotations else (0,)
        if self.mirrors:
            rots = rots + tuple(r + 4 for r in rots)
        for split in SPLITS:
            ids = []
            for c in split_base[split]:
                for r in rots:
                    ids.append(len(self._base))
                    self._base.append(c)
                    self._rotation.append(r)
                    self._group_of.append(data.groups[c])
                    self._names.append(self._class_name(c, r))
            self._split_ids[split] = ids
        self._id_of = {n: i for i, n in enumerate(self._names)}
        self.class_names: dict[str, list[str]] = {s: [self._names[i] for i in self._split_ids[s]] for s in SPLITS}

    def _class_name(self, c: int, rotation: int) -> str:
        g, k = self._data.groups[c], self._data.classes[c]
        name = f"{g}/{k}" if g else k
        mirror = "@mirror" if rotation >= 4 else ""
        turn = rotation % 4
        return name + mirror + (f"@rot{90 * turn}" if turn else "")

    def _rows_of(self, cid: int) -> np.ndarray:
        return self._data.indices[self._base[cid]]

    def _pixels(self, rows: np.ndarray, rotation: int) -> np.ndarray:
        imgs = self._data.images[rows].astype(np.float32) / 255.0
        if rotation >= 4:
            imgs = imgs[:, :, ::-1]
        if rotation % 4:
            imgs = np.rot90(imgs, k=rotation % 4, axes=(1, 2))
        return np.ascontiguousarray(imgs)

    # --------------------------------------------------------------- queries
    def num_classes(self, split: str) -> int:
        check_split(split)
        return len(self._split_ids[split])

    def num_images(self) -> int:
        """Decoded images (before rotation copies)."""
        return int(self._data.images.shape[0])

    def images_of_class(self, name: str) -> np.ndarray:
        """All images of one class, float32 (n, S, S) in [0, 1] (rotation applied)."""
        if name not in self._id_of:
            raise TaskError(f"unknown class {name!r}")
        cid = self._id_of[name]
        return self._pixels(self._rows_of(cid), self._rotation[cid])

    def group_of(self, name: str) -> str:
        if name not in self._id_of:
            raise TaskError(f"unknown class {name!r}")
        return self._group_of[self._id_of[name]]

    # -------------------------------------------------------------- sampling
    def sample_task(self, split: str, rng: np.random.Generator) -> ImageTask:
        check_split(split)
        ids = self._split_ids[split]
        group: str | None = None
        if self.within_group:
            by_group: dict[str, list[int]] = {}
            for i in ids:
                by_group.setdefault(self._group_of[i], []).append(i)
            eligible = sorted(g for g, v in by_group.items() if len(v) >= self.n_way)
            if not eligible:
                raise TaskError(
                    f"no group in split {split!r} has n_way={self.n_way} classes "
                    f"(classes per group: { {g: len(v) for g, v in sorted(by_group.items())} })"
                )
            group = eligible[int(rng.integers(len(eligible)))]
            ids = by_group[group]
        elif len(ids) < self.n_way:
            raise TaskError(f"split {split!r} has {len(ids)} classes, fewer than n_way={self.n_way}")
        # Random choice order = random label assignment.
        chosen = [ids[i] for i in rng.choice(len(ids), size=self.n_way, replace=False)]
        names = [self._names[i] for i in chosen]
        if group is None:
            gs = {self._group_of[i] for i in chosen}
            group = gs.pop() if len(gs) == 1 else None
        return ImageTask(
            name=f"{split}:" + "|".join(names),
            source=self,
            class_ids=chosen,
            class_names=names,
            group=group,
            split=split,
        )

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            path=str(self.path),
            n_way=self.n_way,
            image_size=self.image_size,
            rotations=self.rotations,
            mirrors=self.mirrors,
            augment_shift=self.augment_shift,
            augment_affine=self.augment_affine,
            augment_elastic=self.augment_elastic,
            within_group=self.within_group,
            groups=list(self.groups),
            classes={s: self.num_classes(s) for s in SPLITS},
            images=self.num_images(),
            split_fractions=list(self.split_fractions),
            seed=self.seed,
        )
        return info
