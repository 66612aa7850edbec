"""An episode from what a caller hands over: a task (an episode is drawn), an episode, or a
task with support data ``(x, y)`` (the original description's ``support_data``), optionally
with its own query data. The one place where support pairs become tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import Episode, Task

SupportData = Episode | tuple[Any, Any] | None


def tensor_pair(pair: tuple[Any, Any], task_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as float inputs and labels (long, classification) or values (float, 2-D)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"support data must be an (x, y) pair or an Episode, got {type(pair).__name__}")
    x = torch.as_tensor(np.asarray(pair[0]), dtype=torch.float32)
    if task_type == "classification":
        y = torch.as_tensor(np.asarray(pair[1]), dtype=torch.long).reshape(-1)
    else:
        y = torch.as_tensor(np.asarray(pair[1]), dtype=torch.float32).reshape(x.shape[0], -1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"support has {x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y


def episode_for(
    target: Task | Episode,
    support: SupportData,
    query: SupportData,
    *,
    support_shots: int,
    query_shots: int,
    task_type: str,
    rng: np.random.Generator,
) -> Episode:
    """The episode to adapt on and score: ``support`` replaces the drawn support set, ``query``
    the drawn query set; a task without both is sampled (``support_shots``, ``query_shots``)."""
    if not isinstance(target, (Task, Episode)):
        raise TypeError(f"expected a Task or an Episode, got {type(target).__name__}")
    if isinstance(target, Episode):
        base = target
    elif isinstance(support, Episode):
        base = support
    else:
        base = target.sample_episode(support_shots, query_shots, rng)
    sx, sy = base.support_x, base.support_y
    if isinstance(support, Episode):
        sx, sy = support.support_x, support.support_y
    elif support is not None:
        sx, sy = tensor_pair(support, task_type)
    qx, qy = base.query_x, base.query_y
    if isinstance(query, Episode):
        qx, qy = query.query_x, query.query_y
    elif query is not None:
        qx, qy = tensor_pair(query, task_type)
    return Episode(sx, sy, qx, qy, base.task_type, base.num_classes, base.task_name)
