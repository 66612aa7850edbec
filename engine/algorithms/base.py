"""The shared base of the four learners: two verbs, ``adapt`` (process the support set)
then ``forward`` (predict queries), plus the meta-objective every learner is trained on.

The inner loop (``engine.inner_loop``) and the outer loop (``engine.training``) are shared;
a learner file only says how it adapts and how it scores queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MetaLearningAlgorithm, OneShotMetaLearningConfig
from ..inner_loop import InnerLoopResult, Params, functional_forward, inner_loop
from ..model import CausalMetaModel
from ..tasks.base import Episode, Task
from .task_api import AdaptedModel, adapt_to_task, in_thread, learner_args, meta_train_learner

Rates = dict[str, torch.Tensor | float]  # inner-loop rate per model parameter (a scalar or a tensor of its shape)


@dataclass
class AdaptedState:
    """What adaptation to one task produced."""

    params: Params
    trace: list[float] = field(default_factory=list)
    # embedding learners: one row per class present in the support set, and that class's label
    prototypes: torch.Tensor | None = None
    classes: torch.Tensor | None = None
    views: bool = False  # embedding learners: average embeddings over shifted views (test time)
    counts: torch.Tensor | None = None  # embedding learners: support examples per class
    transductive_steps: int = 0  # prototypical: soft k-means steps over the queries (test time)


class CausalMetaLearner(nn.Module):
    """Base class. Subclasses set ``algorithm`` and implement ``adapt`` and ``forward``.

    The class attributes are the facts about an algorithm that callers ask about: code that has
    only a config asks ``learner_class(config.algorithm)`` (``engine.algorithms``)."""

    algorithm: ClassVar[MetaLearningAlgorithm]
    # Compares queries with class embeddings: the model has no output head, classification only.
    embedding_only: ClassVar[bool] = False
    # The output is a linear head over the gated mechanism outputs (per-mechanism contributions exist).
    has_linear_head: ClassVar[bool] = False
    # Refines class prototypes with the unlabelled queries when ``transductive_steps`` > 0.
    supports_transductive: ClassVar[bool] = False
    default_task_type: ClassVar[str] = "regression"

    def __init__(
        self,
        config: OneShotMetaLearningConfig | CausalMetaModel,
        model: CausalMetaModel | OneShotMetaLearningConfig,
        task_type: str | None = None,
    ) -> None:
        """``(config, model)`` as in the original description, or ``(model, config, task_type)``;
        ``task_type`` is inferred where not given (``task_api.learner_args``)."""
        super().__init__()
        config, model, task_type = learner_args(type(self), config, model, task_type)
        if task_type not in ("classification", "regression"):
            raise ValueError(f"task_type must be 'classification' or 'regression', got {task_type!r}")
        if task_type == "regression" and self.embedding_only:
            raise ValueError(
                f"{self.algorithm.name} is a classification method: it compares queries with class "
                "prototypes, so it cannot do regression. Use MAML_CAUSAL or GRADIENT_CAUSAL."
            )
        self.model = model
        self.config = config
        self.task_type = task_type
        # Causal priors: per-mechanism multipliers of the inner-loop rates (1 = unchanged).
        self.register_buffer("mechanism_rates", torch.ones(model.num_mechanisms))
        # Task-level meta_train (task_api): its outer optimiser and history, kept between calls.
        self.outer_optimizer: torch.optim.Optimizer | None = None
        self.history: Any = None

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Redraw the learner's own random weights from ``generator`` (most learners have none)."""

    # ---- the original description's task-level verbs (task_api) -------------------------------
    def meta_train_sync(
        self, source_tasks: Any, callback: Callable[[dict[str, Any]], None] | None = None, stop: Any = None
    ) -> dict[str, Any]:
        """Meta-train on a task source or a list of tasks; returns the training history."""
        return meta_train_learner(self, source_tasks, callback, stop)

    async def meta_train(
        self, source_tasks: Any, callback: Callable[[dict[str, Any]], None] | None = None, stop: Any = None
    ) -> dict[str, Any]:
        """Coroutine twin of ``meta_train_sync`` (runs off the event loop)."""
        return await in_thread(self.meta_train_sync, source_tasks, callback, stop)

    def adapt_task_sync(
        self, target_task: Task | Episode, support_data: Any = None, steps: int | None = None, seed: int | None = None
    ) -> AdaptedModel:
        """Adapt to a task from ``support_data`` (``(x, y)``, an Episode, or None: one episode is
        drawn); the result predicts (``adapted_model(x)``) and holds the query-set quality."""
        return adapt_to_task(self, target_task, support_data, steps, seed)

    async def adapt_task(
        self, target_task: Task | Episode, support_data: Any = None, steps: int | None = None, seed: int | None = None
    ) -> AdaptedModel:
        """Coroutine twin of ``adapt_task_sync``; ``await learner.adapt(target_task, support_data)``
        comes here."""
        return await in_thread(self.adapt_task_sync, target_task, support_data, steps, seed)

    # ---- the two verbs --------------------------------------------------------------------
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
        """Process the support set. ``rates``: inner-loop rates per parameter (an intervention on
        the optimiser, see ``scaled_rates``); None means the learner's own ``inner_rates()``."""
        raise NotImplementedError

    def forward(
        self,
        state: AdaptedState,
        x: torch.Tensor,
        causal_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (classification) or values (regression) for ``x`` under ``state``."""
        raise NotImplementedError

    # ---- shared pieces --------------------------------------------------------------------
    def meta_params(self) -> Params:
        return dict(self.model.named_parameters())

    def base_rates(self) -> Rates:
        """Inner-loop rate per model parameter before causal priors (Meta-SGD overrides)."""
        return {n: self.config.inner_lr for n, _ in self.model.named_parameters()}

    def inner_rates(self) -> Rates:
        """Per-parameter inner rates with the causal priors applied to each mechanism's block."""
        if not self.config.enable_causal_priors or bool((self.mechanism_rates == 1).all()):
            return self.base_rates()
        return self.scaled_rates(self.mechanism_rates)

    def scaled_rates(self, multipliers: Sequence[float] | torch.Tensor | None = None, plain: bool = False) -> Rates:
        """Per-parameter rates: the base rates (or the plain scalar ``inner_lr`` when ``plain``)
        with mechanism k's block (its gate, input gates, weights and head columns) multiplied by
        ``multipliers[k]``; shared parameters such as the head bias keep their rate. Whatever
        ``enable_causal_priors`` says: this is how interventions on the optimiser are made."""
        if plain:
            rates: Rates = {n: self.config.inner_lr for n, _ in self.model.named_parameters()}
        else:
            rates = dict(self.base_rates())
        if multipliers is None:
            return rates
        mult = torch.as_tensor(multipliers, dtype=torch.float32, device=self.mechanism_rates.device)
        if mult.shape != (self.model.num_mechanisms,):
            raise ValueError(f"need {self.model.num_mechanisms} mechanism multipliers, got shape {tuple(mult.shape)}")
        params = self.meta_params()
        for name, (axis, block) in self.model.mechanism_axes().items():
            per_unit = mult.repeat_interleave(block)
            shape = [1] * params[name].dim()
            shape[axis] = per_unit.numel()
            rates[name] = rates[name] * per_unit.view(shape)
        return rates

    def set_mechanism_rates(self, rates: torch.Tensor) -> None:
        """Causal-prior hook: multiply mechanism k's inner-loop rate by ``rates[k]``."""
        rates = torch.as_tensor(rates, dtype=self.mechanism_rates.dtype)
        if rates.shape != self.mechanism_rates.shape or not torch.isfinite(rates).all() or (rates < 0).any():
            raise ValueError(f"mechanism rates must be {self.model.num_mechanisms} finite values >= 0")
        self.mechanism_rates.copy_(rates.to(self.mechanism_rates.device))

    def output_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task_type == "regression":
            return F.mse_loss(outputs, y)
        return F.cross_entropy(outputs, y)

    def gradient_adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        steps: int,
        params: Params,
        create_graph: bool,
        causal_mask: torch.Tensor | None,
        record: bool,
        trainable: list[str] | None,
        rates: Rates | None = None,
        loss_fn=None,
    ) -> InnerLoopResult:
        """Gradient steps through the shared inner loop with this learner's rates."""
        if loss_fn is None:

            def loss_fn(p: Params, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
                return self.output_loss(functional_forward(self.model, p, xs, causal_mask=causal_mask), ys)

        return inner_loop(
            loss_fn,
            params,
            x,
            y,
            steps,
            self.inner_rates() if rates is None else rates,
            trainable=trainable,
            first_order=self.config.first_order or not create_graph,
            record=record,
        )

    def metric_name(self) -> str:
        return "mse" if self.task_type == "regression" else "accuracy"

    def metric(self, state: AdaptedState, outputs: torch.Tensor, y: torch.Tensor) -> float:
        if self.task_type == "regression":
            return float(F.mse_loss(outputs, y))
        return float((self.predict_labels(state, outputs) == y).float().mean())

    def probabilities(self, state: AdaptedState, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the outputs (columns follow ``state.classes`` when set)."""
        return torch.softmax(outputs, -1)

    def predict_labels(self, state: AdaptedState, outputs: torch.Tensor) -> torch.Tensor:
        idx = outputs.argmax(-1)
        return idx if state.classes is None else state.classes[idx]

    def causal_penalty(self, before: Params, after: Params) -> torch.Tensor:
        """Sparse mechanism shift + sparse input gates (docs/DESIGN.md section 3).

        shift: mean over mechanisms k of ||theta_k(adapted) - theta_k(meta)||_2, a group lasso
        over the per-mechanism blocks, so the meta-learner prefers tasks to differ in few
        mechanisms. gates: mean input-gate openness (tabular models only).
        """
        K = self.model.num_mechanisms
        sq = torch.zeros(K, device=self.mechanism_rates.device)
        for name, (axis, block) in self.model.mechanism_axes().items():
            if name not in after or after[name] is before[name]:
                continue
            delta = (after[name] - before[name]).movedim(axis, 0)
            sq = sq + delta.reshape(K, block, -1).pow(2).sum(dim=(1, 2))
        penalty = torch.sqrt(sq + 1e-12).mean()
        if self.model.has_input_gates:
            penalty = penalty + torch.sigmoid(before["input_gate_logits"]).mean()
        return penalty

    def task_objective(
        self, params: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor
    ) -> tuple[torch.Tensor, AdaptedState, torch.Tensor]:
        """Meta-training loss of one task (graph kept for the meta-gradient): the query loss
        after adapting from ``params``, plus ``causal_weight`` times the causal penalty (the
        one place the weight is applied). Returns the loss, the adapted state and the outputs."""
        state = self.adapt(sx, sy, self.config.num_inner_steps, params=params, create_graph=True)
        outputs = self.forward(state, qx)
        loss = self.query_loss(state, outputs, qy)
        if self.config.causal_weight > 0:
            loss = loss + self.config.causal_weight * self.causal_penalty(params, state.params)
        return loss, state, outputs

    def episode_objective(self, episode: Episode) -> tuple[torch.Tensor, float]:
        """Meta-training loss of one episode and its metric."""
        ep = episode
        loss, state, outputs = self.task_objective(
            self.meta_params(), ep.support_x, ep.support_y, ep.query_x, ep.query_y
        )
        return loss, self.metric(state, outputs.detach(), ep.query_y)

    def batched_objective(self, episodes: list[Episode]) -> tuple[torch.Tensor, list[float]] | None:
        """The mean meta-training loss of a meta-batch with ``torch.func.vmap`` over tasks, and
        each task's metric; None where vmap does not apply (then the caller loops over tasks).

        Used for gradient learners on MLP encoders (many times faster there); convolutions
        under vmap become grouped ones and run slower (docs/DESIGN.md section 10), so Conv-4 loops.
        """
        if not self.vmap_tasks or len({(e.support_x.shape, e.query_x.shape) for e in episodes}) != 1:
            return None
        stack = [
            torch.stack([getattr(e, f) for e in episodes]) for f in ("support_x", "support_y", "query_x", "query_y")
        ]
        params = self.meta_params()

        def one_task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor):
            loss, _, outputs = self.task_objective(params, sx, sy, qx, qy)
            return loss, outputs

        losses, outputs = torch.func.vmap(one_task)(*stack)
        metrics = [self.metric(AdaptedState({}), o.detach(), y) for o, y in zip(outputs, stack[3])]
        return losses.mean(), metrics

    @property
    def vmap_tasks(self) -> bool:
        return False

    def query_loss(self, state: AdaptedState, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if state.classes is not None:  # outputs index the support's classes, not global labels
            y = torch.searchsorted(state.classes, y)
        return self.output_loss(outputs, y)

    def default_steps(self) -> int:
        """Adaptation steps when a caller names none: ``config.adaptation_steps``."""
        return self.config.adaptation_steps

    @torch.no_grad()
    def episode_outputs(self, episode: Episode, steps: int | None = None) -> tuple[AdaptedState, torch.Tensor]:
        """Adapt on the support set (no meta-graph) and predict the query set."""
        steps = self.default_steps() if steps is None else steps
        params = {n: p.detach() for n, p in self.meta_params().items()}
        state = self.adapt(episode.support_x, episode.support_y, steps, params=params)
        return state, self.forward(state, episode.query_x)

    @torch.no_grad()
    def evaluate_episode(self, episode: Episode, steps: int | None = None) -> dict[str, float]:
        """Adapt on the support set (no meta-graph) and score the query set."""
        state, outputs = self.episode_outputs(episode, steps)
        return {
            "loss": float(self.query_loss(state, outputs, episode.query_y)),
            self.metric_name(): self.metric(state, outputs, episode.query_y),
        }
