"""Interventions on a learner and adaptation variants (docs/DESIGN.md section 3).

* ``create_intervention_mask``: a causal mask c over the K mechanisms; ``c_k = 1 - s`` for
  the chosen mechanisms (s = ``intervention_strength`` in [0, 1]; 1 switches them off),
  1 elsewhere. ``model(x, causal_mask=c)`` computes with gate k replaced by ``g_k * c_k``.
* ``hierarchical_adapt``: adaptation in levels. "feature" moves only the input gates,
  "structure" only the structure gates, "optimization" every weight with the learner's
  rates (causal priors included); each level starts where the previous one stopped, and
  each level's gain is the drop of the query loss it caused.
* ``describe_intervention``: what a causal mask changed, comparing two adaptation results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .algorithms.base import AdaptedState, CausalMetaLearner
from .tasks.base import Episode

LEVELS = ("feature", "structure", "optimization")
LEVEL_PARAMS = {"feature": ["input_gate_logits"], "structure": ["gate_logits"], "optimization": None}


def mechanism_index(item: Any, num_mechanisms: int) -> int:
    """Index of a mechanism named by an int, "mechanism k", "k", or a record dict."""
    if isinstance(item, Mapping):
        details = item.get("details") or {}
        if isinstance(details.get("mechanism_index"), int):
            return mechanism_index(details["mechanism_index"], num_mechanisms)
        for key in ("source", "target"):
            value = item.get(key)
            if isinstance(value, str) and value.startswith("mechanism "):
                return mechanism_index(value, num_mechanisms)
        raise ValueError(f"record {item.get('source')!r} -> {item.get('target')!r} names no mechanism")
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("mechanism "):
            text = text[len("mechanism ") :]
        if not text.isdigit():
            raise ValueError(f"cannot read a mechanism index from {item!r}")
        item = int(text)
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise ValueError(f"a mechanism is an index, 'mechanism k' or a record; got {item!r}")
    if not 0 <= int(item) < num_mechanisms:
        raise ValueError(f"mechanism index {item} is out of range [0, {num_mechanisms - 1}]")
    return int(item)


class InterventionMask(list):
    """A causal mask (a list of K floats) that also says what it did: ``masked`` (the mechanism
    indices), ``features`` ({feature: strength}: do(feature := reference), blended by the
    strength, on the inputs), ``skipped`` (records that name nothing maskable) and ``explanation``."""

    def __init__(
        self,
        values: Sequence[float],
        masked: Sequence[int],
        skipped: Sequence[str],
        features: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(float(v) for v in values)
        self.masked = list(masked)
        self.features = dict(features or {})
        self.skipped = list(skipped)
        parts = [f"mechanisms {self.masked} scaled" if self.masked else "no mechanism masked"]
        if self.features:
            parts.append(f"features {sorted(self.features)} moved to their reference value")
        if self.skipped:
            parts.append(f"skipped (they name no mechanism or feature to mask): {'; '.join(self.skipped)}")
        self.explanation = "; ".join(parts)


def feature_name(item: Any, feature_names: Sequence[str]) -> str | None:
    """The feature a feature -> output record (or insight entry) names, if it is one of ours."""
    if not isinstance(item, Mapping):
        return None
    kind = str(item.get("mechanism_type") or item.get("type") or "").upper()
    source = item.get("source")
    if kind == "FEATURE_TRANSFER" and item.get("target") == "output" and source in feature_names:
        return str(source)
    return None


def set_features(episode: Episode, features: Mapping[str, float], units: Sequence[Any], reference: float) -> Episode:
    """do(feature := reference) blended by strength s on the support and query inputs:
    x <- (1 - s) x + s reference, for each named feature (``engine.causal.probe.FeatureUnit``)."""
    by_name = {u.name: u for u in units}

    def apply(x: torch.Tensor) -> torch.Tensor:
        for name, s in features.items():
            x = (1.0 - s) * x + s * by_name[name].apply(x, reference)
        return x

    return Episode(
        apply(episode.support_x),
        episode.support_y,
        apply(episode.query_x),
        episode.query_y,
        episode.task_type,
        episode.num_classes,
        episode.task_name,
    )


def _as_item(m: Any) -> Any:
    """A record object as its dict; insight entries (``type``, ``source``, ``target``) and
    indices pass as they are."""
    return m.to_dict() if hasattr(m, "to_dict") and hasattr(m, "mechanism_type") else m


def _record_name(item: Mapping[str, Any]) -> str:
    kind = item.get("mechanism_type") or item.get("type") or "record"
    return f"{kind} {item.get('source')!r} -> {item.get('target')!r}"


def create_intervention_mask(
    mechanisms: Any,
    intervention_strength: float | Sequence[float],
    num_mechanisms: int,
    feature_names: Sequence[str] = (),
) -> InterventionMask:
    """Causal mask over ``num_mechanisms``: chosen mechanisms scaled by 1 - strength.

    ``mechanisms``: indices, "mechanism k" names, mechanism records (``CausalMechanism`` or
    dicts, or the entries of ``get_mechanism_insights()["strongest_mechanisms"]``), or a
    mapping {mechanism: strength} (then ``intervention_strength`` is ignored). Strength 1 is
    do(c_k := 0) (switched off), 0 leaves the mechanism as it is. A feature -> output record
    over one of ``feature_names`` goes to the mask's ``features`` (do(feature := reference)
    with that strength, applied by ``adapt_with_intervention``). Records that name neither (a
    PRIOR_TRANSFER "meta-learned initialisation -> tasks") are skipped and listed in the
    mask's ``explanation``; it is an error only when none can be masked."""
    skipped: list[str] = []
    features: dict[str, float] = {}
    if isinstance(mechanisms, Mapping) and not ("source" in mechanisms and "target" in mechanisms):
        pairs = [(mechanism_index(k, num_mechanisms), v) for k, v in mechanisms.items()]
    else:
        items = [mechanisms] if isinstance(mechanisms, (int, str, Mapping)) else list(mechanisms)
        items = [_as_item(m) for m in items]
        if isinstance(intervention_strength, (int, float)):
            strengths = [float(intervention_strength)] * len(items)
        else:
            strengths = [float(s) for s in intervention_strength]
            if len(strengths) != len(items):
                raise ValueError(f"{len(strengths)} strengths for {len(items)} mechanisms")
        pairs = []
        for item, s in zip(items, strengths, strict=True):
            feature = feature_name(item, feature_names)
            if feature is not None:
                features[feature] = _strength(s)
                continue
            try:
                pairs.append((mechanism_index(item, num_mechanisms), s))
            except ValueError:
                if not isinstance(item, Mapping):
                    raise  # a bad index or name is the caller's mistake, not a record to skip
                skipped.append(_record_name(item))
        if skipped and not pairs and not features:
            raise ValueError(f"none of the given records names a mechanism or feature to mask: {'; '.join(skipped)}")
    mask = [1.0] * num_mechanisms
    for k, s in pairs:
        mask[k] = 1.0 - _strength(s)
    return InterventionMask(mask, sorted({k for k, _ in pairs}), skipped, features)


def _strength(s: Any) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or not 0.0 <= s <= 1.0:
        raise ValueError(f"intervention_strength must be in [0, 1], got {s!r}")
    return float(s)


def describe_intervention(
    base: dict[str, Any], result: dict[str, Any], mask: Sequence[float], classification: bool
) -> dict[str, Any]:
    """Add to ``result`` (an adaptation with ``mask``) what changed against ``base`` (the same
    episode without it): ``result["intervention"]`` and the explanation's intervention text."""
    before = np.asarray(base["predictions"], dtype=float)
    after = np.asarray(result["predictions"], dtype=float)
    if classification:
        change = float((before != after).mean())
        change_name = "share_of_predictions_changed"
    else:
        change = float(np.abs(before - after).mean())
        change_name = "mean_absolute_change"
    q0, q1 = base["adaptation_quality"], result["adaptation_quality"]
    off = [k for k, v in enumerate(mask) if v == 0.0]
    result["intervention"] = {
        "mask": list(mask),
        "switched_off": off,
        "scaled": {k: v for k, v in enumerate(mask) if 0.0 < v < 1.0},
        change_name: change,
        "loss_without_intervention": q0["loss"],
        "loss_with_intervention": q1["loss"],
        "effect": q1["loss"] - q0["loss"],
        "predictions_without_intervention": base["predictions"],
    }
    if isinstance(mask, InterventionMask):
        result["explanation"]["mask"] = mask.explanation
        result["intervention"]["skipped"] = list(mask.skipped)
        result["intervention"]["features"] = dict(mask.features)
    result["explanation"]["intervention_text"] = (
        f"With mechanisms {off} switched off" if off else "With the mask applied"
    ) + f", the query loss went {q0['loss']:.4g} -> {q1['loss']:.4g} ({change_name.replace('_', ' ')}: {change:.3g})."
    return result


def query_loss(learner: CausalMetaLearner, state: AdaptedState, episode: Episode) -> tuple[float, float]:
    """(loss, metric) of the query set under ``state``."""
    with torch.no_grad():
        out = learner(state, episode.query_x)
        return float(learner.query_loss(state, out, episode.query_y)), learner.metric(state, out, episode.query_y)


def hierarchical_adapt(
    learner: CausalMetaLearner,
    episode: Episode,
    levels: Sequence[str] = LEVELS,
    steps: int | None = None,
) -> dict[str, Any]:
    """Adapt level by level; returns per-level losses, gains and traces, and the final state.

    A level whose parameters the model lacks (input gates on an image model) or whose
    learner does not take gradient steps is reported as skipped with the reason."""
    levels = list(levels)
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown or not levels:
        raise ValueError(f"adaptation levels must be among {LEVELS}; got {levels!r}")
    steps = learner.default_steps() if steps is None else steps
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    with torch.no_grad():
        state = learner.adapt(episode.support_x, episode.support_y, 0, params=params)
    loss, metric = query_loss(learner, state, episode)
    rows = []
    metric_name = learner.metric_name()
    for level in levels:
        names = LEVEL_PARAMS[level]
        row: dict[str, Any] = {"level": level, "loss_before": loss, f"{metric_name}_before": metric}
        if names is not None and not all(n in params for n in names):
            row.update(skipped=True, reason="the model has no input gates" if level == "feature" else "no gates")
            row.update(loss_after=loss, gain=0.0, **{f"{metric_name}_after": metric}, trace=[])
            rows.append(row)
            continue
        with torch.no_grad():
            state = learner.adapt(
                episode.support_x,
                episode.support_y,
                steps,
                params=params,
                record=True,
                trainable=names,
            )
        params = {n: p.detach() for n, p in state.params.items()}
        new_loss, new_metric = query_loss(learner, state, episode)
        row.update(
            skipped=False,
            trainable="all weights (learned rates)" if names is None else names,
            loss_after=new_loss,
            gain=loss - new_loss,
            trace=list(state.trace),
            **{f"{metric_name}_after": new_metric},
        )
        if not state.trace:
            row["note"] = "this learner took no gradient steps here (closed-form adaptation)"
        rows.append(row)
        loss, metric = new_loss, new_metric
    return {"levels": rows, "final_loss": loss, f"final_{metric_name}": metric, "state": state}
