"""Which mechanisms an adaptation moved, in numbers and words (the ``explanation`` of an
adaptation result), with the discovered features that mattered when there are some."""

from __future__ import annotations

from typing import Any

import torch

from ..algorithms.base import AdaptedState
from ..inner_loop import Params
from ..model import CausalMetaModel


def mechanism_shift(model: CausalMetaModel, before: Params, state: AdaptedState) -> torch.Tensor:
    """Per mechanism, the norm of the change of every weight it owns (shape (K,))."""
    K = model.num_mechanisms
    shift = torch.zeros(K)
    for name, (axis, block) in model.mechanism_axes().items():
        delta = (state.params[name] - before[name]).detach().cpu().movedim(axis, 0)
        shift += delta.reshape(K, block, -1).pow(2).sum(dim=(1, 2))
    return shift.sqrt()


def explain_adaptation(
    model: CausalMetaModel,
    before: Params,
    state: AdaptedState,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The mechanism shifts, the gates before and after, the mechanisms ranked by shift and
    a sentence; ``features`` (``MechanismStore.feature_explanation``) adds the features."""
    shift = mechanism_shift(model, before, state)
    gates_before = torch.sigmoid(before["gate_logits"]).cpu()
    gates_after = torch.sigmoid(state.params["gate_logits"]).detach().cpu()
    order = torch.argsort(shift, descending=True).tolist()
    total = float(shift.sum())
    if total <= 0:
        text = "Adaptation did not change any mechanism's weights (closed-form adaptation or zero steps)."
    else:
        top = order[0]
        text = (
            f"Adaptation moved mechanism {top} most ({float(shift[top]) / total:.0%} of the total weight "
            f"change); its gate went {float(gates_before[top]):.2f} -> {float(gates_after[top]):.2f}."
        )
    explanation = {
        "text": text,
        "mechanism_shift": shift.tolist(),
        "gates_before": gates_before.tolist(),
        "gates_after": gates_after.tolist(),
        "ranked_mechanisms": order,
    }
    if features is not None:
        explanation["features"] = features["features"]
        explanation["features_text"] = features["text"]
        explanation["text"] = f"{text} {features['text']}"
    return explanation
