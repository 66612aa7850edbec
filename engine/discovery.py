"""Discovery by intervention: the five mechanism types of docs/DESIGN.md section 3.

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

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .algorithms.base import AdaptedState, CausalMetaLearner
from .causal.probe import FeatureUnit, Probe, feature_units
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
from .priors import adapts_by_gradient, measure_effectiveness, one_shot_losses, search_prior_rates
from .tasks.base import Episode, Task, TaskError
from .training import should_stop

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
ALL_TYPES = tuple(CausalMechanismType)
T = CausalMechanismType
EffectKey = tuple[CausalMechanismType, str, str]
# source and target node kinds per type (None: "output" or "mechanism", from the target)
NODE_KINDS = {
    T.FEATURE_TRANSFER: ("feature", None),
    T.REPRESENTATION_TRANSFER: ("mechanism", "task"),
    T.STRUCTURE_TRANSFER: ("task", "task"),
    T.PRIOR_TRANSFER: ("prior", "task"),
    T.OPTIMIZATION_TRANSFER: ("optimizer", "task"),
}


class DiscoveryStopped(Exception):
    """Raised internally when the stop signal fires."""


@dataclass
class DiscoveryResult:
    """What a discovery run produced: kept records, the per-task report, the priors."""

    mechanisms: list[CausalMechanism]
    report: dict[str, Any] = field(default_factory=dict)
    priors: dict[str, Any] | None = None


@dataclass
class _Plan:
    """What a discovery run works on, fixed before the first intervention."""

    learner: CausalMetaLearner
    probe: Probe
    types: tuple[CausalMechanismType, ...]
    episodes: list[Episode]  # the model-based interventions run on these
    held_eps: list[Episode]  # the priors' effectiveness is measured on these
    all_names: list[str]
    units: list[FeatureUnit]
    background_value: float
    seed: int
    gradient: bool  # adaptation takes gradient steps, so interventions on the rates mean something
    priors_active: bool
    random_params: Params | None

    @property
    def names(self) -> list[str]:
        return self.all_names[: len(self.episodes)]

    @property
    def num_mechanisms(self) -> int:
        return self.probe.model.num_mechanisms


@dataclass
class _Effects:
    """Per-task measurements: per key, one array of per-point effects per task."""

    by_key: dict[EffectKey, list[np.ndarray]]
    hold: list[list[np.ndarray]]  # do(rate_k := 0) per mechanism k, for the priors
    base_losses: list[np.ndarray] = field(default_factory=list)
    states: list[AdaptedState] = field(default_factory=list)

    def add(self, key: EffectKey, value: np.ndarray) -> None:
        self.by_key.setdefault(key, []).append(value)


def invariance_fallback_note(report: dict[str, Any] | None) -> str | None:
    """A sentence saying that the invariance test rejected every feature set and what was used
    instead, or None when it did not (or did not run)."""
    inv = (report or {}).get("invariance") or {}
    if not inv.get("fallback"):
        return None
    return (
        "The invariance test rejected every feature set (no set of features predicts the output the same way "
        f"in every task); used instead: {inv.get('method', 'the sets with the highest p-value')}, giving "
        f"{inv.get('causal_features') or 'no features'}."
    )


def _random_params(model: CausalMetaModel, seed: int, device: torch.device) -> Params:
    """A freshly initialised model of the same shape (the PRIOR_TRANSFER intervention)."""
    fresh = CausalMetaModel(**model.describe(), generator=torch.Generator().manual_seed(seed))
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
    if done == 0 or done == total:
        log.info("discovery %s %d/%d %s", stage, done, total, message)
    else:
        log.debug("discovery %s %d/%d %s", stage, done, total, message)
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
    invariance_alpha: float = 0.01,
) -> DiscoveryResult:
    """Run the interventions on ``tasks`` and return the kept mechanism records.

    ``held_out``: tasks on which the causal priors' effectiveness is measured; by default
    (None), with 2 or more tasks, the last quarter of ``tasks`` (at least one) is held out
    from the model-based interventions and the prior search (the data analysis still uses all
    tasks); an empty list measures nothing. Where nothing is measured the report's
    ``effectiveness_note`` says why.
    ``query_points``: query size of each task's episode (regression points; classification
    per class); default max(config.query_shots, 100) for regression.
    ``progress(record)`` gets ``stage``, ``done``, ``total``, ``fraction``, ``message``;
    ``stop`` (threading.Event or callable) ends the run early with what was measured.
    ``use_invariance=False`` skips the data analysis, so feature -> output records are plain
    ablation importance (children of the target included). ``invariance_alpha``: the invariance
    test's level; a feature set is accepted as invariant when its p-value exceeds it.
    """
    if not 0 < invariance_alpha < 1:
        raise ValueError(f"invariance_alpha must be in (0, 1), got {invariance_alpha}")
    t_start = time.perf_counter()
    threshold = config.mechanism_threshold if threshold is None else float(threshold)
    seed = config.seed if seed is None else seed
    plan = _plan_run(
        learner,
        tasks,
        config,
        held_out=held_out,
        query_points=query_points,
        types=types,
        feature_names=feature_names,
        patch_size=patch_size,
        background_value=background_value,
        seed=seed,
        device=device,
    )
    report: dict[str, Any] = {
        "tasks_used": len(plan.episodes),
        "held_out_tasks": len(plan.held_eps),
        "stopped_early": False,
    }
    fx = _Effects({}, [[] for _ in range(plan.num_mechanisms)])
    report["stopped_early"] = _measure_until_stopped(plan, fx, max_structure_tasks, progress, stop)
    if not fx.base_losses:
        return DiscoveryResult([], {**report, "message": "stopped before any task was measured"}, None)
    scale = max(float(np.mean([b.mean() for b in fx.base_losses])), 1e-8)
    report["strength_scale"] = scale
    report["mean_adapted_loss"] = scale
    invariance = None
    if use_invariance and not report["stopped_early"]:
        invariance = _invariance_phase(plan, target_name, progress, invariance_alpha)
        if invariance is not None:
            report["invariance"] = invariance
    records = _build_records(fx, invariance, plan.units, scale, threshold, n_bootstrap, seed)
    priors = None
    if plan.gradient and not report["stopped_early"] and all(len(h) == len(plan.episodes) for h in fx.hold):
        priors = _measure_priors(plan, records, fx.hold, progress)
    records.sort(key=lambda r: (-r.causal_strength, r.mechanism_type.name, r.source, r.target))
    report["effectiveness_note"] = _effectiveness_note(plan, priors, report["stopped_early"])
    report["elapsed_s"] = time.perf_counter() - t_start
    report["threshold"] = threshold
    report["kept"] = len(records)
    report["measured"] = len(fx.by_key)
    _emit(progress, "done", 1, 1, f"{len(records)} mechanisms kept of {len(fx.by_key)} measured")
    return DiscoveryResult(records, report, priors)


def _effectiveness_note(plan: _Plan, priors: dict[str, Any] | None, stopped_early: bool) -> str:
    """What the run measured of effectiveness, or why it measured nothing."""
    if not plan.gradient:
        return "not measured: this learner does not adapt by gradient steps, so there are no rates to use as priors"
    if stopped_early:
        return "not measured: discovery was stopped before the priors were searched"
    if not plan.held_eps:
        return "not measured: no held-out tasks (give held_out, or two or more tasks)"
    if priors is None or not priors.get("held_out"):
        return "not measured: the prior search did not run"
    return f"measured on {len(plan.held_eps)} held-out tasks"


def _plan_run(
    learner: CausalMetaLearner,
    tasks: Sequence[Task | Episode],
    config: OneShotMetaLearningConfig,
    *,
    held_out: Sequence[Task | Episode] | None,
    query_points: int | None,
    types: Sequence[CausalMechanismType] | None,
    feature_names: Sequence[str] | None,
    patch_size: int | None,
    background_value: float,
    seed: int,
    device: torch.device | str,
) -> _Plan:
    """Split the tasks into worked and held-out ones and draw one episode of each."""
    chosen = tuple(_as_type(t) for t in types) if types is not None else ALL_TYPES
    rng = np.random.default_rng(seed)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("discovery needs at least one task")
    if held_out is None and len(tasks) >= 2:
        cut = len(tasks) - max(1, len(tasks) // 4)
        work, held = tasks[:cut], tasks[cut:]
    else:
        work, held = tasks, list(held_out or [])
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
    steps = learner.default_steps()
    model = learner.model
    return _Plan(
        learner=learner,
        probe=Probe(learner, steps),
        types=chosen,
        episodes=episodes,
        held_eps=held_eps,
        all_names=[_task_name(t, i) for i, t in enumerate(list(work) + list(held))],
        units=feature_units(model.input_shape, feature_names, patch_size),
        background_value=background_value,
        seed=seed,
        gradient=adapts_by_gradient(learner, episodes[0], steps),
        priors_active=config.enable_causal_priors and not bool((learner.mechanism_rates == 1).all()),
        random_params=_random_params(model, seed + 1, torch.device(device)) if T.PRIOR_TRANSFER in chosen else None,
    )


# ------------------------------------------------------------------------------ phase 1: effects
def _measure_until_stopped(
    plan: _Plan, fx: _Effects, max_structure_tasks: int, progress: Progress | None, stop: Any
) -> bool:
    """``_measure_effects`` until done or stopped; True when stopped, and then only the
    per-task effects of the tasks measured in full are kept (no structure transfer)."""
    try:
        _measure_effects(plan, fx, max_structure_tasks, progress, stop)
    except DiscoveryStopped:
        n_done = len(fx.base_losses)
        fx.by_key = {k: v for k, v in fx.by_key.items() if k[0] != T.STRUCTURE_TRANSFER and len(v) == n_done}
        return True
    return False


def _measure_effects(plan: _Plan, fx: _Effects, max_structure_tasks: int, progress: Progress | None, stop: Any) -> None:
    """Every intervention on every worked task, into ``fx`` (raises DiscoveryStopped)."""
    n_work = len(plan.episodes)
    for i, ep in enumerate(plan.episodes):
        if should_stop(stop):
            raise DiscoveryStopped
        _emit(progress, "interventions", i, n_work, f"task {i + 1} of {n_work}: {plan.names[i]}")
        _task_effects(plan, ep, fx)
    _emit(progress, "interventions", n_work, n_work, "per-task interventions done")
    if T.STRUCTURE_TRANSFER in plan.types and "gate_logits" in plan.probe.meta:
        _structure_effects(plan, fx, max_structure_tasks, progress, stop)


def _task_effects(plan: _Plan, ep: Episode, fx: _Effects) -> None:
    """The interventions on one task: L(T | do(X)) - L(T), point by point."""
    probe, types = plan.probe, plan.types
    measured = probe.measure(ep)
    base = measured.losses
    fx.states.append(measured.state)
    fx.base_losses.append(base)
    if T.FEATURE_TRANSFER in types:
        _feature_effects(probe, measured.state, ep, plan.units, plan.background_value, base, fx.add)
    if T.REPRESENTATION_TRANSFER in types:
        _representation_effects(plan, ep, base, fx)
    if T.PRIOR_TRANSFER in types and plan.random_params is not None:
        loss = probe.measure(ep, params=plan.random_params).losses
        fx.add((T.PRIOR_TRANSFER, "meta-learned initialisation", "tasks"), loss - base)
    if T.OPTIMIZATION_TRANSFER in types and plan.gradient:
        loss = probe.measure(ep, rates=plan.learner.scaled_rates(plain=True)).losses
        fx.add((T.OPTIMIZATION_TRANSFER, "learned inner-loop rates", "tasks"), loss - base)


def _representation_effects(plan: _Plan, ep: Episode, base: np.ndarray, fx: _Effects) -> None:
    """do(c_k := 0) for every mechanism k; with gradient adaptation also do(rate_k := 0)."""
    probe, learner, K = plan.probe, plan.learner, plan.num_mechanisms
    # do(rate_k := 0) is measured against adaptation without priors (rates 1), whatever
    # priors the learner has now, as the prior search is.
    plain_base = base
    if plan.gradient and plan.priors_active:
        plain_base = probe.measure(ep, rates=learner.scaled_rates(np.ones(K))).losses
    for k in range(K):
        fx.add((T.REPRESENTATION_TRANSFER, f"mechanism {k}", "tasks"), probe.switch_off(ep, k).losses - base)
        if plan.gradient:
            mult = np.ones(K)
            mult[k] = 0.0
            held_loss = probe.measure(ep, rates=learner.scaled_rates(mult)).losses
            fx.hold[k].append(held_loss - plain_base)


def _structure_effects(
    plan: _Plan, fx: _Effects, max_structure_tasks: int, progress: Progress | None, stop: Any
) -> None:
    """B adapts from A's adapted structure gates; the effect is the gain L(B) - L(B | A's gates)."""
    probe, episodes, names = plan.probe, plan.episodes, plan.names
    m = min(max_structure_tasks, len(episodes))
    pairs = [(a, b) for a in range(m) for b in range(m) if a != b]
    for j, (a, b) in enumerate(pairs):
        if should_stop(stop):
            raise DiscoveryStopped
        if j % 5 == 0:
            _emit(progress, "structure transfer", j, len(pairs), f"{names[a]} -> {names[b]}")
        start = {**probe.meta, "gate_logits": fx.states[a].params["gate_logits"].detach()}
        loss = probe.measure(episodes[b], params=start).losses
        fx.add((T.STRUCTURE_TRANSFER, names[a], names[b]), fx.base_losses[b] - loss)
    _emit(progress, "structure transfer", len(pairs), len(pairs), "structure transfer done")


def _feature_effects(
    probe: Probe,
    state: AdaptedState,
    ep: Episode,
    units: list[FeatureUnit],
    reference: float,
    base: np.ndarray,
    add: Callable[[EffectKey, np.ndarray], None],
) -> None:
    """do(feature := reference) for every unit: on the output, and per mechanism input."""
    x, y = ep.query_x, ep.query_y
    n = x.shape[0]
    chunk = max(1, 4096 // max(n, 1)) if len(probe.model.input_shape) == 3 else len(units)
    head = probe.learner.has_linear_head
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


# ------------------------------------------------------------------------------ phase 2: invariance
def _invariance_phase(
    plan: _Plan, target_name: str, progress: Progress | None, alpha: float = 0.01
) -> dict[str, Any] | None:
    """The data analysis (causes of the output, intervened variables) for named features."""
    if T.FEATURE_TRANSFER not in plan.types or len(plan.probe.model.input_shape) != 1:
        return None
    _emit(progress, "invariance", 0, 1, "testing which features' relation to the output is invariant")
    invariance = _invariance_analysis(
        plan.all_names, plan.episodes + plan.held_eps, [u.name for u in plan.units], target_name, plan.learner, alpha
    )
    _emit(progress, "invariance", 1, 1, "invariance analysis done")
    return invariance


# ------------------------------------------------------------------------------ phase 3: records
def _build_records(
    fx: _Effects,
    invariance: dict[str, Any] | None,
    units: list[FeatureUnit],
    scale: float,
    threshold: float,
    n_bootstrap: int,
    seed: int,
) -> list[CausalMechanism]:
    """One record per measured key whose strength reaches ``threshold``; a feature -> output
    record only for invariant causes where the invariance analysis applies."""
    icp = invariance if invariance is not None and invariance.get("applicable") else None
    records: list[CausalMechanism] = []
    for j, (key, groups) in enumerate(fx.by_key.items()):
        mtype, source, target = key
        if (
            mtype == T.FEATURE_TRANSFER
            and target == "output"
            and icp is not None
            and source not in icp["causal_features"]
        ):
            continue  # predictive but not invariant: not a cause of the output
        mean, spread, se = effect_summary(groups)
        strength = strength_from_effect(mean, scale)
        if strength < threshold:
            continue
        details: dict[str, Any] = {
            "strength_scale": scale,
            "effect_se": se,
            "tasks": len(groups),
            "points": int(sum(len(g) for g in groups)),
            "bootstrap_resamples": n_bootstrap,
            # per-task mean effects, so online refinement can pool new tasks with these
            "task_effects": [float(g.mean()) for g in groups][:500],
        }
        details.update(_type_details(key, fx.hold, icp, units, n_bootstrap, seed))
        source_kind, target_kind = NODE_KINDS[mtype]
        records.append(
            CausalMechanism(
                mechanism_type=mtype,
                source=source,
                target=target,
                causal_strength=strength,
                confidence=bootstrap_confidence(groups, n_bootstrap, seed=seed + j),
                reuse_count=0,
                effect=mean,
                effect_std=spread,
                source_kind=source_kind,
                target_kind=target_kind or ("output" if target == "output" else "mechanism"),
                details=details,
            )
        )
    return records


def _type_details(
    key: EffectKey,
    hold: list[list[np.ndarray]],
    icp: dict[str, Any] | None,
    units: list[FeatureUnit],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The details a record of this type carries beyond the shared ones."""
    mtype, source, target = key
    details: dict[str, Any] = {}
    if mtype == T.FEATURE_TRANSFER and icp is not None:
        details["invariant_cause"] = source in icp["causal_features"]
        details["invariance_pvalue_without"] = icp["pvalue_without"].get(source)
    if mtype == T.REPRESENTATION_TRANSFER:
        k = int(source.split()[-1])
        details["mechanism_index"] = k
        if hold[k]:
            hm, hs, _ = effect_summary(hold[k])
            details["hold_effect"] = hm
            details["hold_effect_std"] = hs
            details["hold_confidence"] = bootstrap_confidence(hold[k], n_bootstrap, seed=seed + 7 * k)
    if mtype == T.FEATURE_TRANSFER and target.startswith("mechanism "):
        details["mechanism_index"] = int(target.split()[-1])
    unit = next((u for u in units if u.name == source), None) if mtype == T.FEATURE_TRANSFER else None
    if unit is not None and unit.patch is not None:
        details["patch"] = list(unit.patch)
    return details


# ------------------------------------------------------------------------------ phase 4: priors
def _measure_priors(
    plan: _Plan, records: list[CausalMechanism], hold: list[list[np.ndarray]], progress: Progress | None
) -> dict[str, Any]:
    """Per-mechanism rates searched on the worked tasks, checked on the held-out ones; the
    REPRESENTATION_TRANSFER records get their rate and measured effectiveness."""
    _emit(progress, "priors", 0, 1, "searching per-mechanism adaptation rates")
    priors = _prior_search(plan.learner, plan.episodes, plan.held_eps, plan.probe.steps, plan.num_mechanisms, hold)
    for r in records:
        if r.mechanism_type == T.REPRESENTATION_TRANSFER:
            k = r.details["mechanism_index"]
            r.details["prior_rate"] = priors["mechanism_rates"][k]
            measured = (priors.get("held_out") or {}).get("per_mechanism_effectiveness") or []
            if k < len(measured) and measured[k] is not None:
                r.effectiveness = float(measured[k])
    _emit(progress, "priors", 1, 1, "priors measured")
    return priors


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
    alpha: float = 0.01,
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
    icp = invariant_causal_prediction(x, yv, env, alpha=alpha, max_set_size=max_size)
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
