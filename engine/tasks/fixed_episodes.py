"""Fixed episodes: one-shot trials whose support and query images are given, not drawn.

Layout (a zip or folder, read with every safety limit of ``engine.tasks.image_archive``)::

    <root>/<episode>/<class>/support*.png     the support set of that class in that episode
    <root>/<episode>/<class>/<other>.png      its queries

Each group folder (the one above the class folders) is one episode; in each class folder the
files whose names start with ``support`` (any case) are the support set, every other image a
query. Labels are the class folders' positions in sorted order within the episode.
``swap_roles=True`` scores the other direction: the queries become the support set and the
support images the queries. An example is ``assets/fixed_episodes_example.zip``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Episode, TaskError
from .image_archive import DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS, ImageInput, load_images

SUPPORT_PREFIX = "support"


@dataclass
class FixedEpisode:
    """One trial: its episode tensors and which file each support and query image came from."""

    name: str
    class_names: list[str]
    episode: Episode
    support_files: list[str]
    query_files: list[str]


def _is_support(member: str) -> bool:
    return member.rsplit("/", 1)[-1].lower().startswith(SUPPORT_PREFIX)


def load_fixed_episodes(
    path: ImageInput,
    image_size: int = 28,
    swap_roles: bool = False,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[FixedEpisode]:
    """The episodes of a fixed-episode zip or folder, in sorted order of their folder names.

    Every class of an episode needs at least one support image, and every episode two classes
    and at least one query (after ``swap_roles``); anything else is a TaskError naming it."""
    data = load_images(path, image_size, max_images, max_pixels)
    by_episode: dict[str, list[int]] = {}
    for c, group in enumerate(data.groups):
        by_episode.setdefault(group, []).append(c)
    episodes = []
    for name in sorted(by_episode):
        episodes.append(_one_episode(data, name, sorted(by_episode[name], key=lambda c: data.classes[c]), swap_roles))
    return episodes


def _one_episode(data, name: str, classes: list[int], swap_roles: bool) -> FixedEpisode:
    where = f"episode {name!r}" if name else "the set"
    if len(classes) < 2:
        raise TaskError(f"{where} has {len(classes)} class folder; an episode needs at least 2 classes")
    sx, sy, qx, qy, s_files, q_files = [], [], [], [], [], []
    for label, c in enumerate(classes):
        rows = data.indices[c]
        support = [r for r in rows if _is_support(data.files[r]) != swap_roles]
        query = [r for r in rows if _is_support(data.files[r]) == swap_roles]
        if not support:
            role = "query (files not starting with 'support', as --swap-roles asks)" if swap_roles else "'support*'"
            raise TaskError(f"{where}: class {data.classes[c]!r} has no {role} image to adapt on")
        for rows_, xs, ys, files in ((support, sx, sy, s_files), (query, qx, qy, q_files)):
            xs += list(rows_)
            ys += [label] * len(rows_)
            files += [data.files[r] for r in rows_]
    if not qx:
        raise TaskError(f"{where} has no query image to score")

    def pixels(rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(data.images[np.asarray(rows)].astype(np.float32) / 255.0)[:, None]

    episode = Episode(
        pixels(sx),
        torch.tensor(sy, dtype=torch.long),
        pixels(qx),
        torch.tensor(qy, dtype=torch.long),
        "classification",
        len(classes),
        name,
    )
    return FixedEpisode(name, [data.classes[c] for c in classes], episode, s_files, q_files)
