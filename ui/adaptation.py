"""One-shot adaptation as the pages drive it: a sinusoid from clicked points (and its error against
the number of points over held-out tasks), images from one picture per class, and the adapted
model's outputs under a causal mask. The numbers are the engine's; these functions only arrange
its inputs and results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine import OneShotMetaLearningEngine
from engine.occlusion import OcclusionMaps, occlusion_maps
from engine.training import ci95_half_width

from .episodes import make_episode


def _as_list(values: Any) -> list[float]:
    arr = np.asarray(values, dtype=float)
    return arr.reshape(arr.shape[0], -1)[:, 0].tolist() if arr.ndim else [float(arr)]


def prior_curve(eng: OneShotMetaLearningEngine, task: Any, grid: np.ndarray) -> list[float]:
    """The meta-model's own curve on ``grid`` (adaptation with zero steps)."""
    truth = np.asarray(task.function(grid), dtype=np.float32).reshape(-1, 1)
    x0 = grid[:1].astype(np.float32)
    res = eng.one_shot_adapt_sync(task, support_data=(x0, truth[:1]), query_data=(grid, truth), steps=0)
    return _as_list(res["predictions"])


def adapt_sinusoid(
    eng: OneShotMetaLearningEngine,
    task: Any,
    points: Sequence[tuple[float, float]],
    grid: np.ndarray,
) -> dict[str, Any]:
    """Adapt to the given (x, y) points of a sinusoid task; query = the task's curve on ``grid``.

    Returns the curves before (meta-model, 0 steps) and after adaptation, and the engine's result.
    """
    sx = np.array([[p[0]] for p in points], dtype=np.float32)
    sy = np.array([[p[1]] for p in points], dtype=np.float32)
    truth = np.asarray(task.function(grid), dtype=np.float32).reshape(-1, 1)
    prior = eng.one_shot_adapt_sync(task, support_data=(sx, sy), query_data=(grid, truth), steps=0)
    result = eng.one_shot_adapt_sync(task, support_data=(sx, sy), query_data=(grid, truth))
    return {
        "x": grid.ravel().tolist(),
        "truth": truth.ravel().tolist(),
        "prior": _as_list(prior["predictions"]),
        "adapted": _as_list(result["predictions"]),
        "prior_quality": prior["adaptation_quality"],
        "support": (sx.ravel().tolist(), sy.ravel().tolist()),
        "result": result,
    }


def adapt_images(
    eng: OneShotMetaLearningEngine,
    support_x: np.ndarray,
    support_y: Sequence[int],
    query_x: np.ndarray | None,
    query_y: Sequence[int] | None,
    class_names: Sequence[str],
    name: str = "your images",
) -> dict[str, Any]:
    """Adapt from one image per class; predict the query images (labelled or not).

    Unlabelled queries: the quality is measured on the support set itself and the
    predictions come from ``predict_proba_sync`` on the query images.
    """
    n = len(class_names)
    labelled = query_x is not None and query_y is not None and len(query_y) == len(query_x) and len(query_x) > 0
    if labelled:
        ep = make_episode(support_x, support_y, query_x, query_y, "classification", n, name)
    else:
        ep = make_episode(support_x, support_y, support_x, support_y, "classification", n, name)
    result = eng.one_shot_adapt_sync(ep)
    out: dict[str, Any] = {"result": result, "labelled": labelled, "class_names": list(class_names)}
    if query_x is not None and len(query_x):
        t0 = time.perf_counter()
        probs = eng.predict_proba_sync(np.asarray(query_x, dtype=np.float32)).numpy()
        out["prediction_time"] = time.perf_counter() - t0  # the query pictures' own (result's is the episode's)
        out["probabilities"] = probs.tolist()
        out["predicted"] = probs.argmax(-1).tolist()
    return out


def episode_occlusion(
    eng: OneShotMetaLearningEngine,
    support_x: np.ndarray,
    support_y: Sequence[int],
    query_x: np.ndarray,
    query_y: Sequence[int],
    num_classes: int,
    patch: int = 4,
) -> OcclusionMaps:
    """Occlusion maps of every support and query picture of an image episode. For unlabelled
    queries pass the predicted labels: the query loss then measures what supports the model's answer."""
    ep = make_episode(support_x, support_y, query_x, query_y, "classification", num_classes, "occlusion")
    return occlusion_maps(eng.learner, ep.to(eng.device), patch=patch)


def masked_outputs(eng: OneShotMetaLearningEngine, x: Any, mask: Sequence[float] | None) -> np.ndarray:
    """Predictions (regression values) or class probabilities of the adapted model under a mask."""
    x = np.asarray(x, dtype=np.float32)
    mask = None if mask is None else list(mask)
    if eng.task_type == "classification":
        return eng.predict_proba_sync(x, causal_mask=mask).numpy()
    return eng.predict_sync(x, causal_mask=mask).numpy()


def accuracy(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Share of rows whose most probable class is the label (nan without labels)."""
    p = np.asarray(probabilities)
    if len(labels) == 0:
        return float("nan")
    return float((p.argmax(-1) == np.asarray(labels)).mean())


def mse(predictions: np.ndarray, targets: Any) -> float:
    """Mean squared error of flattened predictions against targets (nan without targets)."""
    p = np.asarray(predictions, dtype=float).reshape(-1)
    t = np.asarray(targets, dtype=float).reshape(-1)
    return float(np.mean((p - t) ** 2)) if len(t) else float("nan")


def _task_points(task: Any, n: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    xs = rng.uniform(*task.x_range, n)
    return [(float(x), float(y)) for x, y in zip(xs, np.ravel(task.function(xs.reshape(-1, 1))), strict=True)]


def points_steps(
    eng: OneShotMetaLearningEngine, task: Any, grid: np.ndarray, counts: Sequence[int] = (1, 2, 5), seed: int = 0
) -> list[dict[str, Any]]:
    """One task adapted from 1, 2, 5 of its points (each set holds the smaller ones): per count the
    ``adapt_sinusoid`` result, with the MSE on the whole curve before and after."""
    pts = _task_points(task, max(counts), np.random.default_rng(seed))
    return [{"count": k, **adapt_sinusoid(eng, task, pts[:k], grid)} for k in counts]


def error_by_points(
    eng: OneShotMetaLearningEngine,
    source: Any,
    grid: np.ndarray,
    counts: Sequence[int] = (1, 2, 3, 5, 10),
    n_tasks: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean MSE on the whole curve over ``n_tasks`` held-out tasks, before adaptation and after
    adapting from each number of points (random points of each task), with 95% intervals."""
    rng = np.random.default_rng(seed)
    before, after = [], {k: [] for k in counts}
    for task in source.tasks("test", n_tasks, seed=seed):
        pts = _task_points(task, max(counts), rng)
        truth = np.asarray(task.function(grid), dtype=np.float32).reshape(-1, 1)
        for k in counts:
            support = (np.array([[p[0]] for p in pts[:k]], np.float32), np.array([[p[1]] for p in pts[:k]], np.float32))
            res = eng.one_shot_adapt_sync(task, support_data=support, query_data=(grid, truth))
            after[k].append(res["adaptation_quality"]["mse"])
        # zero steps: the meta-model's own curve, the same whatever the points
        prior = eng.one_shot_adapt_sync(task, support_data=support, query_data=(grid, truth), steps=0)
        before.append(prior["adaptation_quality"]["mse"])
    return {
        "counts": list(counts),
        "tasks": n_tasks,
        "mse_before": float(np.mean(before)),
        "mse_before_ci95": ci95_half_width(before),
        "mse_after": [float(np.mean(after[k])) for k in counts],
        "mse_after_ci95": [ci95_half_width(after[k]) for k in counts],
    }
