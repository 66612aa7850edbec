"""Discovered mechanisms as the Mechanisms page shows them: the table, its filters, and the
score against the known truth of SCM tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from engine import OneShotMetaLearningEngine
from engine.discovery import score_against_truth
from engine.mechanisms import RECORD_FIELDS
from engine.tasks import Task

MECHANISM_COLUMNS = RECORD_FIELDS  # the engine's record fields, in its order


def mechanisms_frame(mechanisms: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The discovered mechanisms as a table with the documented columns first (nested details
    such as per-task effects are left out of the table)."""
    rows = [{k: v for k, v in m.items() if not isinstance(v, (dict, list, tuple))} for m in mechanisms]
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


def score_discovery(eng: OneShotMetaLearningEngine, tasks: Sequence[Task]) -> dict[str, Any] | None:
    """Discovery scored against the known truth of SCM tasks (None when there is no truth)."""
    if not any(t.truth and "parents" in t.truth for t in tasks):
        return None
    return score_against_truth(eng.discovered_mechanisms, eng.discovery_report or {}, tasks)
