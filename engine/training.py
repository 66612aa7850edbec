"""The shared outer loop: meta-batches of episodes, one meta-gradient step, live curves.

The meta-gradient step lives in ``meta_step`` only, so a data-parallel run (torchrun) can
wrap it without a second training loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from . import distributed
from .algorithms.base import CausalMetaLearner
from .config import OneShotMetaLearningConfig
from .stop import Interrupted, StopSignal, check_stop, should_stop, stop_checks
from .tasks.base import Episode, TaskSource

log = logging.getLogger(__name__)


@dataclass
class TrainingHistory:
    """Train and validation curves; JSON-able through ``to_dict``."""

    metric_name: str
    iteration: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_metric: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    val_iteration: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    stopped_early: bool = False
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def sample_meta_batch(
    source: TaskSource,
    config: OneShotMetaLearningConfig,
    rng: np.random.Generator,
    split: str = "train",
) -> list[Episode]:
    return [
        source.sample_task(split, rng).sample_episode(config.support_shots, config.query_shots, rng)
        for _ in range(config.meta_batch_size)
    ]


def meta_step(
    learner: CausalMetaLearner,
    optimizer: torch.optim.Optimizer,
    episodes: list[Episode],
    grad_clip: float,
) -> tuple[float, float, bool]:
    """One meta-gradient step over a meta-batch. Returns (loss, metric, finite).

    Under a process group of N processes ``episodes`` is the whole meta-batch (the same on every
    process); each adapts to its share and the summed meta-gradients are all-reduced, so every
    process steps with the one-process mean gradient. A non-finite loss or gradient (on any
    process: the sums carry it to all) skips the step, so the weights stay the last good ones.
    """
    optimizer.zero_grad(set_to_none=True)
    n = len(episodes)
    rank, size = distributed.world()
    device = next(learner.parameters()).device
    local = [ep.to(device) for ep in distributed.shard(episodes, rank, size)]
    total, metric_sum = _backward_share(learner, local, n)
    params = list(learner.parameters())
    if size > 1:
        distributed.all_reduce_gradients(params)
        total, metric_sum = distributed.all_reduce_sum([total, metric_sum], device)
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    finite = math.isfinite(total) and bool(torch.isfinite(norm))
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return total / n, metric_sum / n, finite


def _backward_share(learner: CausalMetaLearner, episodes: list[Episode], n: int) -> tuple[float, float]:
    """Backpropagate this share's part of the meta-batch mean (its losses' sum / n, n the whole
    batch's size). Returns the share's summed loss and summed metric."""
    if not episodes:
        return 0.0, 0.0
    batched = learner.batched_objective(episodes)
    if batched is not None:
        mean_loss, metrics = batched
        (mean_loss * (len(episodes) / n)).backward()
        return float(mean_loss.detach()) * len(episodes), float(np.sum(metrics))
    total, metrics = 0.0, []
    for ep in episodes:
        check_stop()
        loss, metric = learner.episode_objective(ep)
        (loss / n).backward()  # per-task backward frees each task's graph early
        total += float(loss.detach())
        metrics.append(metric)
    return total, float(np.sum(metrics))


def ci95_half_width(values: Any) -> float:
    """Half-width of the normal 95% interval of the mean over episodes (NaN for fewer than two)."""
    values = np.asarray(values, dtype=float)
    return float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def evaluate(learner: CausalMetaLearner, episodes: list[Episode], steps: int | None = None) -> dict[str, float]:
    """Mean query loss and metric over episodes, with the 95% interval of the metric."""
    rows = [learner.evaluate_episode(ep, steps) for ep in episodes]
    name = learner.metric_name()
    values = np.array([r[name] for r in rows], dtype=float)
    return {
        "loss": float(np.mean([r["loss"] for r in rows])),
        name: float(values.mean()),
        f"{name}_ci95": ci95_half_width(values),
        "episodes": len(rows),
    }


def meta_train(
    learner: CausalMetaLearner,
    source: TaskSource,
    config: OneShotMetaLearningConfig,
    callback: Callable[[dict[str, Any]], None] | None = None,
    stop: StopSignal | None = None,
    history: TrainingHistory | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str = "cpu",
) -> TrainingHistory:
    """Run ``config.num_meta_iterations`` meta-updates (or until ``stop``).

    ``callback`` gets one record per iteration: iteration, total, train_loss, train_metric,
    val_loss / val_metric (None between evaluations), elapsed and eta seconds.

    Under an initialised process group (torchrun) every process calls this with the same
    arguments: the processes start from rank 0's weights, share each meta-batch and the
    validation episodes, and all see the same records (curves reduced over processes), so the
    run reproduces a one-process run with the same seed and ``meta_batch_size``.
    """
    history = history or TrainingHistory(learner.metric_name())
    rank, size = distributed.world()
    if size > 1:
        distributed.broadcast_module(learner)
    optimizer = optimizer or torch.optim.Adam(learner.parameters(), lr=config.outer_lr)
    start_iter = history.iteration[-1] + 1 if history.iteration else 0
    val_episodes: list[Episode] = []
    if source.has_tasks("val"):
        val_episodes = source.episodes(
            "val", config.val_episodes, config.support_shots, config.query_shots, config.seed + 1
        )
    else:  # every task in train (split fraction 0 for val): the curve has no validation points
        log.info("the validation split has no tasks: training without validation")
    val_share = [ep.to(device) for ep in distributed.shard(val_episodes, rank, size)]
    total = config.num_meta_iterations
    t0 = time.perf_counter()
    offset = history.elapsed[-1] if history.elapsed else 0.0
    log.info(
        "meta-training %s for %d iterations (meta-batch %d) on %s",
        learner.algorithm.name,
        total,
        config.meta_batch_size,
        getattr(source, "name", type(source).__name__),
    )
    learner.train()
    for i in range(total):
        stopping = should_stop(stop)
        if size > 1:  # a stop asked of one process stops them all at the same iteration
            stopping = distributed.any_process(stopping, torch.device(device))
        if stopping:
            history.stopped_early = True
            history.message = f"stopped by request after {i} of {total} iterations"
            break
        it = start_iter + i
        # One generator per iteration: a resumed run draws the same tasks as an uninterrupted one.
        rng = np.random.default_rng([config.seed, it])
        episodes = sample_meta_batch(source, config, rng)  # the whole batch: every process draws the same
        try:
            # Checked inside the step on one process only: under torchrun every process must reach
            # the same all-reduces, so there the stop waits for the iteration's end.
            with stop_checks(stop if size == 1 else None):
                loss, metric, finite = meta_step(learner, optimizer, episodes, config.grad_clip)
        except Interrupted:
            optimizer.zero_grad(set_to_none=True)  # the unfinished step changes no weight
            history.stopped_early = True
            history.message = f"stopped by request during iteration {it + 1} of {total}"
            break
        if not finite:
            history.stopped_early = True
            history.message = (
                f"training stopped at iteration {it}: the loss or its gradient is not finite "
                "(try a smaller inner_lr or outer_lr); the last good weights are kept"
            )
            break
        elapsed = time.perf_counter() - t0
        history.iteration.append(it)
        history.train_loss.append(loss)
        history.train_metric.append(metric)
        history.elapsed.append(offset + elapsed)
        record: dict[str, Any] = {
            "iteration": it,
            "done": i + 1,
            "total": total,
            "train_loss": loss,
            "train_metric": metric,
            "metric_name": history.metric_name,
            "val_loss": None,
            "val_metric": None,
            "elapsed": elapsed,
            "eta": elapsed / (i + 1) * (total - i - 1),
        }
        if val_episodes and (i % config.eval_interval == 0 or i == total - 1):
            val_loss, val_metric = _validate(learner, val_share, len(val_episodes))
            history.val_iteration.append(it)
            history.val_loss.append(val_loss)
            history.val_metric.append(val_metric)
            record["val_loss"], record["val_metric"] = val_loss, val_metric
            log.info(
                "iteration %d/%d: train loss %.4g, validation loss %.4g, %s %.4g",
                i + 1,
                total,
                loss,
                val_loss,
                history.metric_name,
                val_metric,
            )
        else:
            log.debug("iteration %d/%d: train loss %.4g", i + 1, total, loss)
        if callback is not None:
            callback(record)
    learner.eval()
    log.info("meta-training done: %s", history.message or f"{len(history.iteration)} iterations in total")
    return history


def _validate(learner: CausalMetaLearner, share: list[Episode], n: int) -> tuple[float, float]:
    """Mean validation loss and metric over all ``n`` episodes; this process scores its share."""
    name = learner.metric_name()
    rows = [learner.evaluate_episode(ep) for ep in share]
    sums = [sum(r["loss"] for r in rows), sum(r[name] for r in rows)]
    if distributed.world()[1] > 1:
        sums = distributed.all_reduce_sum(sums, next(learner.parameters()).device)
    return sums[0] / n, sums[1] / n
