"""Tasks, episodes and task sources: the data contract every learner consumes.

A Task is one learning problem; it samples Episodes (a support set and a query set).
A TaskSource yields train / validation / test tasks of one family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

TaskType = Literal["classification", "regression"]
Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")


class TaskError(ValueError):
    """A task source cannot be built or sampled from the given input (message names the problem)."""


@dataclass
class Episode:
    """One support/query draw from a task.

    Classification: ``*_y`` are int64 class indices in ``[0, num_classes)``.
    Regression: ``*_y`` are float32 of shape ``(n, output_dim)``.
    ``*_x`` are float32 of shape ``(n, *input_shape)``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    task_type: TaskType
    num_classes: int | None = None
    task_name: str = ""

    def to(self, device: torch.device | str) -> Episode:
        return Episode(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.task_type,
            self.num_classes,
            self.task_name,
        )


@dataclass
class Task:
    """One learning problem. Subclasses implement ``sample_episode``."""

    name: str
    task_type: TaskType
    output_dim: int
    group: str | None = None
    truth: dict[str, Any] | None = field(default=None, repr=False)
    class_names: list[str] | None = None

    def sample_episode(self, support_shots: int, query_shots: int, rng: np.random.Generator) -> Episode:
        """Support: ``support_shots`` per class (classification) or points (regression).
        Query: ``query_shots`` per class or points. Raises TaskError if the task is too small."""
        raise NotImplementedError


class TaskSource:
    """A family of tasks with fixed input shape and output size."""

    name: str = "source"
    task_type: TaskType = "regression"
    input_shape: tuple[int, ...] = (1,)
    output_dim: int = 1
    feature_names: list[str] | None = None
    # Value an occluded image pixel / a "reference" feature is set to (used by interventions).
    background_value: float = 0.0

    def sample_task(self, split: str, rng: np.random.Generator) -> Task:
        raise NotImplementedError

    def has_tasks(self, split: str) -> bool:
        """Whether ``split`` has any task to draw (a file's split with fraction 0 has none)."""
        return True

    def tasks(self, split: str, n: int, seed: int = 0) -> list[Task]:
        """``n`` tasks of ``split``, reproducible from ``seed`` (each split its own stream)."""
        rng = split_rng(seed, split)
        return [self.sample_task(split, rng) for _ in range(n)]

    def episodes(self, split: str, n: int, support_shots: int, query_shots: int, seed: int = 0) -> list[Episode]:
        """``n`` episodes, each from a freshly sampled task of ``split``; reproducible from ``seed``
        (each split its own stream)."""
        rng = split_rng(seed, split)
        return [self.sample_task(split, rng).sample_episode(support_shots, query_shots, rng) for _ in range(n)]

    def describe(self) -> dict[str, Any]:
        """Short JSON-able summary (for the UI, the CLI and checkpoints)."""
        return {
            "name": self.name,
            "task_type": self.task_type,
            "input_shape": list(self.input_shape),
            "output_dim": self.output_dim,
        }


_SPLIT_STREAM = 0x5EED  # keeps these streams apart from meta-training's [seed, iteration] ones


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The random stream of one split for ``seed``: train, validation, test (and previews, which
    draw training tasks) never share draws, so a held-out task is never a training task drawn
    from the same seed, whatever the source."""
    check_split(split)
    return np.random.default_rng([int(seed), _SPLIT_STREAM, SPLITS.index(split)])


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise TaskError(f"split must be one of {SPLITS}, got {split!r}")


def check_shots(support_shots: int, query_shots: int) -> None:
    """Shared validation of episode sizes (support >= 1, query >= 0, both ints)."""
    for name, value, low in (
        ("support_shots", support_shots, 1),
        ("query_shots", query_shots, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise TaskError(f"{name} must be an integer >= {low}, got {value!r}")


def check_fractions(fr: tuple[float, float, float]) -> tuple[float, float, float]:
    """Train/val/test fractions: three numbers in [0, 1] summing to 1."""
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
