"""The original description's task-level verbs of a learner (docs/DESIGN.md section 4).

``learner = MAMLCausalLearner(config, model)``, ``results = await learner.meta_train(source_tasks)``
and ``adapted_model = await learner.adapt(target_task, support_data)``. The functional verb
``learner.adapt(support_x, support_y, steps, ...)`` that the inner and outer loops use stays as
it is: ``adapt`` dispatches on its first argument (a Task or an Episode takes the coroutine
path, tensors the functional one), so the two forms never meet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config import OneShotMetaLearningConfig
from ..model import CausalMetaModel
from ..tasks.base import Episode, Task

if TYPE_CHECKING:
    from .base import AdaptedState, CausalMetaLearner

log = logging.getLogger(__name__)


def learner_args(
    cls: type, first: Any, second: Any, task_type: str | None
) -> tuple[OneShotMetaLearningConfig, CausalMetaModel, str]:
    """(config, model, task_type) from ``(config, model)`` or ``(model, config)``; the task type
    inferred where not given: classification for the embedding learners, regression for a
    model with one output, classification for more."""
    if isinstance(first, OneShotMetaLearningConfig) and isinstance(second, CausalMetaModel):
        config, model = first, second
    elif isinstance(first, CausalMetaModel) and isinstance(second, OneShotMetaLearningConfig):
        model, config = first, second
    else:
        raise TypeError(
            f"{cls.__name__} takes (config, model): a OneShotMetaLearningConfig and a CausalMetaModel, "
            f"got ({type(first).__name__}, {type(second).__name__})"
        )
    if task_type is None:
        if cls.embedding_only or model.output_dim > 1:
            task_type = "classification"
        else:
            task_type = cls.default_task_type
    return config, model, task_type


def takes_tasks(adapt: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a learner's functional ``adapt``: called with a Task or an Episode first, it returns
    the coroutine of ``adapt_task`` instead (``await learner.adapt(target_task, support_data)``)."""

    @functools.wraps(adapt)
    def wrapper(self: CausalMetaLearner, support_x: Any, support_y: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(support_x, (Task, Episode)):
            return self.adapt_task(support_x, support_y, *args, **kwargs)
        return adapt(self, support_x, support_y, *args, **kwargs)

    return wrapper


class AdaptedModel:
    """A learner adapted to one task: ``adapted_model(x)`` gives logits or values,
    ``predict(x)`` labels or values; ``trace`` is the support loss per step, ``state`` the
    adapted parameters (and prototypes), ``quality`` the loss and metric on the episode's query set."""

    def __init__(self, learner: CausalMetaLearner, state: AdaptedState, quality: dict[str, float]) -> None:
        self.learner = learner
        self.state = state
        self.quality = quality

    @property
    def trace(self) -> list[float]:
        return list(self.state.trace)

    def _inputs(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.learner.mechanism_rates.device)

    def __call__(self, x: Any, causal_mask: Any = None) -> torch.Tensor:
        mask = None if causal_mask is None else self._inputs(causal_mask)
        with torch.no_grad():
            return self.learner(self.state, self._inputs(x), causal_mask=mask)

    def predict(self, x: Any) -> torch.Tensor:
        outputs = self(x)
        if self.learner.task_type == "classification":
            return self.learner.predict_labels(self.state, outputs).cpu()
        return outputs.cpu()

    def __repr__(self) -> str:
        quality = ", ".join(f"{k}={v:.4g}" for k, v in self.quality.items())
        return f"AdaptedModel({self.learner.algorithm.name}, {quality})"


def adapt_to_task(
    learner: CausalMetaLearner,
    target_task: Task | Episode,
    support_data: Any = None,
    steps: int | None = None,
    seed: int | None = None,
) -> AdaptedModel:
    """Adapt from the support data (``(x, y)``, an Episode, or None: one episode is drawn) and
    score the task's query set."""
    from ..tasks.support import episode_for

    config = learner.config
    rng = np.random.default_rng(config.seed if seed is None else seed)
    kw = {"support_shots": config.support_shots, "query_shots": config.query_shots}
    episode = episode_for(target_task, support_data, None, task_type=learner.task_type, rng=rng, **kw)
    episode = episode.to(learner.mechanism_rates.device)
    steps = learner.default_steps() if steps is None else steps
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    with torch.no_grad():
        state = learner.adapt(episode.support_x, episode.support_y, steps, params=params, record=True)
        outputs = learner(state, episode.query_x)
        quality = {
            "loss": float(learner.query_loss(state, outputs, episode.query_y)),
            learner.metric_name(): float(learner.metric(state, outputs, episode.query_y)),
        }
    log.info("adapted %s to %s in %d steps: %s", learner.algorithm.name, episode.task_name or "a task", steps, quality)
    return AdaptedModel(learner, state, quality)


def meta_train_learner(
    learner: CausalMetaLearner, source_tasks: Any, callback: Callable[[dict[str, Any]], None] | None, stop: Any
) -> dict[str, Any]:
    """Meta-train ``learner`` on a task source or a list of tasks with ``engine.training``; the
    outer optimiser and the history live on the learner, so a second call continues."""
    from ..tasks.base import TaskError
    from ..tasks.task_list import as_task_source
    from ..training import meta_train

    source = as_task_source(source_tasks, learner.model.input_shape)
    if tuple(source.input_shape) != tuple(learner.model.input_shape) or source.task_type != learner.task_type:
        raise TaskError(
            f"the learner takes {learner.task_type} tasks with input shape {list(learner.model.input_shape)}, "
            f"but the tasks are {source.task_type} with input shape {list(source.input_shape)}"
        )
    if not learner.embedding_only and source.output_dim != learner.model.output_dim:
        raise TaskError(f"the model has {learner.model.output_dim} outputs, the tasks {source.output_dim}")
    device = learner.mechanism_rates.device
    if learner.outer_optimizer is None:
        learner.outer_optimizer = torch.optim.Adam(learner.parameters(), lr=learner.config.outer_lr)
    learner.history = meta_train(
        learner,
        source,
        learner.config,
        callback=callback,
        stop=stop,
        history=learner.history,
        optimizer=learner.outer_optimizer,
        device=device,
    )
    return learner.history.to_dict()


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` off the event loop (the learners' coroutines, like the engine's)."""
    return await asyncio.to_thread(fn, *args, **kwargs)
