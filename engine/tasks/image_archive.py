"""Reading image sets: a zip or folder of class folders (Omniglot layout), decoded to uint8 arrays.

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
all images are inverted so that strokes are high and the background 0. A class is one
(group, class folder). Decoded sets are cached in-process (``clear_image_cache``).
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
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import TaskError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_MAX_IMAGES = 100_000  # the full Omniglot set is 32,460 images
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image; guards against decompression bombs
MAX_MEMBER_BYTES = 32 * 1024 * 1024  # one encoded image file
MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # all image files of an archive, uncompressed
MAX_MEMBERS = 200_000  # entries of a zip (files and folders); checked before decoding any
MAX_TOTAL_PIXELS = 1_000_000_000  # all images of a set, at their stored size (Omniglot: 0.36e9)
IMAGE_FORMATS = ("PNG", "JPEG")  # what PIL may decode; other decoders are never tried

ImageInput = str | os.PathLike | bytes | BinaryIO  # a zip or folder path, zip bytes or a binary file object


@dataclass(frozen=True)
class ImageSet:
    """One decoded archive: images of all classes, read-only."""

    images: np.ndarray  # (N, S, S) uint8, strokes high
    groups: list[str]  # per class, "" when the layout has no group level
    classes: list[str]  # per class, the class folder name
    indices: list[np.ndarray]  # per class, rows of ``images``
    inverted: bool
    skipped_members: list[str]
    files: list[str] = field(default_factory=list)  # per image row, its member path inside the set


_CACHE: OrderedDict[tuple, ImageSet] = OrderedDict()
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
) -> ImageSet:
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
    return ImageSet(
        images=images,
        groups=[k[0] for k in uniq],
        classes=[k[1] for k in uniq],
        indices=indices,
        inverted=inverted,
        skipped_members=skipped,
        files=["/".join(parts) for parts, _ in members],
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


def _load_folder(root: Path, size: int, max_images: int, max_pixels: int) -> ImageSet:
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


def _cached(key: tuple, load: Callable[[], ImageSet]) -> ImageSet:
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
) -> ImageSet:
    """Decode a zip / folder / zip bytes / binary file object (cached in-process)."""
    limits = (int(image_size), int(max_images), int(max_pixels))
    if isinstance(path, (bytes, bytearray)) or hasattr(path, "read"):
        data = bytes(path) if isinstance(path, (bytes, bytearray)) else path.read()
        if not data:
            raise TaskError("the uploaded archive is empty")
        key = ("bytes", hashlib.sha256(data).hexdigest(), *limits)

        def load_bytes() -> ImageSet:
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

    def load_file() -> ImageSet:
        with open(p, "rb") as fh, _open_zip(fh, repr(str(p))) as zf:
            return _load_zip(zf, *limits, where=str(p))

    return _cached(("zip", str(p), st.st_mtime_ns, st.st_size, *limits), load_file)
