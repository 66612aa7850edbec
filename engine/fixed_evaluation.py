"""Scoring fixed episodes (``engine.tasks.fixed_episodes``): every query scored once, per episode
and overall, with the 95% interval over episodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .algorithms import CausalMetaLearner
from .tasks.base import TaskError
from .tasks.fixed_episodes import FixedEpisode
from .training import ci95_half_width


def check_fixed_episodes(learner: CausalMetaLearner, episodes: Sequence[FixedEpisode]) -> None:
    """The model must take these images and, with a linear head, have one output per class."""
    if learner.task_type != "classification":
        raise TaskError("fixed episodes are classification trials; this checkpoint is a regression model")
    shape = tuple(learner.model.input_shape)
    for fe in episodes:
        got = tuple(fe.episode.support_x.shape[1:])
        if got != shape:
            raise TaskError(f"episode {fe.name!r} has images of shape {list(got)}; the model takes {list(shape)}")
        ways = len(fe.class_names)
        if not learner.embedding_only and ways != learner.model.output_dim:
            raise TaskError(
                f"episode {fe.name!r} has {ways} classes, but this {learner.algorithm.name} model's head has "
                f"{learner.model.output_dim} outputs (n_way); an embedding learner (prototypical, relation) "
                "scores any number of classes"
            )


@torch.no_grad()
def score_fixed_episodes(
    learner: CausalMetaLearner,
    episodes: Sequence[FixedEpisode],
    steps: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Adapt on each episode's support set and label each of its queries once.

    ``accuracy`` is the mean of the per-episode accuracies (``accuracy_ci95`` its interval over
    episodes); ``query_accuracy`` pools every query. Each episode row holds its confusion matrix
    (rows: true class, columns: predicted) and every query's file, true and predicted class."""
    check_fixed_episodes(learner, episodes)
    learner.eval()
    rows = []
    for fe in episodes:
        ep = fe.episode.to(device)
        state, outputs = learner.episode_outputs(ep, steps)
        predicted = learner.predict_labels(state, outputs).cpu().numpy()
        true = ep.query_y.cpu().numpy()
        n = len(fe.class_names)
        confusion = np.zeros((n, n), dtype=int)
        np.add.at(confusion, (true, predicted), 1)
        rows.append(
            {
                "episode": fe.name,
                "classes": fe.class_names,
                "support": len(fe.support_files),
                "queries": len(fe.query_files),
                "correct": int((predicted == true).sum()),
                "accuracy": float((predicted == true).mean()),
                "loss": float(learner.query_loss(state, outputs, ep.query_y)),
                "confusion": confusion.tolist(),
                "predictions": [
                    {"file": f, "true": fe.class_names[t], "predicted": fe.class_names[p]}
                    for f, t, p in zip(fe.query_files, true.tolist(), predicted.tolist(), strict=True)
                ],
            }
        )
    accuracies = [r["accuracy"] for r in rows]
    queries = sum(r["queries"] for r in rows)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_ci95": ci95_half_width(accuracies),
        "query_accuracy": sum(r["correct"] for r in rows) / queries,
        "loss": float(np.mean([r["loss"] for r in rows])),
        "episodes": len(rows),
        "queries": queries,
        "per_episode": rows,
    }
