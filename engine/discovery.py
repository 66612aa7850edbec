"""Discovery by intervention: the five mechanism types of DESIGN section 3.

For every task an episode is drawn, the learner adapts on its support set, and the
per-query-point loss L(T) is recorded. Each intervention is then applied and the loss
measured again; the effect of X on T is L(T | do(X)) - L(T), point by point:

===================== ========================================================================
FEATURE_TRANSFER      do(feature := reference) on the query inputs of the adapted model: a
                      tabular column set to the source's reference value (0 = the train mean
                      of standardised features), or an image patch occluded with the
                      background value. feature -> output uses the model's output; feature ->
                      mechanism k replaces the feature in mechanism k's input only (the head
                      is linear, so mechanism k's contribution can be swapped exactly).
REPRESENTATION        do(c_k := 0): mechanism k switched off during adaptation and prediction.
STRUCTURE_TRANSFER    B adapts from A's adapted structure gates instead of the meta-learned
                      ones; the effect is the *gain* L(B) - L(B | A's gates) (positive = A's
                      structure helps B), see ``engine.mechanisms``.
PRIOR_TRANSFER        do(initialisation := fresh random): adapt from a newly initialised
                      model (transfer efficiency of the meta-learned initialisation).
OPTIMIZATION_TRANSFER do(rates := the plain scalar inner_lr): the learned inner-loop settings
                      (Meta-SGD rates, causal-prior rates) replaced by the plain MAML rate.
===================== ========================================================================

Causes of the output. Plain feature ablation also picks the target's *children*, which
predict it without causing it. Where the tasks are several environments over named
features, a feature -> output record is kept only for features in the invariant set of
``invariant_causal_prediction`` on the pooled task data (the relation of a parent to the
target survives interventions on other variables; a child's breaks when the child is
intervened on). The records' numbers are still the do(feature := reference) effects on the
adapted model. The variables each task intervened on are identified from the data too
(``engine.invariance.learn_interventional_graph``) and reported per task.

The per-mechanism adaptation effect do(rate_k := 0) (mechanism k held still while adapting)
is measured as well; it feeds the causal priors (``engine.priors``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .algorithms.base import AdaptedState, CausalMetaLearner
from .config import CausalMechanismType, OneShotMetaLearningConfig
from .inner_loop import Params
from .invariance import invariant_causal_prediction, learn_interventional_graph
from .mechanisms import (
    CausalMechanism,
    bootstrap_confidence,
    effect_summary,
    strength_from_effect,
)
from .model import CausalMetaModel
from .priors import adapts_by_gradient, measure_effectiveness, one_shot_losses, override_rates, search_prior_rates
from .tasks.base import Episode, Task, TaskError
from .training import should_stop

Progress = Callable[[dict[str, Any]], None]
ALL_TYPES = tuple(CausalMechanismType)
T = CausalMechanismType


class DiscoveryStopped(Exception):
    """Raised internally when the stop signal fires."""


@dataclass
class DiscoveryResult:
    """What a discovery run produced: kept records, the per-task report, the priors."""

    mechanisms: list[CausalMechanism]
    report: dict[str, Any] = field(default_factory=dict)
    priors: dict[str, Any] | None = None


# ------------------------------------------------------------------------------ features
@dataclass
class FeatureUnit:
    """One intervenable input unit: a column, or an image patch (rows r0:r1, cols c0:c1)."""

    name: str
    column: int | None = None
    patch: tuple[int, int, int, int] | None = None

    def apply(self, x: torch.Tensor, value: float) -> torch.Tensor:
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


# ------------------------------------------------------------------------------ measuring
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
        multipliers: Sequence[float] | None = None,
        plain: bool = False,
    ) -> AdaptedState:
        start = self.meta if params is None else params
        with torch.no_grad():
            if multipliers is None and not plain:
                return self.learner.adapt(ep.support_x, ep.support_y, self.steps, params=start, causal_mask=mask)
            with override_rates(self.learner, multipliers, plain):
                return self.learner.adapt(ep.support_x, ep.support_y, self.steps, params=start, causal_mask=mask)

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

    @property
    def has_head(self) -> bool:
        return self.model.head is not None and self.learner.algorithm.name in ("MAML_CAUSAL", "GRADIENT_CAUSAL")

    def contributions(self, state: AdaptedState, x: torch.Tensor) -> torch.Tensor:
        """Per-mechanism output contributions, shape (batch, K, outputs); the output is
        their sum plus the head bias (the head is linear)."""
        p = state.params
        with torch.no_grad():
            mech = functional_call(self._mech, {f"model.{n}": t for n, t in p.items()}, (x,))  # (B, K, m)
            gated = mech * torch.sigmoid(p["gate_logits"])[None, :, None]
            K, m = self.model.num_mechanisms, self.model.mechanism_dim
            w = p["head.weight"].reshape(-1, K, m)  # (outputs, K, m)
            return torch.einsum("bkm,okm->bko", gated, w)


def _random_params(model: CausalMetaModel, seed: int, device: torch.device) -> Params:
    """A freshly initialised model of the same shape (the PRIOR_TRANSFER intervention)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = CausalMetaModel(**model.describe())
    return {n: p.detach().to(device) for n, p in fresh.named_parameters()}


def _as_type(value: Any) -> CausalMechanismType:
    """A mechanism type from the enum, its NAME or its value."""
    if isinstance(value, CausalMechanismType):
        return value
    text = str(value)
    if text.upper() in CausalMechanismType.__members__:
        return CausalMechanismType[text.upper()]
    try:
        return CausalMechanismType(text.lower())
    except ValueError:
        raise ValueError(f"unknown mechanism type {value!r}; valid: {list(CausalMechanismType.__members__)}") from None


def _emit(progress: Progress | None, stage: str, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(
            {
                "stage": stage,
                "done": done,
                "total": total,
                "fraction": done / total if total else 1.0,
                "message": message,
            }
        )


# ------------------------------------------------------------------------------ discovery
def discover_mechanisms(
    learner: CausalMetaLearner,
    tasks: Sequence[Task | Episode],
    config: OneShotMetaLearningConfig,
    *,
    feature_names: Sequence[str] | None = None,
    background_value: float = 0.0,
    target_name: str = "target",
    held_out: Sequence[Task | Episode] | None = None,
    query_points: int | None = None,
    patch_size: int | None = None,
    n_bootstrap: int = 400,
    max_structure_tasks: int = 6,
    types: Sequence[CausalMechanismType] | None = None,
    threshold: float | None = None,
    progress: Progress | None = None,
    stop: Any = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    use_invariance: bool = True,
) -> DiscoveryResult:
    """Run the interventions on ``tasks`` and return the kept mechanism records.

    ``held_out``: tasks on which the causal priors' effectiveness is measured; by default,
    with 8 or more tasks, the last quarter of ``tasks`` is held out from the model-based
    interventions and the prior search (the data analysis still uses all tasks).
    ``query_points``: query size of each task's episode (regression points; classification
    per class); default max(config.query_shots, 100) for regression.
    ``progress(record)`` gets ``stage``, ``done``, ``total``, ``fraction``, ``message``;
    ``stop`` (threading.Event or callable) ends the run early with what was measured.
    ``use_invariance=False`` skips the data analysis, so feature -> output records are plain
    ablation importance (children of the target included).
    """
    t_start = time.perf_counter()
    types = tuple(_as_type(t) for t in types) if types is not None else ALL_TYPES
    threshold = config.mechanism_threshold if threshold is None else float(threshold)
    seed = config.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("discovery needs at least one task")
    if held_out is None and len(tasks) >= 8:
        cut = len(tasks) - len(tasks) // 4
        work, held = tasks[:cut], tasks[cut:]
    else:
        work, held = tasks, list(held_out or [])
    model = learner.model
    steps = learner.default_steps()
    probe = Probe(learner, steps)
    if learner.task_type == "regression":
        q = query_points or max(config.query_shots, 100)
    else:
        q = query_points or config.query_shots

    def episode_of(t: Task | Episode) -> Episode:
        if isinstance(t, Episode):
            return t.to(device)
        try:
            return t.sample_episode(config.support_shots, q, rng).to(device)
        except TaskError:
            # A small task (a few CSV rows) cannot give q query points: use the config's size.
            return t.sample_episode(config.support_shots, min(q, config.query_shots), rng).to(device)

    episodes = [episode_of(t) for t in work]
    held_eps = [episode_of(t) for t in held]
    all_names = [_task_name(t, i) for i, t in enumerate(list(work) + list(held))]
    names = all_names[: len(work)]
    units = feature_units(model.input_shape, feature_names, patch_size)
    K = model.num_mechanisms
    report: dict[str, Any] = {"tasks_used": len(work), "held_out_tasks": len(held), "stopped_early": False}

    # per-task effects, keyed by (type, source, target) -> list over tasks of per-point arrays
    effects: dict[tuple[CausalMechanismType, str, str], list[np.ndarray]] = {}
    hold_effects: list[list[np.ndarray]] = [[] for _ in range(K)]
    base_losses: list[np.ndarray] = []
    states: list[AdaptedState] = []
    gradient = adapts_by_gradient(learner, episodes[0], steps)
    priors_active = config.enable_causal_priors and not bool((learner.mechanism_rates == 1).all())
    random_params = _random_params(model, seed + 1, torch.device(device)) if T.PRIOR_TRANSFER in types else None

    def add(key: tuple[CausalMechanismType, str, str], value: np.ndarray) -> None:
        effects.setdefault(key, []).append(value)

    n_work = len(episodes)
    try:
        for i, ep in enumerate(episodes):
            if should_stop(stop):
                raise DiscoveryStopped
            _emit(progress, "interventions", i, n_work, f"task {i + 1} of {n_work}: {names[i]}")
            state = probe.adapt(ep)
            base = probe.point_losses(state, probe.outputs(state, ep.query_x), ep.query_y)
            states.append(state)
            base_losses.append(base)
            if T.FEATURE_TRANSFER in types:
                _feature_effects(probe, state, ep, units, background_value, base, add)
            if T.REPRESENTATION_TRANSFER in types:
                # do(rate_k := 0) is measured against adaptation without priors (rates 1),
                # whatever priors the learner has now, as the prior search is.
                plain_base = base
                if gradient and priors_active:
                    st = probe.adapt(ep, multipliers=np.ones(K))
                    plain_base = probe.point_losses(st, probe.outputs(st, ep.query_x), ep.query_y)
                for k in range(K):
                    mask = torch.ones(K, device=ep.query_x.device)
                    mask[k] = 0.0
                    st = probe.adapt(ep, mask=mask)
                    loss = probe.point_losses(st, probe.outputs(st, ep.query_x, mask), ep.query_y)
                    add((T.REPRESENTATION_TRANSFER, f"mechanism {k}", "tasks"), loss - base)
                    if gradient:
                        mult = np.ones(K)
                        mult[k] = 0.0
                        st = probe.adapt(ep, multipliers=mult)
                        held_loss = probe.point_losses(st, probe.outputs(st, ep.query_x), ep.query_y)
                        hold_effects[k].append(held_loss - plain_base)
            if T.PRIOR_TRANSFER in types and random_params is not None:
                st = probe.adapt(ep, params=random_params)
                loss = probe.point_losses(st, probe.outputs(st, ep.query_x), ep.query_y)
                add((T.PRIOR_TRANSFER, "meta-learned initialisation", "tasks"), loss - base)
            if T.OPTIMIZATION_TRANSFER in types and gradient:
                st = probe.adapt(ep, plain=True)
                loss = probe.point_losses(st, probe.outputs(st, ep.query_x), ep.query_y)
                add((T.OPTIMIZATION_TRANSFER, "learned inner-loop rates", "tasks"), loss - base)
        _emit(progress, "interventions", n_work, n_work, "per-task interventions done")
        if T.STRUCTURE_TRANSFER in types and "gate_logits" in probe.meta:
            m = min(max_structure_tasks, len(episodes))
            pairs = [(a, b) for a in range(m) for b in range(m) if a != b]
            for j, (a, b) in enumerate(pairs):
                if should_stop(stop):
                    raise DiscoveryStopped
                if j % 5 == 0:
                    _emit(progress, "structure transfer", j, len(pairs), f"{names[a]} -> {names[b]}")
                start = {**probe.meta, "gate_logits": states[a].params["gate_logits"].detach()}
                st = probe.adapt(episodes[b], params=start)
                loss = probe.point_losses(st, probe.outputs(st, episodes[b].query_x), episodes[b].query_y)
                key = (T.STRUCTURE_TRANSFER, names[a], names[b])
                add(key, base_losses[b] - loss)  # gain from starting at A's gates
            _emit(progress, "structure transfer", len(pairs), len(pairs), "structure transfer done")
    except DiscoveryStopped:
        report["stopped_early"] = True
        n_done = len(base_losses)
        effects = {k: v for k, v in effects.items() if k[0] != T.STRUCTURE_TRANSFER and len(v) == n_done}
        if n_done == 0:
            return DiscoveryResult([], {**report, "message": "stopped before any task was measured"}, None)

    scale = max(float(np.mean([b.mean() for b in base_losses])), 1e-8)
    report["strength_scale"] = scale
    report["mean_adapted_loss"] = scale

    # ---- data analysis: causes of the output and intervened variables -----------------
    invariance = None
    if use_invariance and T.FEATURE_TRANSFER in types and len(model.input_shape) == 1 and not report["stopped_early"]:
        _emit(progress, "invariance", 0, 1, "testing which features' relation to the output is invariant")
        invariance = _invariance_analysis(all_names, episodes + held_eps, [u.name for u in units], target_name, learner)
        report["invariance"] = invariance
        _emit(progress, "invariance", 1, 1, "invariance analysis done")

    # ---- records -------------------------------------------------------------------------
    records: list[CausalMechanism] = []
    kinds = {
        T.FEATURE_TRANSFER: ("feature", None),
        T.REPRESENTATION_TRANSFER: ("mechanism", "task"),
        T.STRUCTURE_TRANSFER: ("task", "task"),
        T.PRIOR_TRANSFER: ("prior", "task"),
        T.OPTIMIZATION_TRANSFER: ("optimizer", "task"),
    }
    for j, (key, groups) in enumerate(effects.items()):
        mtype, source, target = key
        if (
            mtype == T.FEATURE_TRANSFER
            and target == "output"
            and invariance is not None
            and invariance.get("applicable")
            and source not in invariance["causal_features"]
        ):
            continue  # predictive but not invariant: not a cause of the output
        mean, spread, se = effect_summary(groups)
        strength = strength_from_effect(mean, scale)
        if strength < threshold:
            continue
        confidence = bootstrap_confidence(groups, n_bootstrap, seed=seed + j)
        source_kind, target_kind = kinds[mtype]
        if target_kind is None:
            target_kind = "output" if target == "output" else "mechanism"
        details: dict[str, Any] = {
            "strength_scale": scale,
            "effect_se": se,
            "tasks": len(groups),
            "points": int(sum(len(g) for g in groups)),
            "bootstrap_resamples": n_bootstrap,
            # per-task mean effects, so online refinement can pool new tasks with these
            "task_effects": [float(g.mean()) for g in groups][:500],
        }
        if mtype == T.FEATURE_TRANSFER and invariance is not None and invariance.get("applicable"):
            details["invariant_cause"] = source in invariance["causal_features"]
            details["invariance_pvalue_without"] = invariance["pvalue_without"].get(source)
        if mtype == T.REPRESENTATION_TRANSFER:
            k = int(source.split()[-1])
            details["mechanism_index"] = k
            if hold_effects[k]:
                hm, hs, _ = effect_summary(hold_effects[k])
                details["hold_effect"] = hm
                details["hold_effect_std"] = hs
                details["hold_confidence"] = bootstrap_confidence(hold_effects[k], n_bootstrap, seed=seed + 7 * k)
        if mtype == T.FEATURE_TRANSFER and target.startswith("mechanism "):
            details["mechanism_index"] = int(target.split()[-1])
        unit = next((u for u in units if u.name == source), None) if mtype == T.FEATURE_TRANSFER else None
        if unit is not None and unit.patch is not None:
            details["patch"] = list(unit.patch)
        records.append(
            CausalMechanism(
                mechanism_type=mtype,
                source=source,
                target=target,
                causal_strength=strength,
                confidence=confidence,
                effectiveness=None,
                reuse_count=0,
                effect=mean,
                effect_std=spread,
                source_kind=source_kind,
                target_kind=target_kind,
                details=details,
            )
        )

    # ---- causal priors: per-mechanism rates, checked on held-out tasks --------------------
    priors = None
    if gradient and not report["stopped_early"] and all(len(h) == n_work for h in hold_effects):
        _emit(progress, "priors", 0, 1, "searching per-mechanism adaptation rates")
        priors = _prior_search(learner, episodes, held_eps, steps, K, hold_effects)
        for r in records:
            if r.mechanism_type == T.REPRESENTATION_TRANSFER:
                k = r.details["mechanism_index"]
                r.details["prior_rate"] = priors["mechanism_rates"][k]
                if priors.get("held_out"):
                    r.effectiveness = priors["held_out"]["per_mechanism_effectiveness"][k]
        _emit(progress, "priors", 1, 1, "priors measured")

    records.sort(key=lambda r: (-r.causal_strength, r.mechanism_type.name, r.source, r.target))
    report["elapsed_s"] = time.perf_counter() - t_start
    report["threshold"] = threshold
    report["kept"] = len(records)
    report["measured"] = len(effects)
    _emit(progress, "done", 1, 1, f"{len(records)} mechanisms kept of {len(effects)} measured")
    return DiscoveryResult(records, report, priors)


def _feature_effects(
    probe: Probe,
    state: AdaptedState,
    ep: Episode,
    units: list[FeatureUnit],
    reference: float,
    base: np.ndarray,
    add: Callable[[tuple[CausalMechanismType, str, str], np.ndarray], None],
) -> None:
    """do(feature := reference) for every unit: on the output, and per mechanism input."""
    x, y = ep.query_x, ep.query_y
    n = x.shape[0]
    chunk = max(1, 4096 // max(n, 1)) if len(probe.model.input_shape) == 3 else len(units)
    head = probe.has_head
    if head:
        contrib = probe.contributions(state, x)  # (n, K, O)
        bias = state.params["head.bias"]
    K = probe.model.num_mechanisms
    for c0 in range(0, len(units), chunk):
        part = units[c0 : c0 + chunk]
        xs = torch.cat([u.apply(x, reference) for u in part])
        if head:
            swapped = probe.contributions(state, xs).reshape(len(part), n, K, -1)
            for i, u in enumerate(part):
                full = swapped[i].sum(1) + bias
                add((T.FEATURE_TRANSFER, u.name, "output"), probe.point_losses(state, full, y) - base)
                for k in range(K):
                    mixed = contrib.sum(1) - contrib[:, k] + swapped[i][:, k] + bias
                    add((T.FEATURE_TRANSFER, u.name, f"mechanism {k}"), probe.point_losses(state, mixed, y) - base)
        else:
            outs = probe.outputs(state, xs).reshape(len(part), n, -1)
            for i, u in enumerate(part):
                add((T.FEATURE_TRANSFER, u.name, "output"), probe.point_losses(state, outs[i], y) - base)


def _pooled(episodes: Sequence[Episode]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, env = [], [], []
    for i, ep in enumerate(episodes):
        x = torch.cat([ep.support_x, ep.query_x]).cpu().numpy().astype(float)
        y = torch.cat([ep.support_y, ep.query_y]).cpu().numpy().astype(float)
        xs.append(x.reshape(len(x), -1))
        ys.append(y.reshape(len(y), -1))
        env.append(np.full(len(x), i))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(env)


def _task_name(t: Task | Episode, i: int) -> str:
    name = t.task_name if isinstance(t, Episode) else getattr(t, "name", "")
    return name or f"task {i}"


def _invariance_analysis(
    names: Sequence[str],
    episodes: Sequence[Episode],
    feature_names: list[str],
    target_name: str,
    learner: CausalMetaLearner,
) -> dict[str, Any]:
    """ICP for the causes of the output; learned graph and intervened variables per task."""
    if len(episodes) < 3 or len(feature_names) < 2:
        return {"applicable": False, "reason": "needs at least 3 tasks and 2 features"}
    x, y, env = _pooled(episodes)
    regression = learner.task_type == "regression" and y.shape[1] == 1
    if not regression:
        # Classification episodes hold K shots per class, so each task's P(y) is rebalanced
        # and P(y | x) moves between tasks even for the true causes: no invariance test.
        return {
            "applicable": False,
            "reason": "invariance tests need a single regression target (class-balanced episodes change P(y | x))",
        }
    yv = y[:, 0]
    if x.shape[1] > 12:
        max_size = 4  # 2^d subsets grow fast; causes of one output are few
    else:
        max_size = None
    icp = invariant_causal_prediction(x, yv, env, max_set_size=max_size)
    causal = [feature_names[j] for j in icp["causal"]]
    columns = list(feature_names) + ([target_name] if regression else [])
    data = np.concatenate([x, y[:, :1]], axis=1) if regression else x
    graph = learn_interventional_graph(data, env)
    method = "invariant causal prediction (additive regressions, rank tests of residual location and spread)"
    if icp["fallback"] and regression:
        # No feature set has an invariant relation to the output (the output's own mechanism
        # shifts between tasks): take its parents in the graph learned from the task shifts.
        causal = [feature_names[j] for j in np.flatnonzero(graph["adjacency"][:, -1])]
        method = "parents of the output in the graph learned from the tasks' shifts (ICP found no invariant set)"
    per_task = []
    for i, found in enumerate(graph["targets"]):
        cols = found.get("columns", [])
        per_task.append(
            {
                "task": names[i] if i < len(names) else f"task {i}",
                "intervened": [columns[v] for v in found["targets"]],
                "mechanism_shift_p": {columns[v]: cols[v]["mechanism_p"] for v in range(len(cols))},
            }
        )
    return {
        "applicable": True,
        "method": method,
        "causal_features": causal,
        "fallback": icp["fallback"],
        "pvalue_without": {feature_names[j]: p for j, p in icp["pvalue_without"].items()},
        "accepted_sets": [[feature_names[j] for j in s] for s in icp["accepted"]][:20],
        "variables": columns,
        "graph_adjacency": graph["adjacency"].tolist(),
        "tasks": per_task,
    }


def _prior_search(
    learner: CausalMetaLearner,
    episodes: list[Episode],
    held_eps: list[Episode],
    steps: int,
    K: int,
    hold_effects: list[list[np.ndarray]],
) -> dict[str, Any]:
    cache: dict[tuple[float, ...], float] = {}

    def evaluate(rates: np.ndarray) -> float:
        key = tuple(np.round(rates, 6))
        if key not in cache:
            cache[key] = float(one_shot_losses(learner, episodes, rates, steps).mean())
        return cache[key]

    rates, log = search_prior_rates(evaluate, K)
    priors: dict[str, Any] = {
        "mechanism_rates": [float(r) for r in rates],
        "method": "greedy hold-out of mechanisms on the source tasks' one-shot loss (engine.priors)",
        "hold_effects": [float(np.mean([h.mean() for h in hs])) for hs in hold_effects],
        "source_loss_without": log[0]["loss"],
        "source_loss_with": evaluate(rates),
        "search_log": log,
        "held_out": None,
        "effectiveness": None,
    }
    if held_eps:
        measured = measure_effectiveness(learner, held_eps, rates, steps)
        priors["held_out"] = measured
        priors["effectiveness"] = measured["effectiveness"]
    return priors


# ------------------------------------------------------------------------------ scoring
def score_against_truth(
    mechanisms: Sequence[dict[str, Any] | CausalMechanism],
    report: dict[str, Any],
    tasks: Sequence[Task],
) -> dict[str, Any]:
    """Precision/recall/F1 of FEATURE_TRANSFER edges into the output against the target's
    true parents, and the share of tasks whose intervened variables were found exactly."""
    recs = [m.to_dict() if isinstance(m, CausalMechanism) else m for m in mechanisms]
    truth = next((t.truth for t in tasks if getattr(t, "truth", None)), None)
    if truth is None:
        raise ValueError("these tasks carry no truth to score against")
    parents = set(truth["parents"])
    pred = {r["source"] for r in recs if r["mechanism_type"] == "FEATURE_TRANSFER" and r["target"] == "output"}
    tp = len(pred & parents)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(parents) if parents else 1.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    out: dict[str, Any] = {
        "true_parents": sorted(parents),
        "predicted_parents": sorted(pred),
        "children": list(truth.get("children", [])),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
    found = {r["task"]: set(r["intervened"]) for r in (report.get("invariance") or {}).get("tasks", [])}
    hits = []
    for t in tasks:
        if t.name in found and t.truth is not None:
            hits.append(found[t.name] == set(t.truth["intervened"]))
    out["intervened_accuracy"] = float(np.mean(hits)) if hits else None
    out["intervened_tasks"] = len(hits)
    return out


def faithfulness_check(
    learner: CausalMetaLearner,
    episodes: Sequence[Episode],
    mechanisms: Sequence[dict[str, Any] | CausalMechanism],
    k: int,
    steps: int,
    background_value: float = 0.0,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    patch_size: int | None = None,
    random_draws: int = 5,
) -> dict[str, float]:
    """Accuracy after occluding the top-k patches by FEATURE_TRANSFER -> output strength vs
    after occluding k random patches (mean over ``random_draws`` draws), on ``episodes``."""
    recs = [m.to_dict() if isinstance(m, CausalMechanism) else m for m in mechanisms]
    shape = tuple(input_shape or learner.model.input_shape)
    units = {u.name: u for u in feature_units(shape, None, patch_size)}
    ranked = sorted(
        (r for r in recs if r["mechanism_type"] == "FEATURE_TRANSFER" and r["target"] == "output"),
        key=lambda r: -r["effect"],
    )
    top = [units[r["source"]] for r in ranked if r["source"] in units][:k]
    if len(top) < k:
        raise ValueError(f"only {len(top)} patch records to rank; run discovery with mechanism_threshold=0")
    rng = np.random.default_rng(seed)
    probe = Probe(learner, steps)
    names = list(units)

    def accuracy(occlude: list[FeatureUnit]) -> float:
        correct, total = 0, 0
        for ep in episodes:
            state = probe.adapt(ep)
            x = ep.query_x
            for u in occlude:
                x = u.apply(x, background_value)
            out = probe.outputs(state, x)
            pred = learner.predict_labels(state, out)
            correct += int((pred == ep.query_y).sum())
            total += len(ep.query_y)
        return correct / max(total, 1)

    clean = accuracy([])
    top_acc = accuracy(top)
    rand = [accuracy([units[n] for n in rng.choice(names, size=k, replace=False)]) for _ in range(random_draws)]
    return {
        "k": k,
        "clean_accuracy": clean,
        "top_k_accuracy": top_acc,
        "random_k_accuracy": float(np.mean(rand)),
        "random_k_accuracy_std": float(np.std(rand)),
        "top_patches": [u.name for u in top],
    }
