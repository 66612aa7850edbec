"""Image task source: Omniglot zips as shipped, tiny generated zips and folders."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.tasks import (
    OMNIGLOT_DIR,
    ImageTask,
    ImageTaskSource,
    TaskError,
    clear_image_cache,
    make_task_source,
)
from engine.tasks.base import split_counts

REPO = Path(__file__).resolve().parents[1]
SMALL1 = OMNIGLOT_DIR / "images_background_small1.zip"
SMALL2 = OMNIGLOT_DIR / "images_background_small2.zip"


def _png(seed: int, size: int = 20, fmt: str = "PNG") -> bytes:
    """A black-on-white image with a random dark stroke."""
    rng = np.random.default_rng(seed)
    arr = np.full((size, size), 255, dtype=np.uint8)
    r = rng.integers(2, size - 6)
    arr[r : r + 3, 2 : size - 2] = 0
    arr[2 : size - 2, rng.integers(2, size - 6)] = 0
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _make_zip(path: Path, layout: dict[str, int], extra: dict[str, bytes] | None = None) -> Path:
    """layout: class folder path inside the zip -> number of images."""
    with zipfile.ZipFile(path, "w") as zf:
        for k, (folder, n) in enumerate(layout.items()):
            for i in range(n):
                zf.writestr(f"{folder}/img_{i:02d}.png", _png(100 * k + i))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_omniglot_small1_loads_as_shipped() -> None:
    src = ImageTaskSource(SMALL1, n_way=5)
    assert src.groups == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    total = sum(src.num_classes(s) for s in ("train", "val", "test"))
    assert total == 136
    assert src.num_images() == 2720
    assert src.inverted  # black strokes on white paper -> strokes become 1
    assert src.input_shape == (1, 28, 28) and src.output_dim == 5
    name = src.class_names["train"][0]
    imgs = src.images_of_class(name)
    assert imgs.shape == (20, 28, 28) and imgs.dtype == np.float32
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    assert imgs.mean() < 0.3  # mostly background (0)
    for s in ("train", "val", "test"):
        for n in src.class_names[s]:
            assert n.split("/")[0] in src.groups
    # Classes are split, not shared between splits.
    sets = [set(src.class_names[s]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_omniglot_small2_and_all_in_test() -> None:
    src = ImageTaskSource(SMALL2, split_fractions=(0, 0, 1))
    assert src.groups == [
        "Greek",
        "Japanese_(katakana)",
        "Latin",
        "Sanskrit",
        "Tagalog",
    ]
    assert src.num_classes("test") == 156
    assert src.num_classes("train") == 0 and src.num_classes("val") == 0
    assert all(len(src.images_of_class(n)) == 20 for n in src.class_names["test"][:10])
    with pytest.raises(TaskError, match="fewer than n_way"):
        src.sample_task("train", np.random.default_rng(0))


def test_omniglot_episodes_shapes_labels_and_reproducibility() -> None:
    src = ImageTaskSource(SMALL1, n_way=5)
    a = src.episodes("train", 2, 1, 5, seed=3)
    b = src.episodes("train", 2, 1, 5, seed=3)
    ep = a[0]
    assert ep.support_x.shape == (5, 1, 28, 28) and ep.query_x.shape == (25, 1, 28, 28)
    assert ep.support_x.dtype == torch.float32 and ep.support_y.dtype == torch.int64
    assert sorted(ep.support_y.tolist()) == [0, 1, 2, 3, 4]
    assert torch.bincount(ep.query_y).tolist() == [5] * 5
    assert ep.num_classes == 5 and ep.task_type == "classification"
    for ea, eb in zip(a, b, strict=True):
        assert torch.equal(ea.support_x, eb.support_x) and torch.equal(ea.query_y, eb.query_y)
    task = src.sample_task("train", np.random.default_rng(0))
    assert isinstance(task, ImageTask) and len(task.class_names) == 5


def test_omniglot_rotations_within_group_and_filters() -> None:
    plain = ImageTaskSource(SMALL1)
    rot = ImageTaskSource(SMALL1, rotations=True)
    for s in ("train", "val", "test"):
        assert rot.num_classes(s) == 4 * plain.num_classes(s)
    name = plain.class_names["train"][0]
    base = rot.images_of_class(name)
    np.testing.assert_array_equal(rot.images_of_class(name + "@rot90"), np.rot90(base, 1, axes=(1, 2)))
    src = ImageTaskSource(SMALL1, n_way=5, within_group=True, rotations=True)
    rng = np.random.default_rng(1)
    for _ in range(10):
        task = src.sample_task("train", rng)
        groups = {n.split("/")[0] for n in task.class_names}
        assert len(groups) == 1 and task.group in groups
        assert task.sample_episode(1, 1, rng).support_x.shape == (5, 1, 28, 28)
    only = ImageTaskSource(SMALL1, include_groups=["Greek", "Latin"], split_fractions=(1, 0, 0))
    assert only.groups == ["Greek", "Latin"]
    assert only.num_classes("train") == 24 + 26
    without = ImageTaskSource(SMALL1, exclude_groups=["Korean"])
    assert "Korean" not in without.groups
    with pytest.raises(TaskError, match="unknown groups"):
        ImageTaskSource(SMALL1, include_groups=["Klingon"])
    with pytest.raises(TaskError, match="no group in split"):
        ImageTaskSource(SMALL1, n_way=30, within_group=True).sample_task("train", np.random.default_rng(0))


def test_tiny_zip_with_group_level_and_wrapper(tmp_path: Path) -> None:
    layout = {f"wrap/G{g}/c{c}": 6 for g in range(2) for c in range(3)}
    path = _make_zip(tmp_path / "tiny.zip", layout)
    src = ImageTaskSource(path, n_way=3, image_size=16, split_fractions=(1, 0, 0))
    assert src.groups == ["G0", "G1"]
    assert src.class_names["train"] == [f"G{g}/c{c}" for g in range(2) for c in range(3)]
    ep = src.sample_task("train", np.random.default_rng(0)).sample_episode(2, 3, np.random.default_rng(0))
    assert ep.support_x.shape == (6, 1, 16, 16) and ep.query_x.shape == (9, 1, 16, 16)
    # White paper -> inverted so the background is 0.
    assert src.inverted and float(ep.support_x.mean()) < 0.5
    # Labels are assigned in random order: the same 3 classes get different labels.
    full = ImageTaskSource(path, n_way=6, image_size=16, split_fractions=(1, 0, 0))
    orders = {tuple(t.class_names) for t in full.tasks("train", 10, seed=0)}
    assert len(orders) > 1


def test_tiny_zip_without_group_level_and_folder(tmp_path: Path) -> None:
    path = _make_zip(tmp_path / "flat.zip", {f"class_{c}": 4 for c in range(4)})
    src = ImageTaskSource(path, n_way=2, split_fractions=(0.5, 0.25, 0.25), seed=1)
    assert src.groups == [""]
    assert sorted(n for s in src.class_names.values() for n in s) == [f"class_{c}" for c in range(4)]
    assert [src.num_classes(s) for s in ("train", "val", "test")] == [2, 1, 1]
    with pytest.raises(TaskError, match="fewer than n_way"):
        src.sample_task("val", np.random.default_rng(0))
    # The same layout as a folder on disk (<root>/<class>/*.png).
    root = tmp_path / "folder"
    for c in range(3):
        (root / f"k{c}").mkdir(parents=True)
        for i in range(3):
            (root / f"k{c}" / f"{i}.png").write_bytes(_png(10 * c + i))
    folder = ImageTaskSource(root, n_way=3, split_fractions=(1, 0, 0))
    assert folder.class_names["train"] == ["k0", "k1", "k2"]
    ep = folder.episodes("train", 1, 1, 2, seed=0)[0]
    assert ep.support_x.shape == (3, 1, 28, 28)


def test_zip_bytes_upload_and_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in range(3):
            for i in range(3):
                zf.writestr(f"Set/A{c}/{i}.JPG", _png(c * 7 + i, fmt="JPEG"))
    src = ImageTaskSource(buf.getvalue(), n_way=3, split_fractions=(1, 0, 0))
    assert src.groups == ["Set"] and src.num_classes("train") == 3
    assert src.path == "<uploaded zip>"


def test_unsafe_member_names_are_ignored_and_nothing_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    evil = {"../evil/x.png": _png(1), "/abs/y.png": _png(2), "a/../../z.png": _png(3)}
    path = _make_zip(tmp_path / "evil.zip", {"good/c0": 3, "good/c1": 3}, extra=evil)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        src = ImageTaskSource(path, n_way=2, split_fractions=(1, 0, 0))
    finally:
        os.chdir(cwd)
    assert src.class_names["train"] == ["good/c0", "good/c1"]
    assert len(src.skipped_members) == 3
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "evil").exists() and not Path("/abs/y.png").exists()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="not found"):
        ImageTaskSource(tmp_path / "missing.zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    with pytest.raises(TaskError, match="no images found"):
        ImageTaskSource(empty)
    bad = _make_zip(tmp_path / "bad.zip", {"c0": 2, "c1": 2}, extra={"c1/broken.png": b"xx"})
    with pytest.raises(TaskError, match=r"c1/broken\.png"):
        ImageTaskSource(bad)
    notzip = tmp_path / "not.zip"
    notzip.write_bytes(b"plain text")
    with pytest.raises(TaskError, match="not a valid zip"):
        ImageTaskSource(notzip)
    few = _make_zip(tmp_path / "few.zip", {f"c{i}": 3 for i in range(3)})
    src = ImageTaskSource(few, n_way=3, split_fractions=(1, 0, 0))
    task = src.sample_task("train", np.random.default_rng(0))
    with pytest.raises(TaskError, match="has 3 images, fewer than support_shots"):
        task.sample_episode(1, 5, np.random.default_rng(0))
    with pytest.raises(TaskError, match="max_images"):
        ImageTaskSource(few, max_images=5)
    with pytest.raises(TaskError, match="max_pixels"):
        ImageTaskSource(few, max_pixels=100)
    with pytest.raises(TaskError, match="n_way"):
        ImageTaskSource(few, n_way=1)
    with pytest.raises(TaskError, match="split_fractions"):
        ImageTaskSource(few, split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(TaskError, match="unknown class"):
        src.images_of_class("nope")


def test_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    clear_image_cache()
    path = _make_zip(tmp_path / "c.zip", {f"c{i}": 2 for i in range(2)})
    a = ImageTaskSource(path, n_way=2, split_fractions=(1, 0, 0))
    b = ImageTaskSource(path, n_way=2, split_fractions=(1, 0, 0))
    assert a._data is b._data
    _make_zip(path, {f"c{i}": 2 for i in range(3)})
    os.utime(path, ns=(1, 1))  # make sure the mtime differs
    c = ImageTaskSource(path, n_way=2, split_fractions=(1, 0, 0))
    assert c._data is not a._data and c.num_classes("train") == 3


def test_factory_default_is_omniglot() -> None:
    src = make_task_source("images", n_way=5)
    assert isinstance(src, ImageTaskSource) and len(src.groups) == 5


@given(
    n=st.integers(0, 300),
    raw=st.tuples(*[st.integers(0, 10)] * 3).filter(lambda t: sum(t) > 0),
)
@settings(max_examples=200, deadline=None)
def test_split_counts_property(n: int, raw: tuple[int, int, int]) -> None:
    fractions = tuple(r / sum(raw) for r in raw)
    counts = split_counts(n, fractions)
    assert sum(counts) == n and min(counts) >= 0
    nonzero = [k for k in range(3) if fractions[k] > 0]
    if n >= len(nonzero):
        assert all(counts[k] >= 1 for k in nonzero)
    assert all(counts[k] == 0 for k in range(3) if fractions[k] == 0)


def test_random_shift_moves_pixels_and_keeps_ink() -> None:
    from engine.tasks.image_augment import random_shift

    imgs = np.zeros((50, 12, 12), dtype=np.float32)
    imgs[:, 5:7, 5:7] = 1.0  # a blob away from the border: a shift of <= 2 keeps all of it
    out = random_shift(imgs, 2, np.random.default_rng(0))
    assert out.shape == imgs.shape
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 4.0)
    centres = {tuple(np.argwhere(o > 0).min(axis=0)) for o in out}
    assert len(centres) > 5  # different images get different shifts
    assert all(3 <= r <= 7 and 3 <= c <= 7 for r, c in centres)


@pytest.mark.parametrize(
    "key, value, bad",
    [
        ("augment_shift", 2, (9,)),
        ("augment_affine", 1.0, (2.5, -0.1, float("nan"), True, "1")),
        ("augment_elastic", 0.5, (3, -1, float("inf"), False, "0.5")),
    ],
)
def test_augmentation_applies_to_training_tasks_only(key, value, bad) -> None:
    plain = ImageTaskSource(SMALL1, n_way=5)
    aug = ImageTaskSource(SMALL1, n_way=5, **{key: value})
    for split, same in (("train", False), ("test", True)):
        a = plain.episodes(split, 1, 1, 2, seed=7)[0]
        b = aug.episodes(split, 1, 1, 2, seed=7)[0]
        assert a.task_name == b.task_name  # same classes; only the pixels may change
        assert torch.equal(a.support_x, b.support_x) is same
    assert aug.describe()[key] == value
    for v in bad:
        with pytest.raises(TaskError, match=key):
            ImageTaskSource(SMALL1, **{key: v})


def test_random_affine_is_identity_at_zero_and_distorts_within_its_ranges() -> None:
    from engine.tasks.image_augment import random_affine

    imgs = np.zeros((40, 28, 28), dtype=np.float32)
    imgs[:, 8:20, 13:15] = 1.0  # a vertical bar through the centre
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(random_affine(imgs, 0.0, rng), imgs, atol=1e-5)
    out = random_affine(imgs, 1.0, rng)
    assert out.shape == imgs.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 + 1e-5
    # Scale 0.8-1.2 per axis (and shear) keeps the ink within a factor of 0.8**2 .. 1.2**2 * (1+0.3**2).
    ratio = out.sum(axis=(1, 2)) / imgs[0].sum()
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert len({round(float(r), 3) for r in ratio}) > 20  # every image gets its own distortion
    # The centre stays put (rotation, shear and scale are about the centre): ink centroid moves < 1.5 px.
    ys, xs = np.indices((28, 28))
    cy = (out * ys).sum(axis=(1, 2)) / out.sum(axis=(1, 2))
    cx = (out * xs).sum(axis=(1, 2)) / out.sum(axis=(1, 2))
    assert np.abs(cy - 13.5).max() < 1.5 and np.abs(cx - 13.5).max() < 1.5


def test_random_elastic_is_identity_at_zero_and_bends_strokes_locally() -> None:
    from engine.tasks.image_augment import random_elastic

    imgs = np.zeros((40, 28, 28), dtype=np.float32)
    imgs[:, 4:24, 13:15] = 1.0  # a vertical bar through the centre
    np.testing.assert_allclose(random_elastic(imgs, 0.0, np.random.default_rng(0)), imgs, atol=1e-6)
    out = random_elastic(imgs, 1.0, np.random.default_rng(0))
    assert out.shape == imgs.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 + 1e-5
    np.testing.assert_array_equal(out, random_elastic(imgs, 1.0, np.random.default_rng(0)))  # seeded
    assert len({round(float(v), 3) for v in out.sum(axis=(1, 2))}) > 20  # every image its own warp
    # A smooth field bends the bar rather than moving it whole: the row-wise ink centre of one
    # image wanders, yet the warp is small (field std about 1.4 px: centroid within 4.5) and keeps
    # most of the ink.
    xs = np.arange(28)
    rows = out[:, 6:22]
    centres = (rows * xs).sum(-1) / rows.sum(-1).clip(1e-6)
    assert np.median(centres.std(axis=1)) > 0.1
    cx = (out * xs).sum(axis=(1, 2)) / out.sum(axis=(1, 2))
    assert np.abs(cx - 13.5).max() < 4.5
    ratio = out.sum(axis=(1, 2)) / imgs[0].sum()
    assert ratio.min() > 0.5 and ratio.max() < 2  # local stretches and squeezes


def test_mirrors_add_mirror_image_classes_in_the_same_split() -> None:
    plain = ImageTaskSource(SMALL1)
    both = ImageTaskSource(SMALL1, rotations=True, mirrors=True)
    only = ImageTaskSource(SMALL1, mirrors=True)
    for s in ("train", "val", "test"):
        assert both.num_classes(s) == 8 * plain.num_classes(s)
        assert only.num_classes(s) == 2 * plain.num_classes(s)
    name = plain.class_names["test"][0]
    base = plain.images_of_class(name)
    np.testing.assert_array_equal(only.images_of_class(name + "@mirror"), base[:, :, ::-1])
    np.testing.assert_array_equal(
        both.images_of_class(name + "@mirror@rot90"), np.rot90(base[:, :, ::-1], 1, axes=(1, 2))
    )
    # A character's copies never cross splits: its mirror is a test class like itself.
    assert name + "@mirror@rot270" in both.class_names["test"]
    assert both.describe()["mirrors"] is True
