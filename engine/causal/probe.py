"""The measuring instrument of discovery and online refinement: adapt, predict and score per
query point, with the knobs the interventions turn (docs/DESIGN.md section 3).

``Probe.switch_off`` is the one measurement of do(c_k := 0) in the engine: mechanism k is
masked during adaptation and prediction. ``FeatureUnit`` is one intervenable input unit for
do(feature := reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..algorithms.base import AdaptedState, CausalMetaLearner, Rates
from ..inner_loop import Params
from ..model import CausalMetaModel
from ..tasks.base import Episode


@dataclass
class FeatureUnit:
    """One intervenable input unit: a column, or an image patch (rows r0:r1, cols c0:c1)."""

    name: str
    column: int | None = None
    patch: tuple[int, int, int, int] | None = None

    def apply(self, x: torch.Tensor, value: float) -> torch.Tensor:
        """A copy of ``x`` with this unit set to ``value``."""
        x = x.clone()
        if self.column is not None:
            x[:, self.column] = value
        else:
            r0, r1, c0, c1 = self.patch  # type: ignore[misc]
            x[..., r0:r1, c0:c1] = value
        return x


def feature_units(
    input_shape: Sequence[int],
    feature_names: Sequence[str] | None = None,
    patch_size: int | None = None,
) -> list[FeatureUnit]:
    """Columns of a feature vector, or a grid of square patches of an image (default: a
    4 x 4 grid, 7 x 7 pixels on 28 x 28 images; edge patches take the remainder)."""
    shape = tuple(input_shape)
    if len(shape) == 1:
        names = list(feature_names) if feature_names else [f"x{i}" for i in range(shape[0])]
        if len(names) != shape[0]:
            raise ValueError(f"{len(names)} feature names for {shape[0]} features")
        return [FeatureUnit(n, column=i) for i, n in enumerate(names)]
    h, w = shape[-2], shape[-1]
    p = patch_size or max(1, min(h, w) // 4)
    units = []
    for r0 in range(0, h, p):
        for c0 in range(0, w, p):
            r1, c1 = min(h, r0 + p), min(w, c0 + p)
            units.append(FeatureUnit(f"patch r{r0}-{r1 - 1} c{c0}-{c1 - 1}", patch=(r0, r1, c0, c1)))
    return units


@dataclass
class Measured:
    """One adaptation and its query scores: the state, the query outputs, the loss per point."""

    state: AdaptedState
    outputs: torch.Tensor
    losses: np.ndarray


class _MechanismOutputs(nn.Module):
    """``model.mechanism_outputs`` as a forward, so torch.func.functional_call can run it."""

    def __init__(self, model: CausalMetaModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.mechanism_outputs(x)


class Probe:
    """Adapt / predict / per-point loss for one learner, with the interventions' knobs."""

    def __init__(self, learner: CausalMetaLearner, steps: int) -> None:
        self.learner = learner
        self.model: CausalMetaModel = learner.model
        self.steps = steps
        self.meta: Params = {n: p.detach() for n, p in learner.meta_params().items()}
        self._mech = _MechanismOutputs(self.model)
        self._plain_loss = type(learner).output_loss is CausalMetaLearner.output_loss

    def adapt(
        self,
        ep: Episode,
        params: Params | None = None,
        mask: torch.Tensor | None = None,
        rates: Rates | None = None,
    ) -> AdaptedState:
        """Adapt on the support set from ``params`` (default: the meta-learned ones) with a
        causal mask and inner-loop ``rates`` (default: the learner's own)."""
        start = self.meta if params is None else params
        with torch.no_grad():
            return self.learner.adapt(
                ep.support_x, ep.support_y, self.steps, params=start, causal_mask=mask, rates=rates
            )

    def outputs(self, state: AdaptedState, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.learner(state, x, causal_mask=mask)

    def point_losses(self, state: AdaptedState, outputs: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Loss per query point (the learner's own loss, unreduced)."""
        with torch.no_grad():
            if state.classes is not None:
                y = torch.searchsorted(state.classes, y)
            if self.learner.task_type == "regression" and self._plain_loss:
                return (outputs - y).pow(2).reshape(len(y), -1).mean(1).cpu().numpy().astype(float)
            if self._plain_loss:
                return F.cross_entropy(outputs, y, reduction="none").cpu().numpy().astype(float)
            return np.array([float(self.learner.output_loss(outputs[i : i + 1], y[i : i + 1])) for i in range(len(y))])

    def measure(
        self,
        ep: Episode,
        params: Params | None = None,
        mask: torch.Tensor | None = None,
        rates: Rates | None = None,
    ) -> Measured:
        """Adapt (as ``adapt``), predict the query set under the same mask, score each point."""
        state = self.adapt(ep, params, mask, rates)
        outputs = self.outputs(state, ep.query_x, mask)
        return Measured(state, outputs, self.point_losses(state, outputs, ep.query_y))

    def switch_off(self, ep: Episode, k: int) -> Measured:
        """do(c_k := 0): mechanism k masked during adaptation and prediction."""
        mask = torch.ones(self.model.num_mechanisms, device=ep.query_x.device)
        mask[k] = 0.0
        return self.measure(ep, mask=mask)

    def contributions(self, state: AdaptedState, x: torch.Tensor) -> torch.Tensor:
        """Per-mechanism output contributions, shape (batch, K, outputs); the output is
        their sum plus the head bias (the head is linear: ``learner.has_linear_head``)."""
        p = state.params
        with torch.no_grad():
            mech = functional_call(self._mech, {f"model.{n}": t for n, t in p.items()}, (x,))  # (B, K, m)
            gated = mech * torch.sigmoid(p["gate_logits"])[None, :, None]
            K, m = self.model.num_mechanisms, self.model.mechanism_dim
            w = p["head.weight"].reshape(-1, K, m)  # (outputs, K, m)
            return torch.einsum("bkm,okm->bko", gated, w)
