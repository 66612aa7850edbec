"""N-way image classification tasks over an image set (``engine.tasks.image_archive``).

A class is one (group, class folder) of the set; classes (not images) are split into
train/val/test. ``rotations`` adds each class turned by 90, 180 and 270 degrees as new
classes, ``mirrors`` its left-right mirror image; such copies stay in their base class's
split. Training-split episodes may be augmented (``engine.tasks.image_augment``).
Pixels are float32 in [0, 1], strokes high, background 0 (``background_value``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .base import (
    SPLITS,
    Episode,
    Task,
    TaskError,
    TaskSource,
    check_fractions,
    check_shots,
    check_split,
    split_counts,
)
from .image_archive import DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS, ImageInput, ImageSet, load_images
from .image_augment import check_strength, random_affine, random_elastic, random_shift

ROTATIONS = (0, 1, 2, 3)  # multiples of 90 degrees (counter-clockwise, np.rot90); +4: of the mirror image


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


def _chosen_classes(data: ImageSet, include: list[str] | None, exclude: list[str] | None) -> list[int]:
    """Indices of the decoded classes whose group passes ``include`` / ``exclude``."""
    all_groups = sorted(set(data.groups))
    base = list(range(len(data.classes)))
    for keep, groups in ((True, include), (False, exclude)):
        if groups is None:
            continue
        groups = list(groups)
        unknown = [g for g in groups if g not in all_groups]
        if unknown:
            raise TaskError(f"unknown groups {unknown}; available: {all_groups}")
        base = [c for c in base if (data.groups[c] in groups) == keep]
    if not base:
        raise TaskError("no classes left after include_groups / exclude_groups")
    return base


def _split_classes(base: list[int], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Base classes per split. Rotated and mirrored copies follow their base class, so a
    test character is never seen in training under another rotation."""
    rng = np.random.default_rng(seed)
    perm = [base[i] for i in rng.permutation(len(base))]
    n_tr, n_va, _ = split_counts(len(base), fractions)
    return {
        "train": sorted(perm[:n_tr]),
        "val": sorted(perm[n_tr : n_tr + n_va]),
        "test": sorted(perm[n_tr + n_va :]),
    }


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
        self.split_fractions = check_fractions(split_fractions)
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
        self.augment_affine = check_strength("augment_affine", augment_affine)
        self.augment_elastic = check_strength("augment_elastic", augment_elastic)
        self.within_group = bool(within_group)
        self.seed = int(seed)
        self.input_shape = (1, self.image_size, self.image_size)
        self.output_dim = self.n_way

        data = load_images(path, self.image_size, max_images, max_pixels)
        self._data = data
        self.inverted = data.inverted
        self.skipped_members = list(data.skipped_members)
        base = _chosen_classes(data, include_groups, exclude_groups)
        self.groups = sorted({data.groups[c] for c in base})
        self._build_class_table(_split_classes(base, self.split_fractions, self.seed))

    def _build_class_table(self, split_base: dict[str, list[int]]) -> None:
        """The class table: (base class, rotation) pairs per split; rotation 4-7 is 0-3 of the
        left-right mirror image."""
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
                    self._group_of.append(self._data.groups[c])
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

    def has_tasks(self, split: str) -> bool:
        return self.num_classes(split) > 0

    def class_sizes(self, split: str) -> dict[str, int]:
        """Images per class of ``split`` (the sizes an episode's shots are checked against)."""
        check_split(split)
        return {self._names[i]: len(self._rows_of(i)) for i in self._split_ids[split]}

    def num_images(self) -> int:
        """Decoded images (before rotation copies)."""
        return int(self._data.images.shape[0])

    def images_of_class(self, name: str) -> np.ndarray:
        """All images of one class, float32 (n, S, S) in [0, 1] (rotation applied)."""
        if name not in self._id_of:
            raise TaskError(f"unknown class {name!r}")
        cid = self._id_of[name]
        return self._pixels(self._rows_of(cid), self._rotation[cid])

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
