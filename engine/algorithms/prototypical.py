"""PROTOTYPICAL_CAUSAL: Prototypical Networks over the mechanism-gated embedding.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
Adaptation is closed form: one prototype (mean embedding) per support class; queries are
scored by negative squared Euclidean distance. With two or more shots per class the
structure gates also take ``steps`` gradient steps on a leave-one-out prototype loss over
the support set (with one shot there is nothing to fit without the queries, so none). With
``test_time_shifts`` set, embeddings outside meta-training are averaged over each image and
shifted copies of it (``test_time_views``: four, every shift within the radius, or those and six
rotated or scaled copies; ``image_views``). With ``transductive_steps`` set, predictions outside meta-training
first refine the prototypes by soft k-means over the queries predicted together (Ren et al.,
"Meta-Learning for Semi-Supervised Few-Shot Classification", ICLR 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import MetaLearningAlgorithm
from ..inner_loop import Params, functional_forward
from .base import AdaptedState, CausalMetaLearner, Rates
from .image_views import image_views
from .task_api import takes_tasks


def class_means(emb: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes sorted, mean embedding per class)."""
    classes, inverse = torch.unique(y, sorted=True, return_inverse=True)
    sums = torch.zeros(len(classes), emb.shape[1], dtype=emb.dtype, device=emb.device).index_add(0, inverse, emb)
    counts = torch.bincount(inverse, minlength=len(classes)).to(emb.dtype)
    return classes, sums / counts[:, None]


def refine_prototypes(
    prototypes: torch.Tensor, counts: torch.Tensor, queries: torch.Tensor, steps: int
) -> torch.Tensor:
    """Soft k-means over unlabelled queries: each step, every query joins each class's mean with
    the weight of that class's probability under the current prototypes (the learner's own
    softmax over negative squared distances, so no new scale); the support keeps its counts."""
    refined = prototypes
    for _ in range(steps):
        weights = (-torch.cdist(queries, refined).pow(2)).softmax(1)  # (queries, classes)
        refined = (counts[:, None] * prototypes + weights.T @ queries) / (counts + weights.sum(0))[:, None]
    return refined


def _leave_one_out_logits(emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Each support example against prototypes that exclude itself.
    classes, inverse = torch.unique(y, sorted=True, return_inverse=True)
    onehot = F.one_hot(inverse, len(classes)).to(emb.dtype)
    sums = onehot.T @ emb
    counts = onehot.sum(0)
    loo = (sums[None] - onehot[:, :, None] * emb[:, None]) / (counts[None, :, None] - onehot[:, :, None]).clamp(min=1)
    return -((emb[:, None] - loo) ** 2).sum(-1)


class EmbeddingLearner(CausalMetaLearner):
    """Shared by the prototypical and relation learners: gate steps, then class embeddings."""

    embedding_only = True
    default_task_type = "classification"

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
        trace: list[float] = []
        counts = torch.bincount(support_y)
        if steps > 0 and int(counts[counts > 0].min()) >= 2:

            def loo_loss(p: Params, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
                emb = functional_forward(self.model, p, xs, causal_mask=causal_mask)
                inverse = torch.unique(ys, sorted=True, return_inverse=True)[1]
                return F.cross_entropy(_leave_one_out_logits(emb, ys), inverse)

            result = self.gradient_adapt(
                support_x,
                support_y,
                steps,
                params,
                create_graph,
                causal_mask,
                record,
                trainable or ["gate_logits"],
                rates,
                loss_fn=loo_loss,
            )
            params, trace = result.params, result.trace
        # Shifted views only outside meta-training (no meta-graph): they are a test-time average.
        views = not create_graph and self.config.test_time_shifts > 0 and support_x.dim() == 4
        emb = self._embed(params, support_x, causal_mask, views)
        classes, protos = class_means(emb, support_y)
        counts = counts[classes].to(emb.dtype)
        # test time only, like views
        transductive = 0 if create_graph or not self.supports_transductive else self.config.transductive_steps
        return AdaptedState(
            params,
            trace,
            prototypes=protos,
            classes=classes,
            views=views,
            counts=counts,
            transductive_steps=transductive,
        )

    def embed(self, state: AdaptedState, x: torch.Tensor, causal_mask: torch.Tensor | None) -> torch.Tensor:
        return self._embed(state.params, x, causal_mask, state.views)

    def _embed(self, params: Params, x: torch.Tensor, causal_mask: torch.Tensor | None, views: bool) -> torch.Tensor:
        if not views:
            return functional_forward(self.model, params, x, causal_mask=causal_mask)
        stacked = image_views(x, self.config.test_time_shifts, self.config.test_time_views)
        emb = functional_forward(self.model, params, stacked.flatten(0, 1), causal_mask=causal_mask)
        return emb.view(stacked.shape[0], x.shape[0], -1).mean(0)


class PrototypicalCausalLearner(EmbeddingLearner):
    algorithm = MetaLearningAlgorithm.PROTOTYPICAL_CAUSAL
    supports_transductive = True

    def forward(
        self,
        state: AdaptedState,
        x: torch.Tensor,
        causal_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.embed(state, x, causal_mask)
        prototypes = state.prototypes
        if state.transductive_steps:
            prototypes = refine_prototypes(prototypes, state.counts, emb, state.transductive_steps)
        return -torch.cdist(emb, prototypes).pow(2)
