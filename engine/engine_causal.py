"""Causal methods of the engine (discovery, priors, interventions, mechanism graph).

``OneShotMetaLearningEngine`` inherits this mixin so the causal API lives in one file of its
own. The work is done by ``engine.discovery``, ``engine.priors``, ``engine.interventions``,
``engine.mechanism_graph`` and ``engine.mechanisms``; this file keeps the engine's state:

* ``self._mechanisms``: kept records as dicts (``CausalMechanism.to_dict``);
* ``self._mechanism_effects``: per record key, the per-task arrays of per-point effects
  (for online refinement; memory only, not exported);
* ``self._discovery_report``: the last discovery run's report (invariance, tasks, timings);
* ``self._causal_priors``: the measured per-mechanism rates and their effectiveness.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import CausalMechanismType
from .discovery import FeatureUnit, Probe, discover_mechanisms, feature_units
from .interventions import LEVELS, _mechanism_index, hierarchical_adapt
from .interventions import create_intervention_mask as _mask
from .mechanisms import (
    MechanismFormatError,
    bootstrap_confidence,
    dump_mechanisms,
    effect_summary,
    parse_mechanisms,
    strength_from_effect,
    validate_priors,
)
from .priors import rates_from_records
from .tasks.base import Episode, Task, TaskSource

if TYPE_CHECKING:
    import networkx as nx

MAX_TASK_HISTORY = 500  # per record, tasks kept for online refinement


def _key(record: Mapping[str, Any]) -> str:
    return f"{record['mechanism_type']}|{record['source']}|{record['target']}"


def _twin(name: str, doc: str) -> Callable[..., Any]:
    # Same shape as engine.engine._async_twin (not imported: engine.py imports this module).
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, f"{name}_sync"), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Coroutine twin of ``{name}_sync``: {doc}"
    return method


class CausalEngineMixin:
    """Mechanism discovery and intervention methods of OneShotMetaLearningEngine."""

    # ---- state helpers ------------------------------------------------------------------------
    def _causal_state(self) -> None:
        for name, default in (
            ("_mechanism_effects", {}),
            ("_discovery_report", None),
            ("_causal_priors", None),
            ("_online_tasks", 0),
        ):
            if not hasattr(self, name):
                setattr(self, name, default)

    def _source_of(self, tasks: Sequence[Any]) -> Any:
        for t in tasks:
            src = getattr(t, "source", None)
            if src is not None:
                return src
        return None

    # ---- discovery -----------------------------------------------------------------------------
    def discover_causal_patterns_sync(
        self,
        tasks: Sequence[Task | Episode] | TaskSource,
        progress: Callable[[dict[str, Any]], None] | None = None,
        stop: Any = None,
        held_out: Sequence[Task | Episode] | None = None,
        n_tasks: int = 20,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Find mechanisms of all five types by intervention (``engine.discovery``).

        ``tasks``: a list of tasks (or episodes), or a task source (then ``n_tasks`` of its
        validation tasks). Returns the kept records as dicts and stores them. ``options``
        go to ``discover_mechanisms`` (query_points, patch_size, n_bootstrap, types, ...).
        When priors were measured effective on held-out tasks and ``enable_causal_priors``
        is on, they are applied to the learner at once."""
        learner = self._require()
        self._causal_state()
        if isinstance(tasks, TaskSource):
            source = tasks
            tasks = source.tasks("val", n_tasks, seed=self.config.seed + 11)
        else:
            tasks = list(tasks)
            source = self._source_of(tasks)
        if not tasks:
            raise ValueError("discovery needs at least one task")
        target = getattr(source, "target", None) or (self.source_info or {}).get("target") or "target"
        result = discover_mechanisms(
            learner,
            tasks,
            self.config,
            feature_names=self.feature_names,
            background_value=float(getattr(source, "background_value", 0.0)),
            target_name=str(target),
            held_out=held_out,
            progress=progress,
            stop=stop,
            device=self.device,
            **options,
        )
        self._mechanisms = [r.to_dict() for r in result.mechanisms]
        self._discovery_report = result.report
        self._mechanism_effects = {}
        if result.priors is not None:
            self._causal_priors = result.priors
            eff = result.priors.get("effectiveness")
            if self.config.enable_causal_priors and eff is not None and eff > 0:
                self.apply_causal_priors()
                result.report["priors_applied"] = True
        return self.discovered_mechanisms

    @property
    def discovery_report(self) -> dict[str, Any] | None:
        """The last discovery run's report (per-task findings, invariance tests, timings)."""
        self._causal_state()
        return self._discovery_report

    @property
    def causal_priors(self) -> dict[str, Any] | None:
        """The measured per-mechanism rates and their held-out effectiveness, if any."""
        self._causal_state()
        return self._causal_priors

    # ---- insights and graph --------------------------------------------------------------------
    def get_mechanism_insights(self, top: int = 5) -> dict[str, Any]:
        """Counts, average effectiveness (None when nothing was measured) and the strongest
        mechanisms with type, source, target, strength and confidence."""
        self._causal_state()
        recs = self._mechanisms
        measured = [r["effectiveness"] for r in recs if r.get("effectiveness") is not None]
        by_type: dict[str, int] = {}
        for r in recs:
            by_type[r["mechanism_type"]] = by_type.get(r["mechanism_type"], 0) + 1
        strongest = sorted(recs, key=lambda r: (-r["causal_strength"], -r["confidence"]))[:top]
        report = self._discovery_report or {}
        invariance = report.get("invariance") or {}
        return {
            "total_mechanisms": len(recs),
            "by_type": by_type,
            "average_effectiveness": float(np.mean(measured)) if measured else None,
            "measured_effectiveness": len(measured),
            "average_strength": float(np.mean([r["causal_strength"] for r in recs])) if recs else None,
            "average_confidence": float(np.mean([r["confidence"] for r in recs])) if recs else None,
            "strongest_mechanisms": [
                {
                    "type": r["mechanism_type"],
                    "source": r["source"],
                    "target": r["target"],
                    "strength": r["causal_strength"],
                    "confidence": r["confidence"],
                    "effect": r["effect"],
                    "effectiveness": r.get("effectiveness"),
                }
                for r in strongest
            ],
            "causes_of_output": invariance.get("causal_features"),
            "priors": None
            if not self._causal_priors
            else {
                "mechanism_rates": self._causal_priors.get("mechanism_rates"),
                "effectiveness": self._causal_priors.get("effectiveness"),
            },
            "discovery_seconds": report.get("elapsed_s"),
        }

    def mechanism_graph(self, truth: Mapping[str, Any] | None = None) -> nx.DiGraph:
        """The mechanism graph (``engine.mechanism_graph.build_mechanism_graph``)."""
        from .mechanism_graph import build_mechanism_graph

        self._causal_state()
        k = self.model.num_mechanisms if self.model is not None else None
        return build_mechanism_graph(self._mechanisms, k, truth, self._discovery_report)

    # ---- interventions -------------------------------------------------------------------------
    def create_intervention_mask(
        self, mechanisms: Any, intervention_strength: float | Sequence[float] = 1.0
    ) -> list[float]:
        """Causal mask: chosen mechanisms scaled by 1 - strength (1 = switched off)."""
        if self.model is None:
            raise RuntimeError("the engine is not initialised: call initialize(...) or meta_train(source) first")
        return _mask(mechanisms, intervention_strength, self.model.num_mechanisms)

    def adapt_with_intervention_sync(
        self,
        task: Task | Episode,
        support_data: Any = None,
        intervention_mask: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Adapt with and without the mask on the same episode; report what changed."""
        self._require()
        if intervention_mask is None:
            raise ValueError("give an intervention_mask (see create_intervention_mask)")
        mask = [float(v) for v in intervention_mask]
        if self.model is not None and len(mask) != self.model.num_mechanisms:
            raise ValueError(f"the mask has {len(mask)} values for {self.model.num_mechanisms} mechanisms")
        base = self.one_shot_adapt_sync(task, support_data, seed=seed)
        result = self.one_shot_adapt_sync(task, support_data, causal_mask=mask, seed=seed)
        before = np.asarray(base["predictions"], dtype=float)
        after = np.asarray(result["predictions"], dtype=float)
        if self.task_type == "classification":
            change = float((before != after).mean())
            change_name = "share_of_predictions_changed"
        else:
            change = float(np.abs(before - after).mean())
            change_name = "mean_absolute_change"
        q0, q1 = base["adaptation_quality"], result["adaptation_quality"]
        result["intervention"] = {
            "mask": mask,
            "switched_off": [k for k, v in enumerate(mask) if v == 0.0],
            "scaled": {k: v for k, v in enumerate(mask) if 0.0 < v < 1.0},
            change_name: change,
            "loss_without_intervention": q0["loss"],
            "loss_with_intervention": q1["loss"],
            "effect": q1["loss"] - q0["loss"],
            "predictions_without_intervention": base["predictions"],
        }
        off = result["intervention"]["switched_off"]
        result["explanation"]["intervention_text"] = (
            (f"With mechanisms {off} switched off" if off else "With the mask applied")
            + f", the query loss went {q0['loss']:.4g} -> {q1['loss']:.4g} ({change_name.replace('_', ' ')}: {change:.3g})."
        )
        return result

    def hierarchical_adapt_sync(
        self,
        target_task: Task | Episode,
        adaptation_levels: Sequence[str] = LEVELS,
        support_data: Any = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Adapt input gates, then structure gates, then all weights (learned rates); each
        level's gain is the query-loss drop it caused. Predictions use the final state."""
        learner = self._require()
        episode = self._episode_for(target_task, support_data, None, seed)
        params = {n: p.detach() for n, p in learner.meta_params().items()}
        out = hierarchical_adapt(learner, episode, adaptation_levels)
        state = out.pop("state")
        self._last_state = state
        name = episode.task_name or getattr(target_task, "name", "task")
        trace = [v for row in out["levels"] for v in row.get("trace", [])]
        self._traces[name] = trace
        with torch.no_grad():
            outputs = learner(state, episode.query_x)
        out.update(
            task=name,
            predictions=self._decode(state, outputs).tolist(),
            targets=episode.query_y.cpu().tolist(),
            trace=trace,
            explanation=self._explain(params, state),
            gains={row["level"]: row["gain"] for row in out["levels"]},
        )
        return out

    # ---- online refinement -----------------------------------------------------------------------
    def update_mechanisms(
        self, task: Task | Episode, adaptation_result: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Measure this task's effects for every feature and mechanism record (the same
        interventions as discovery) and count reuse: a record is reused by a task when its
        intervention costs that task at least ``mechanism_threshold`` strength.

        Call ``refine_mechanisms_online()`` to fold the new tasks into the records."""
        learner = self._require()
        self._causal_state()
        if not self._mechanisms:
            raise RuntimeError("no mechanisms yet: run discover_causal_patterns first (or import some)")
        seed = self.config.seed + 1000 + self._online_tasks
        episode = self._episode_for(task, None, None, seed)
        probe = Probe(learner, learner.default_steps())
        state = probe.adapt(episode)
        base = probe.point_losses(state, probe.outputs(state, episode.query_x), episode.query_y)
        scale = self._strength_scale()
        units = {u.name: u for u in self._feature_units()}
        K = learner.model.num_mechanisms
        reused, measured = [], 0
        source = self._source_of([task])
        reference = float(getattr(source, "background_value", 0.0))
        for r in self._mechanisms:
            effect = self._task_effect(probe, state, episode, base, r, units, reference, K)
            if effect is None:
                continue
            measured += 1
            key = _key(r)
            history = self._mechanism_effects.setdefault(key, [])
            history.append(effect)
            del history[:-MAX_TASK_HISTORY]
            if strength_from_effect(float(effect.mean()), scale) >= self.config.mechanism_threshold:
                r["reuse_count"] = int(r.get("reuse_count", 0)) + 1
                reused.append({"type": r["mechanism_type"], "source": r["source"], "target": r["target"]})
        self._online_tasks += 1
        shift = (adaptation_result or {}).get("explanation", {}).get("mechanism_shift")
        return {
            "task": episode.task_name or getattr(task, "name", "task"),
            "measured_records": measured,
            "reused": reused,
            "mechanism_shift": shift,
            "tasks_seen_online": self._online_tasks,
        }

    def _strength_scale(self) -> float:
        for r in self._mechanisms:
            s = (r.get("details") or {}).get("strength_scale")
            if isinstance(s, (int, float)) and s > 0:
                return float(s)
        return 1.0

    def _feature_units(self) -> list[FeatureUnit]:
        assert self.model is not None
        return feature_units(self.model.input_shape, self.feature_names)

    def _task_effect(
        self,
        probe: Probe,
        state: Any,
        episode: Episode,
        base: np.ndarray,
        record: Mapping[str, Any],
        units: Mapping[str, FeatureUnit],
        reference: float,
        K: int,
    ) -> np.ndarray | None:
        """Per-point effect of a record's intervention on one task (None: not measurable)."""
        t = record["mechanism_type"]
        if t == "FEATURE_TRANSFER" and record["target"] == "output" and record["source"] in units:
            x = units[record["source"]].apply(episode.query_x, reference)
            return probe.point_losses(state, probe.outputs(state, x), episode.query_y) - base
        if t == "REPRESENTATION_TRANSFER":
            k = (record.get("details") or {}).get("mechanism_index")
            if not isinstance(k, int) or not 0 <= k < K:
                return None
            mask = torch.ones(K, device=episode.query_x.device)
            mask[k] = 0.0
            st = probe.adapt(episode, mask=mask)
            return probe.point_losses(st, probe.outputs(st, episode.query_x, mask), episode.query_y) - base
        return None

    def refine_mechanisms_online(self) -> list[dict[str, Any]]:
        """Fold the tasks seen by ``update_mechanisms`` into the records: effect, spread,
        strength and confidence are recomputed over the discovery tasks (their per-task
        means, kept in ``details["task_effects"]``) and the new tasks (per point)."""
        self._causal_state()
        scale = self._strength_scale()
        kept = []
        for i, r in enumerate(self._mechanisms):
            new = self._mechanism_effects.get(_key(r), [])
            if not new:
                kept.append(r)
                continue
            details = dict(r.get("details") or {})
            old_means = details.get("task_effects") or []
            # Discovery tasks enter as their per-task means (their points are not kept).
            groups = [np.array([m]) for m in old_means] + list(new)
            if not old_means:
                n_old = int(details.get("tasks", 0))
                groups = [np.array([r["effect"]])] * n_old + list(new)
            mean, spread, se = effect_summary(groups)
            r = dict(r)
            r["effect"], r["effect_std"] = mean, spread
            r["causal_strength"] = strength_from_effect(mean, scale)
            r["confidence"] = bootstrap_confidence(groups, 400, seed=self.config.seed + i)
            details.update(
                effect_se=se,
                tasks=len(groups),
                task_effects=[float(g.mean()) for g in groups][-MAX_TASK_HISTORY:],
                refined_online=True,
            )
            r["details"] = details
            self._mechanism_effects[_key(r)] = []
            if r["causal_strength"] >= self.config.mechanism_threshold:
                kept.append(r)
        self._mechanisms = kept
        return self.discovered_mechanisms

    # ---- exchange ----------------------------------------------------------------------------------
    def export_mechanisms(self, path: str | os.PathLike) -> Path:
        """Write the versioned mechanisms JSON (records + measured priors)."""
        self._causal_state()
        meta = {"algorithm": self.config.algorithm.name, "feature_names": self.feature_names}
        return dump_mechanisms(path, self._mechanisms, self._causal_priors, meta)

    def import_mechanisms(self, mechanisms_or_path: Any) -> int:
        """Replace the mechanisms with validated ones (a path, JSON text, a document or a
        list of records). Nothing changes unless every record is valid. Returns the count."""
        self._causal_state()
        records, priors = parse_mechanisms(mechanisms_or_path)
        if priors is not None and self.model is not None:
            if len(priors["mechanism_rates"]) != self.model.num_mechanisms:
                raise MechanismFormatError(
                    f"the priors hold {len(priors['mechanism_rates'])} rates but the model has "
                    f"{self.model.num_mechanisms} mechanisms"
                )
        self._mechanisms = records
        self._mechanism_effects = {}
        self._causal_priors = priors
        return len(records)

    # ---- priors ------------------------------------------------------------------------------------
    def apply_causal_priors(self) -> list[float]:
        """Set the learner's per-mechanism rates from the discovered priors (or from the
        records' ``prior_rate``); all 1 when there are none. Returns the rates. They act
        only while ``config.enable_causal_priors`` is on."""
        learner = self._require()
        self._causal_state()
        K = learner.model.num_mechanisms
        rates = None
        if self._causal_priors and self._causal_priors.get("mechanism_rates"):
            rates = np.asarray(self._causal_priors["mechanism_rates"], dtype=float)
        if rates is None:
            rates = rates_from_records(self._mechanisms, K)
        if rates is None:
            rates = np.ones(K)
        if len(rates) != K:
            raise ValueError(f"{len(rates)} prior rates for {K} mechanisms")
        learner.set_mechanism_rates(torch.as_tensor(rates, dtype=torch.float32))
        return [float(r) for r in rates]

    def set_transfer_priors(self, relationships: Mapping[Any, float] | Sequence[Mapping[str, Any]]) -> list[float]:
        """Set per-mechanism rates by hand: ``{mechanism: rate}`` (index or "mechanism k";
        missing ones keep 1), or records carrying ``details["prior_rate"]``. Their
        effectiveness is not measured (None) until discovery measures it. Returns the rates."""
        learner = self._require()
        self._causal_state()
        K = learner.model.num_mechanisms
        if isinstance(relationships, Mapping):
            rates = np.ones(K)
            for k, v in relationships.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not 0 <= v <= 100:
                    raise ValueError(f"rate for {k!r} must be a number in [0, 100], got {v!r}")
                rates[_mechanism_index(k, K)] = float(v)
        else:
            found = rates_from_records(list(relationships), K)
            if found is None:
                raise ValueError("no record carries a prior_rate for a mechanism")
            rates = found
        self._causal_priors = validate_priors(
            {"mechanism_rates": [float(r) for r in rates], "method": "set_transfer_priors", "effectiveness": None}
        )
        return self.apply_causal_priors()

    def enhance_mechanisms_with_graph(self, graph: nx.DiGraph) -> dict[str, Any]:
        """Restrict feature -> output records to the parents of the output in a known causal
        graph over the features (nodes named like the features; the output node is
        "output" or the source's target name). Other records are kept as they are."""
        self._causal_state()
        target = None
        names = [(self.source_info or {}).get("target"), "output"]
        for candidate in names:
            if candidate is not None and candidate in graph:
                target = candidate
                break
        if target is None:
            raise ValueError(f"the graph has no output node (looked for {[n for n in names if n]})")
        parents = {str(p) for p in graph.predecessors(target)}
        kept, removed = [], []
        for r in self._mechanisms:
            if r["mechanism_type"] == "FEATURE_TRANSFER" and r["target"] == "output":
                if r["source"] not in parents:
                    removed.append(r["source"])
                    continue
                r = {**r, "details": {**(r.get("details") or {}), "graph_parent": True}}
            kept.append(r)
        self._mechanisms = kept
        return {"output_node": target, "graph_parents": sorted(parents), "removed": removed, "kept": len(kept)}

    # ---- explanation: which features mattered ------------------------------------------------------
    def _feature_explanation(self, state: Any) -> dict[str, Any] | None:
        """Features ranked by their discovered do(feature := reference) effect on the output,
        with the adapted input gates where the model has them (used by ``_explain``)."""
        self._causal_state()
        recs = [
            r
            for r in self._mechanisms
            if r["mechanism_type"] == CausalMechanismType.FEATURE_TRANSFER.name and r["target"] == "output"
        ]
        if not recs:
            return None
        recs = sorted(recs, key=lambda r: -r["causal_strength"])
        gates = None
        if state is not None and "input_gate_logits" in state.params and self.feature_names:
            g = torch.sigmoid(state.params["input_gate_logits"]).detach().cpu()
            gates = dict(zip(self.feature_names, g.mean(0).tolist(), strict=False))
        rows = []
        for r in recs[:10]:
            row = {
                "feature": r["source"],
                "strength": r["causal_strength"],
                "effect": r["effect"],
                "confidence": r["confidence"],
            }
            if gates is not None and r["source"] in gates:
                row["input_gate_after"] = gates[r["source"]]
            rows.append(row)
        words = ", ".join(f"{row['feature']} (strength {row['strength']:.2f})" for row in rows[:3])
        text = f"Features that mattered (do(feature := reference) raises the loss): {words}."
        return {"text": text, "features": rows}

    # ---- coroutines ------------------------------------------------------------------------------------
    discover_causal_patterns = _twin("discover_causal_patterns", "find mechanisms by intervention.")
    adapt_with_intervention = _twin("adapt_with_intervention", "adapt with a causal mask applied.")
    hierarchical_adapt = _twin("hierarchical_adapt", "adapt level by level.")


__all__ = ["CausalEngineMixin"]
