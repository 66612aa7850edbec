"""Discovered mechanisms as the Mechanisms page shows them: the table, its filters, and the
score against the known truth of SCM tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from engine import OneShotMetaLearningEngine
from engine.discovery import score_against_truth
from engine.mechanisms import RECORD_FIELDS, CausalMechanism
from engine.tasks import Task

MECHANISM_COLUMNS = RECORD_FIELDS  # the engine's record fields, in its order


def mechanisms_frame(mechanisms: Sequence[CausalMechanism | dict[str, Any]]) -> pd.DataFrame:
    """The discovered mechanisms (records or their ``to_dict()``) as a table with the documented
    columns first (nested details such as per-task effects are left out of the table; an
    unmeasured effectiveness is NaN, shown empty)."""
    dicts = [m.to_dict() if isinstance(m, CausalMechanism) else m for m in mechanisms]
    rows = [{k: v for k, v in m.items() if not isinstance(v, (dict, list, tuple))} for m in dicts]
    df = pd.DataFrame(rows)
    for c in MECHANISM_COLUMNS:
        if c not in df.columns:
            df[c] = None
    rest = [c for c in df.columns if c not in MECHANISM_COLUMNS]
    return df[[*MECHANISM_COLUMNS, *rest]]


def filter_mechanisms(
    df: pd.DataFrame, types: Sequence[str] | None = None, min_strength: float = 0.0, min_confidence: float = 0.0
) -> pd.DataFrame:
    """The rows of the chosen types with at least the given strength and confidence."""
    out = df
    if types:
        out = out[out["mechanism_type"].astype(str).isin([str(t) for t in types])]
    strength = pd.to_numeric(out["causal_strength"], errors="coerce").fillna(0.0)
    conf = pd.to_numeric(out["confidence"], errors="coerce").fillna(0.0)
    return out[(strength >= min_strength) & (conf >= min_confidence)]


def effectiveness_text(insights: dict[str, Any]) -> tuple[str, str]:
    """The average effectiveness as the page shows it, and what it is (or why it is missing)."""
    avg = insights["average_effectiveness"]
    note = str(insights.get("effectiveness_note") or "")
    if not math.isfinite(avg):
        return "not measured", note
    return f"{avg:.3g}", note


def score_discovery(eng: OneShotMetaLearningEngine, tasks: Sequence[Task]) -> dict[str, Any] | None:
    """Discovery scored against the known truth of SCM tasks (None when there is no truth)."""
    if not any(t.truth and "parents" in t.truth for t in tasks):
        return None
    return score_against_truth(eng.discovered_mechanisms, eng.discovery_report or {}, tasks)
