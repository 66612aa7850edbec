"""Episodes the pages show or adapt to: previews, held-out tasks of each source kind, and
episodes built from arrays the user gave."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.tasks import Episode, ImageTaskSource, SinusoidTaskSource, Task, TaskError, TaskSource, split_rng


def make_episode(
    support_x: Any,
    support_y: Any,
    query_x: Any,
    query_y: Any,
    task_type: str,
    num_classes: int | None = None,
    name: str = "your task",
) -> Episode:
    """An Episode from arrays (classification labels are class indices)."""

    def xt(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def yt(a: Any, n: int) -> torch.Tensor:
        if task_type == "classification":
            return torch.as_tensor(np.asarray(a, dtype=np.int64).reshape(-1))
        return torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(n, -1))

    sx, qx = xt(support_x), xt(query_x)
    return Episode(sx, yt(support_y, sx.shape[0]), qx, yt(query_y, qx.shape[0]), task_type, num_classes, name)


def sinusoid_grid(source: SinusoidTaskSource, n: int = 200) -> np.ndarray:
    """``n`` inputs evenly over the source's x range, as a column."""
    return np.linspace(source.x_range[0], source.x_range[1], n).reshape(-1, 1)


def sinusoid_preview(source: SinusoidTaskSource, n: int = 4, shots: int = 5, seed: int = 0):
    """(curves, points): n task curves and one support set each, for a preview plot."""
    grid = sinusoid_grid(source).ravel()
    rng = split_rng(seed, "train")
    curves, points = [], []
    for _ in range(n):
        task = source.sample_task("train", rng)
        ep = task.sample_episode(shots, 1, rng)
        curves.append((f"A={task.amplitude:.2f}, phase={task.phase:.2f}", grid.tolist(), task.function(grid).tolist()))
        points.append((ep.support_x.numpy().ravel().tolist(), ep.support_y.numpy().ravel().tolist()))
    return curves, points


def image_episode(source: ImageTaskSource, shots: int = 1, queries: int = 2, split: str = "test", seed: int = 0):
    """(task, episode) of a held-out image task."""
    rng = split_rng(seed, split)
    task = source.sample_task(split, rng)
    return task, task.sample_episode(shots, queries, rng)


def vector_task_choices(source: TaskSource, n: int = 8, seed: int = 0) -> dict[str, Task]:
    """Held-out tasks of a vector source by display name (test split; all tasks of a CSV)."""
    if source.name == "tabular":
        tasks = source.all_tasks("test") or source.all_tasks()
    else:
        tasks = source.tasks("test", n, seed=seed)
    return {t.name: t for t in tasks}


def sample_vector_episode(task: Task, shots: int, queries: int, seed: int = 0) -> Episode:
    """An episode of a vector task; with too few rows, fewer queries (at least one)."""
    last: TaskError | None = None
    for q in sorted({queries, max(1, queries // 2), 5, 2, 1}, reverse=True):
        if q > queries:
            continue
        try:
            return task.sample_episode(shots, q, np.random.default_rng(seed))
        except TaskError as exc:
            last = exc
    raise last or TaskError("could not draw an episode")
