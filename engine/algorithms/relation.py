"""RELATION_CAUSAL: Relation Networks over the mechanism-gated embedding.

Sung, Yang, Zhang, Xiang, Torr & Hospedales, "Learning to Compare: Relation Network for
Few-Shot Learning", CVPR 2018. A learned relation module scores each (query, class) pair
in [0, 1]; trained with mean squared error against the one-hot match, as in the paper.

One change from the paper: the relation module sees the pair as ``[|q - c|, q * c]``
instead of the plain concatenation ``[q, c]``. On vector embeddings (the paper compares
convolutional feature maps) the concatenation collapsed to a constant score in our runs;
the symmetric pair features learn at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MetaLearningAlgorithm, OneShotMetaLearningConfig
from ..model import CausalMetaModel, reset_layers_
from .base import AdaptedState
from .prototypical import EmbeddingLearner


class RelationCausalLearner(EmbeddingLearner):
    algorithm = MetaLearningAlgorithm.RELATION_CAUSAL

    def __init__(
        self,
        config: OneShotMetaLearningConfig | CausalMetaModel,
        model: CausalMetaModel | OneShotMetaLearningConfig,
        task_type: str | None = None,
    ) -> None:
        super().__init__(config, model, task_type)
        d = self.model.embedding_dim
        hidden = max(8, d // 2)
        self.relation = nn.Sequential(nn.Linear(2 * d, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def reset_parameters(self, generator: torch.Generator) -> None:
        reset_layers_(self.relation.modules(), generator)

    def forward(
        self,
        state: AdaptedState,
        x: torch.Tensor,
        causal_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Relation scores in [0, 1], shape (queries, classes)."""
        emb = self.embed(state, x, causal_mask)
        q, c = emb.shape[0], state.prototypes.shape[0]
        qe, ce = emb[:, None].expand(q, c, -1), state.prototypes[None].expand(q, c, -1)
        pairs = torch.cat([(qe - ce).abs(), qe * ce], dim=-1)
        return torch.sigmoid(self.relation(pairs).squeeze(-1))

    def probabilities(self, state: AdaptedState, outputs: torch.Tensor) -> torch.Tensor:
        """Relation scores are not logits: normalise them to sum to one over the classes."""
        return outputs / outputs.sum(-1, keepdim=True).clamp(min=1e-12)

    def output_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, F.one_hot(y, outputs.shape[-1]).to(outputs.dtype))
