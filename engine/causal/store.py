"""The engine's causal state: discovered mechanism records, their per-task effects for online
refinement, the last discovery report and the causal priors (docs/DESIGN.md section 3).

``MechanismStore`` owns this state and the operations on it (import/export, insights,
online refinement, graph-based pruning, feature explanation). It never touches the engine:
whatever it needs (a probe, an episode, feature names, thresholds) comes in as arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..algorithms.base import AdaptedState
from ..config import CausalMechanismType
from ..interventions import mechanism_index
from ..mechanisms import (
    NOT_MEASURED,
    CausalMechanism,
    MechanismFormatError,
    bootstrap_confidence,
    dump_mechanisms,
    effect_summary,
    parse_mechanisms,
    strength_from_effect,
    validate_priors,
)
from ..priors import rates_from_records
from ..tasks.base import Episode
from .probe import FeatureUnit, Measured, Probe

if TYPE_CHECKING:
    import networkx as nx

MAX_TASK_HISTORY = 500  # per record, tasks kept for online refinement
FEATURE = CausalMechanismType.FEATURE_TRANSFER
REPRESENTATION = CausalMechanismType.REPRESENTATION_TRANSFER

Key = tuple[str, str, str]


class MechanismStore:
    """Mechanism records (``CausalMechanism``), the per-task effects measured online for each
    (memory only, not exported), the last discovery report and the priors."""

    def __init__(
        self,
        records: Iterable[CausalMechanism | Mapping[str, Any]] = (),
        priors: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        self.records: list[CausalMechanism] = [_as_record(r) for r in records]
        self.priors = priors
        self.report = report
        self.task_effects: dict[Key, list[np.ndarray]] = {}
        self.online_tasks = 0

    def __len__(self) -> int:
        return len(self.records)

    def as_dicts(self) -> list[dict[str, Any]]:
        """The records as JSON-able dicts (``CausalMechanism.to_dict``)."""
        return [r.to_dict() for r in self.records]

    def copies(self) -> list[CausalMechanism]:
        """Copies of the records, so a caller's edits never reach the store."""
        return [copy.deepcopy(r) for r in self.records]

    def replace(self, records: Iterable[CausalMechanism | Mapping[str, Any]], priors: dict[str, Any] | None) -> None:
        """New records and priors (a discovery run or an import); per-task effects restart."""
        self.records = [_as_record(r) for r in records]
        self.priors = priors
        self.task_effects = {}

    def take_discovery(
        self, records: Iterable[CausalMechanism], report: dict[str, Any], priors: dict[str, Any] | None
    ) -> None:
        """A discovery run's records and report, and its priors when it measured some (a run
        that measured none leaves the current priors in place)."""
        self.replace(records, self.priors if priors is None else priors)
        self.report = report

    # ---- exchange ------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
        """Write the versioned mechanisms JSON (records + measured priors)."""
        return dump_mechanisms(path, self.records, self.priors, meta)

    def import_records(self, source: Any, num_mechanisms: int | None) -> int:
        """Replace the records with validated ones; nothing changes unless all are valid."""
        records, priors = parse_mechanisms(source)
        if priors is not None and num_mechanisms is not None and len(priors["mechanism_rates"]) != num_mechanisms:
            raise MechanismFormatError(
                f"the priors hold {len(priors['mechanism_rates'])} rates but the model has {num_mechanisms} mechanisms"
            )
        self.replace(records, priors)
        return len(records)

    # ---- priors --------------------------------------------------------------------------------
    def prior_rates(self, num_mechanisms: int) -> np.ndarray:
        """Per-mechanism rates: the measured priors, else the records' ``prior_rate``, else 1."""
        rates = None
        if self.priors and self.priors.get("mechanism_rates"):
            rates = np.asarray(self.priors["mechanism_rates"], dtype=float)
        if rates is None:
            rates = rates_from_records(self.as_dicts(), num_mechanisms)
        if rates is None:
            rates = np.ones(num_mechanisms)
        if len(rates) != num_mechanisms:
            raise ValueError(f"{len(rates)} prior rates for {num_mechanisms} mechanisms")
        return rates

    def set_manual_priors(
        self, relationships: Mapping[Any, float] | Sequence[Mapping[str, Any]], num_mechanisms: int
    ) -> None:
        """Priors set by hand: ``{mechanism: rate}`` (missing ones keep 1), or records carrying
        ``details["prior_rate"]``; their effectiveness is unmeasured (null in the priors block)."""
        if isinstance(relationships, Mapping):
            rates = np.ones(num_mechanisms)
            for k, v in relationships.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not 0 <= v <= 100:
                    raise ValueError(f"rate for {k!r} must be a number in [0, 100], got {v!r}")
                rates[mechanism_index(k, num_mechanisms)] = float(v)
        else:
            found = rates_from_records(list(relationships), num_mechanisms)
            if found is None:
                raise ValueError("no record carries a prior_rate for a mechanism")
            rates = found
        self.priors = validate_priors(
            {"mechanism_rates": [float(r) for r in rates], "method": "set_transfer_priors", "effectiveness": None}
        )

    # ---- insights ------------------------------------------------------------------------------
    def insights(self, top: int = 5) -> dict[str, Any]:
        """Counts, average effectiveness and the strongest mechanisms with type, source, target,
        strength and confidence. Numeric fields are floats: NaN where nothing was measured,
        with the reason in ``effectiveness_note``."""
        recs = self.records
        by_type: dict[str, int] = {}
        for r in recs:
            by_type[r.mechanism_type.name] = by_type.get(r.mechanism_type.name, 0) + 1
        strongest = sorted(recs, key=lambda r: (-r.causal_strength, -r.confidence))[:top]
        report = self.report or {}
        average, measured, note = self._average_effectiveness()
        priors_eff = (self.priors or {}).get("effectiveness")
        return {
            "total_mechanisms": len(recs),
            "by_type": by_type,
            "average_effectiveness": average,
            "measured_effectiveness": measured,
            "effectiveness_note": note,
            "average_strength": float(np.mean([r.causal_strength for r in recs])) if recs else NOT_MEASURED,
            "average_confidence": float(np.mean([r.confidence for r in recs])) if recs else NOT_MEASURED,
            "strongest_mechanisms": [_summary(r) for r in strongest],
            "causes_of_output": (report.get("invariance") or {}).get("causal_features"),
            "priors": None
            if not self.priors
            else {
                "mechanism_rates": self.priors.get("mechanism_rates"),
                "effectiveness": NOT_MEASURED if priors_eff is None else float(priors_eff),
            },
            "discovery_seconds": report.get("elapsed_s"),
        }

    def _average_effectiveness(self) -> tuple[float, int, str]:
        """(average, how many records were measured, what it is or why it is NaN): the mean over
        the records measured on held-out tasks, else the held-out gain of the priors as a whole."""
        measured = [r.effectiveness for r in self.records if r.effectiveness_measured]
        if measured:
            return float(np.mean(measured)), len(measured), "mean over the records measured on held-out tasks"
        priors_eff = (self.priors or {}).get("effectiveness")
        if isinstance(priors_eff, (int, float)) and np.isfinite(priors_eff):
            held = ((self.priors or {}).get("held_out") or {}).get("held_out_tasks")
            note = "held-out gain of the discovered priors as a whole (no single record's prior changed adaptation)"
            return float(priors_eff), 0, note + (f", on {held} held-out tasks" if held else "")
        if (self.priors or {}).get("method") == "set_transfer_priors":
            return NOT_MEASURED, 0, "not measured: the priors were set by hand (set_transfer_priors)"
        reason = (self.report or {}).get("effectiveness_note") or (
            "not measured: no discovery with held-out tasks has run (imported or hand-set records)"
        )
        return NOT_MEASURED, 0, reason

    def feature_explanation(
        self, state: AdaptedState | None, feature_names: Sequence[str] | None
    ) -> dict[str, Any] | None:
        """Features ranked by their discovered do(feature := reference) effect on the output,
        with the adapted input gates where the model has them; None without such records."""
        recs = sorted(_output_records(self.records), key=lambda r: -r.causal_strength)
        if not recs:
            return None
        gates = None
        if state is not None and "input_gate_logits" in state.params and feature_names:
            g = torch.sigmoid(state.params["input_gate_logits"]).detach().cpu()
            gates = dict(zip(feature_names, g.mean(0).tolist(), strict=False))
        rows = []
        for r in recs[:10]:
            row = {"feature": r.source, "strength": r.causal_strength, "effect": r.effect, "confidence": r.confidence}
            if gates is not None and r.source in gates:
                row["input_gate_after"] = gates[r.source]
            rows.append(row)
        words = ", ".join(f"{row['feature']} (strength {row['strength']:.2f})" for row in rows[:3])
        text = f"Features that mattered (do(feature := reference) raises the loss): {words}."
        return {"text": text, "features": rows}

    # ---- a known causal graph ------------------------------------------------------------------
    def enhance_with_graph(self, graph: nx.DiGraph, target_names: Sequence[str | None]) -> dict[str, Any]:
        """Keep feature -> output records only for parents of the graph's output node (the
        first of ``target_names`` in the graph); other records are kept as they are."""
        target = next((t for t in target_names if t is not None and t in graph), None)
        if target is None:
            raise ValueError(f"the graph has no output node (looked for {[n for n in target_names if n]})")
        parents = {str(p) for p in graph.predecessors(target)}
        kept, removed = [], []
        for r in self.records:
            if _is_output_record(r):
                if r.source not in parents:
                    removed.append(r.source)
                    continue
                r = dataclasses.replace(r, details={**r.details, "graph_parent": True})
            kept.append(r)
        self.records = kept
        return {"output_node": target, "graph_parents": sorted(parents), "removed": removed, "kept": len(kept)}

    # ---- online refinement ---------------------------------------------------------------------
    def strength_scale(self) -> float:
        """The discovery run's strength scale (the first record that carries one), else 1."""
        for r in self.records:
            s = r.details.get("strength_scale")
            if isinstance(s, (int, float)) and s > 0:
                return float(s)
        return 1.0

    def record_task(
        self,
        probe: Probe,
        episode: Episode,
        units: Sequence[FeatureUnit],
        reference: float,
        threshold: float,
    ) -> dict[str, Any]:
        """Measure one new task's effect for every measurable record (the interventions of
        discovery) and count reuse: a record is reused when its intervention costs this task
        at least ``threshold`` strength. ``refine`` folds the effects into the records."""
        base = probe.measure(episode)
        scale = self.strength_scale()
        by_name = {u.name: u for u in units}
        reused, measured = [], 0
        for r in self.records:
            effect = _task_effect(probe, episode, base, r, by_name, reference)
            if effect is None:
                continue
            measured += 1
            history = self.task_effects.setdefault(r.key, [])
            history.append(effect)
            del history[:-MAX_TASK_HISTORY]
            if strength_from_effect(float(effect.mean()), scale) >= threshold:
                r.reuse_count += 1
                reused.append({"type": r.mechanism_type.name, "source": r.source, "target": r.target})
        self.online_tasks += 1
        return {"measured_records": measured, "reused": reused, "tasks_seen_online": self.online_tasks}

    def count_task(self) -> dict[str, Any]:
        """A task seen online when there are no records to measure it for."""
        self.online_tasks += 1
        return {"measured_records": 0, "reused": [], "tasks_seen_online": self.online_tasks}

    def refine(self, threshold: float, seed: int) -> int:
        """Fold the tasks seen by ``record_task`` into the records: effect, spread, strength and
        confidence over the discovery tasks (their per-task means, ``details["task_effects"]``)
        and the new tasks (per point). Records that fall below ``threshold`` are dropped.
        Returns how many records had new tasks to fold in."""
        scale = self.strength_scale()
        kept, refined = [], 0
        for i, r in enumerate(self.records):
            new = self.task_effects.get(r.key, [])
            if not new:
                kept.append(r)
                continue
            r = _refined(r, new, scale, seed + i)
            refined += 1
            self.task_effects[r.key] = []
            if r.causal_strength >= threshold:
                kept.append(r)
        self.records = kept
        return refined


def _as_record(r: CausalMechanism | Mapping[str, Any]) -> CausalMechanism:
    return r if isinstance(r, CausalMechanism) else CausalMechanism.from_dict(r)


def _is_output_record(r: CausalMechanism) -> bool:
    return r.mechanism_type == FEATURE and r.target == "output"


def _output_records(records: Iterable[CausalMechanism]) -> list[CausalMechanism]:
    return [r for r in records if _is_output_record(r)]


def _summary(r: CausalMechanism) -> dict[str, Any]:
    return {
        "type": r.mechanism_type.name,
        "source": r.source,
        "target": r.target,
        "strength": r.causal_strength,
        "confidence": r.confidence,
        "effect": r.effect,
        "effectiveness": r.effectiveness,
    }


def _task_effect(
    probe: Probe,
    episode: Episode,
    base: Measured,
    record: CausalMechanism,
    units: Mapping[str, FeatureUnit],
    reference: float,
) -> np.ndarray | None:
    """Per-point effect of a record's intervention on one task (None: not measurable)."""
    if _is_output_record(record) and record.source in units:
        x = units[record.source].apply(episode.query_x, reference)
        return probe.point_losses(base.state, probe.outputs(base.state, x), episode.query_y) - base.losses
    if record.mechanism_type == REPRESENTATION:
        k = record.details.get("mechanism_index")
        if not isinstance(k, int) or not 0 <= k < probe.model.num_mechanisms:
            return None
        return probe.switch_off(episode, k).losses - base.losses
    return None


def _refined(r: CausalMechanism, new: list[np.ndarray], scale: float, seed: int) -> CausalMechanism:
    """The record with its numbers recomputed over its discovery tasks and the new ones."""
    old_means = r.details.get("task_effects") or []
    # Discovery tasks enter as their per-task means (their points are not kept).
    groups = [np.array([m]) for m in old_means] + list(new)
    if not old_means:
        groups = [np.array([r.effect])] * int(r.details.get("tasks", 0)) + list(new)
    mean, spread, se = effect_summary(groups)
    details = {
        **r.details,
        "effect_se": se,
        "tasks": len(groups),
        "task_effects": [float(g.mean()) for g in groups][-MAX_TASK_HISTORY:],
        "refined_online": True,
    }
    return dataclasses.replace(
        r,
        effect=mean,
        effect_std=spread,
        causal_strength=strength_from_effect(mean, scale),
        confidence=bootstrap_confidence(groups, 400, seed=seed),
        details=details,
    )
