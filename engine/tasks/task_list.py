"""A task source over an explicit list of tasks (for ``meta_train(list_of_tasks)``)."""

from __future__ import annotations

from collections.abc import Sequence

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

    def sample_task(self, split: str, rng: np.random.Generator) -> Task:
        check_split(split)
        return self._tasks[int(rng.integers(len(self._tasks)))]
