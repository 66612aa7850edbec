"""ui.tables, ui.episodes and ui.discovery: episodes and predictions as tables, the editable
support rows of a vector task read back, and the discovered mechanisms' table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.tasks import EXAMPLE_CSV, SCMTaskSource, SinusoidTaskSource, TabularTaskSource, TaskError
from ui.discovery import MECHANISM_COLUMNS, effectiveness_text, filter_mechanisms, mechanisms_frame
from ui.episodes import sample_vector_episode, sinusoid_preview, vector_task_choices
from ui.tables import (
    effects_table,
    episode_table,
    predictions_table,
    rows_to_support,
    scm_graph_table,
    support_rows,
)


def test_previews():
    curves, points = sinusoid_preview(SinusoidTaskSource(), n=3, shots=4, seed=1)
    assert len(curves) == 3 and len(points[0][0]) == 4
    src = SCMTaskSource()
    ep = src.tasks("train", 1, seed=0)[0].sample_episode(2, 3, np.random.default_rng(0))
    table = episode_table(ep, src.feature_names, None, src.target)
    assert list(table["set"]) == ["support"] * 2 + ["query"] * 3 and src.target in table.columns


def test_vector_support_rows_roundtrip_and_errors():
    src = TabularTaskSource(EXAMPLE_CSV, "failure", "plant")
    task = next(iter(vector_task_choices(src).values()))
    ep = sample_vector_episode(task, 1, 3, seed=0)
    rows = support_rows(src, ep)
    assert list(rows.columns) == [*src.feature_names, "failure"] and len(rows) == 2
    x, y = rows_to_support(src, rows)
    np.testing.assert_allclose(x, ep.support_x.numpy(), atol=1e-4)
    assert y.tolist() == ep.support_y.numpy().tolist()
    bad = rows.copy()
    bad.loc[0, "failure"] = "maybe"
    with pytest.raises(TaskError, match="unknown class"):
        rows_to_support(src, bad)
    bad = rows.copy()
    bad.loc[0, src.feature_names[0]] = np.nan
    with pytest.raises(TaskError, match="finite"):
        rows_to_support(src, bad)

    reg = TabularTaskSource(EXAMPLE_CSV, "yield", "plant")
    ep = sample_vector_episode(reg.all_tasks("test")[0], 1, 5, seed=0)
    rows = support_rows(reg, ep)
    assert 0 < rows["yield"].iloc[0] < 30  # in the CSV's units, not standardised
    x, y = rows_to_support(reg, rows)
    np.testing.assert_allclose(y, ep.support_y.numpy(), atol=1e-4)


def test_scm_support_rows_use_the_target_variable():
    src = SCMTaskSource(task_type="classification")
    task = next(iter(vector_task_choices(src, n=2).values()))
    ep = sample_vector_episode(task, 1, 2, seed=0)
    rows = support_rows(src, ep)
    assert list(rows.columns) == [*src.feature_names, src.target]
    x, y = rows_to_support(src, rows)
    np.testing.assert_allclose(x, ep.support_x.numpy(), atol=1e-6)
    assert y.tolist() == ep.support_y.numpy().tolist()


def test_sample_vector_episode_shrinks_queries_for_small_tasks():
    df = pd.DataFrame({"a": range(8), "b": range(8), "t": ["x"] * 4 + ["y"] * 4, "y": [0.0, 1, 2, 3, 4, 5, 6, 7]})
    src = TabularTaskSource(df, "y", "t", task_type="regression")
    ep = sample_vector_episode(src.all_tasks()[0], 1, 15, seed=0)
    assert ep.support_x.shape[0] == 1 and 1 <= ep.query_x.shape[0] <= 3


def test_predictions_table():
    t = predictions_table([1, 0], [1, 1], ["no", "yes"])
    assert t["predicted"].tolist() == ["yes", "no"] and t["correct"].tolist() == [True, False]
    r = predictions_table([[0.5]], [[1.0]], None, lambda v: v * 2 + 1)
    assert r["predicted"].iloc[0] == 2.0 and r["true"].iloc[0] == 3.0 and r["error"].iloc[0] == -1.0


def test_mechanism_table_helpers():
    mechs = [
        {
            "mechanism_type": "representation_transfer",
            "source": "mechanism 0",
            "target": "task",
            "causal_strength": 0.9,
            "confidence": 0.99,
        },
        {
            "mechanism_type": "feature_transfer",
            "source": "X1",
            "target": "output",
            "causal_strength": 0.4,
            "confidence": 0.6,
        },
    ]
    df = mechanisms_frame(mechs)
    assert list(df.columns[: len(MECHANISM_COLUMNS)]) == list(MECHANISM_COLUMNS)
    assert len(filter_mechanisms(df, None, 0.5)) == 1
    assert len(filter_mechanisms(df, ["feature_transfer"], 0.0)) == 1
    assert len(filter_mechanisms(df, None, 0.0, 0.7)) == 1


def test_mechanisms_frame_takes_records_and_effectiveness_text_says_why() -> None:
    from engine import CausalMechanism

    rec = CausalMechanism.from_dict(
        {
            "mechanism_type": "REPRESENTATION_TRANSFER",
            "source": "mechanism 0",
            "target": "tasks",
            "causal_strength": 0.9,
            "confidence": 0.99,
            "effectiveness": None,
            "reuse_count": 0,
            "effect": 0.3,
            "effect_std": 0.1,
        }
    )
    assert np.isnan(rec.effectiveness)  # a float, not None
    df = mechanisms_frame([rec])
    assert df.loc[0, "mechanism_type"] == "REPRESENTATION_TRANSFER" and df.loc[0, "causal_strength"] == 0.9
    assert pd.isna(df.loc[0, "effectiveness"])
    why = "not measured: no held-out tasks"
    assert effectiveness_text({"average_effectiveness": float("nan"), "effectiveness_note": why}) == (
        "not measured",
        why,
    )
    assert effectiveness_text({"average_effectiveness": 0.12345, "effectiveness_note": "x"})[0] == "0.123"


def test_effects_table_drops_the_metric_change_that_repeats_the_mse():
    rows = [{"mechanism": "mechanism 0", "effect": 0.5, "loss_off": 1.5, "metric": "mse", "metric_change": 0.5}]
    assert list(effects_table(rows)[0]) == ["mechanism", "effect on query loss", "query loss when off"]
    rows = [{"mechanism": "mechanism 0", "effect": 0.2, "loss_off": 1.1, "metric": "accuracy", "metric_change": -0.25}]
    table = effects_table(rows)
    assert table[0]["change in accuracy"] == -0.25 and table[0]["effect on query loss"] == 0.2


def test_scm_graph_table_lists_every_variable_after_its_parents():
    from engine.tasks import SCMTaskSource

    src = SCMTaskSource(num_variables=50)
    table = scm_graph_table(src.truth_graph())
    assert len(table) == 50 and list(table["causal order"]) == sorted(table["causal order"])
    order = dict(zip(table["variable"], table["causal order"], strict=True))
    for _, row in table.iterrows():
        for parent in filter(None, row["parents"].split(", ")):
            assert order[parent] < row["causal order"]
    assert (table["role"] == "target").sum() == 1 and table.loc[
        table["role"] == "target", "variable"
    ].item() == src.target
