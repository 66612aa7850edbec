"""A task source over an explicit list of tasks (for ``meta_train(list_of_tasks)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Task, TaskError, TaskSource, check_split


class TaskListSource(TaskSource):
    """Every split samples from the same given tasks (validation then measures fresh
    episodes of the training tasks, not held-out tasks: say so where curves are shown)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        input_shape: tuple[int, ...],
        name: str = "task list",
    ) -> None:
        if not tasks:
            raise TaskError("the task list is empty")
        types = {t.task_type for t in tasks}
        if len(types) != 1:
            raise TaskError(f"tasks mix task types {sorted(types)}")
        self.name = name
        self._tasks = list(tasks)
        self.task_type = tasks[0].task_type
        self.output_dim = max(t.output_dim for t in tasks)
        self.input_shape = tuple(input_shape)
        # Tasks drawn from one source keep its names (features, target), so discovery and a known
        # graph speak of X1, X2, ... rather than of column numbers.
        origins = {id(getattr(t, "source", None)) for t in tasks}
        origin = getattr(tasks[0], "source", None) if len(origins) == 1 else None
        names = getattr(origin, "feature_names", None)
        shape_fits = len(self.input_shape) == 1 and names is not None and len(names) == self.input_shape[0]
        self.feature_names = list(names) if shape_fits else None
        self.target = getattr(origin, "target", None) if shape_fits else None
        self.background_value = float(getattr(origin, "background_value", 0.0))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.feature_names is not None:
            info.update(feature_names=list(self.feature_names), target=self.target)
        return info

    def sample_task(self, split: str, rng: np.random.Generator) -> Task:
        check_split(split)
        return self._tasks[int(rng.integers(len(self._tasks)))]


def as_task_source(source_tasks: TaskSource | Sequence[Task], input_shape: Sequence[int] | None = None) -> TaskSource:
    """A task source as it is, or a list of tasks as a ``TaskListSource`` (input shape: the
    given one, else read from a drawn example)."""
    if isinstance(source_tasks, TaskSource):
        return source_tasks
    if isinstance(source_tasks, (str, bytes)) or not isinstance(source_tasks, Sequence):
        raise TaskError(f"expected a task source or a list of tasks, got {type(source_tasks).__name__}")
    tasks = list(source_tasks)
    if not all(isinstance(t, Task) for t in tasks):
        raise TaskError("every item of the task list must be a Task")
    if input_shape is None:
        ep = tasks[0].sample_episode(1, 1, np.random.default_rng(0)) if tasks else None
        input_shape = tuple(ep.support_x.shape[1:]) if ep is not None else (1,)
    return TaskListSource(tasks, tuple(input_shape))
