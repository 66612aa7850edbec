"""Occlusion maps: what each patch of an image contributes to a one-shot prediction, measured.

For one image episode and an adapted image model, each square patch of one picture is set to
the background (0, paper) and the episode is scored again: the map holds, per patch, the query
loss with that patch blanked minus the loss without.

This is the intervention discovery makes, turned on the input: discovery's do(c_k := 0) switches
mechanism k off during adaptation and prediction and records the change in query loss
(``Probe.switch_off``); here do(patch := background) switches a part of one picture off and records
the same change, with the same instrument (``Probe.measure``, ``FeatureUnit`` patches). Blanking a
patch of a *support* picture changes what the model adapts to, so its effect is the change of the
mean loss over all queries; blanking a patch of a *query* picture changes that query's own loss.
A positive value means the patch helped (the loss rises without it), a negative one that it misled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .algorithms.base import CausalMetaLearner
from .causal.probe import FeatureUnit, Probe, feature_units
from .tasks.base import Episode


@dataclass
class OcclusionMaps:
    """Per picture, a (rows, cols) grid of query-loss changes, one cell per ``patch`` x ``patch`` square."""

    patch: int
    support: np.ndarray  # (n_support, rows, cols): change of the mean query loss
    query: np.ndarray  # (n_query, rows, cols): change of that query's loss
    base_loss: float  # mean query loss without intervention
    base_query_losses: np.ndarray  # (n_query,)


def _grid(units: list[FeatureUnit]) -> tuple[int, int]:
    rows = len({u.patch[0] for u in units})  # type: ignore[index]
    return rows, len(units) // rows


def _query_losses(
    probe: Probe, ep: Episode, state: object | None = None, query_x: torch.Tensor | None = None
) -> np.ndarray:
    """Each query's loss, computed in float64 from the outputs: a confident model's loss is below float32's
    resolution (exactly 0), where every patch would seem to do nothing."""
    state = probe.adapt(ep) if state is None else state
    outputs = probe.outputs(state, ep.query_x if query_x is None else query_x)
    return np.asarray(probe.point_losses(state, outputs.double(), ep.query_y), dtype=float)


def _support_map(probe: Probe, ep: Episode, i: int, units: list[FeatureUnit], base: float, bg: float) -> np.ndarray:
    effects = []
    for unit in units:
        sx = ep.support_x.clone()
        sx[i : i + 1] = unit.apply(sx[i : i + 1], bg)
        blanked = Episode(sx, ep.support_y, ep.query_x, ep.query_y, ep.task_type, ep.num_classes, ep.task_name)
        effects.append(float(_query_losses(probe, blanked).mean()) - base)
    return np.array(effects)


def _query_maps(probe: Probe, ep: Episode, units: list[FeatureUnit], base: np.ndarray, bg: float) -> np.ndarray:
    """(n_query, units): adapted once; every query blanked at each patch, scored in one batch per patch."""
    state = probe.adapt(ep)
    out = np.empty((len(ep.query_x), len(units)))
    for j, unit in enumerate(units):
        out[:, j] = _query_losses(probe, ep, state, unit.apply(ep.query_x, bg)) - base
    return out


def occlusion_maps(
    learner: CausalMetaLearner,
    episode: Episode,
    patch: int = 4,
    steps: int | None = None,
    background: float = 0.0,
) -> OcclusionMaps:
    """Each ``patch`` x ``patch`` square of each support and query picture set to ``background``
    in turn (stride = patch; edge patches take the remainder): the change in query loss.

    ``episode`` is a classification episode of (1, H, W) pictures; the queries need labels (for
    an unlabelled picture pass the predicted label: the map then measures what supports the
    model's own answer). ``steps``: adaptation steps (default: the learner's own)."""
    if episode.support_x.ndim != 4:
        raise ValueError(
            f"occlusion maps need pictures (n, channels, H, W), got shape {tuple(episode.support_x.shape)}"
        )
    h, w = episode.support_x.shape[-2:]
    if not 1 <= int(patch) <= min(h, w):
        raise ValueError(f"patch must be 1-{min(h, w)} px for {h}x{w} pictures, got {patch}")
    probe = Probe(learner, learner.default_steps() if steps is None else int(steps))
    units = feature_units(tuple(episode.support_x.shape[1:]), patch_size=int(patch))
    shape = _grid(units)
    with torch.no_grad():
        base = _query_losses(probe, episode)
        support = [
            _support_map(probe, episode, i, units, float(base.mean()), background)
            for i in range(len(episode.support_x))
        ]
        query = _query_maps(probe, episode, units, base, background)
    return OcclusionMaps(
        patch=int(patch),
        support=np.stack(support).reshape(-1, *shape),
        query=query.reshape(-1, *shape),
        base_loss=float(base.mean()),
        base_query_losses=base,
    )
