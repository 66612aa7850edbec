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
