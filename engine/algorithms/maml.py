"""MAML_CAUSAL: Model-Agnostic Meta-Learning on the CausalMetaModel.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017. Second order by default; ``first_order=True`` gives FOMAML.

>>> import torch
>>> from engine import OneShotMetaLearningConfig, CausalMetaModel, MAMLCausalLearner
>>> learner = MAMLCausalLearner(OneShotMetaLearningConfig(), CausalMetaModel(1, 40, 1, 4))  # regression: 1 output
>>> state = learner.adapt(torch.zeros(5, 1), torch.zeros(5, 1), steps=1)
>>> learner(state, torch.zeros(3, 1)).shape
torch.Size([3, 1])
"""

from __future__ import annotations

import torch

from ..config import MetaLearningAlgorithm
from ..inner_loop import Params, functional_forward
from .base import AdaptedState, CausalMetaLearner, Rates
from .task_api import takes_tasks


class MAMLCausalLearner(CausalMetaLearner):
    algorithm = MetaLearningAlgorithm.MAML_CAUSAL
    has_linear_head = True

    @takes_tasks
    def adapt(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        steps: int | None = None,
        *,
        params: Params | None = None,
        create_graph: bool = False,
        causal_mask: torch.Tensor | None = None,
        record: bool = False,
        trainable: list[str] | None = None,
        rates: Rates | None = None,
    ) -> AdaptedState:
        steps = self.default_steps() if steps is None else steps
        params = self.meta_params() if params is None else params
        result = self.gradient_adapt(
            support_x,
            support_y,
            steps,
            params,
            create_graph,
            causal_mask,
            record,
            trainable,
            rates,
        )
        return AdaptedState(result.params, result.trace)

    @property
    def vmap_tasks(self) -> bool:
        return self.model.encoder_kind == "mlp"

    def forward(
        self,
        state: AdaptedState,
        x: torch.Tensor,
        causal_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return functional_forward(self.model, state.params, x, causal_mask=causal_mask)
