"""ui.sources: naming task sources, reading an uploaded CSV and the tabular source over it."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.tasks import EXAMPLE_CSV, SCMTaskSource, SinusoidTaskSource, TabularTaskSource, TaskError, make_task_source
from ui.sources import guess_columns, read_csv_upload, source_label, tabular_source


def test_csv_upload_parsing_and_messages():
    df = read_csv_upload(EXAMPLE_CSV.read_bytes(), "plants.csv")
    assert guess_columns(df) == ("yield", "plant")
    with pytest.raises(TaskError, match="empty"):
        read_csv_upload(b"", "x.csv")
    with pytest.raises(TaskError, match="at least a feature column"):
        read_csv_upload(b"a,b\n1,2\n", "x.csv")
    with pytest.raises(TaskError, match="no data rows"):
        read_csv_upload(b"a,b,c\n", "x.csv")


def test_tabular_source_with_chosen_features():
    df = pd.read_csv(EXAMPLE_CSV)
    src = tabular_source(df, "yield", "plant", ["temperature", "pressure"])
    assert src.feature_names == ["temperature", "pressure"] and src.task_type == "regression"
    with pytest.raises(TaskError, match="at least one feature"):
        tabular_source(df, "yield", "plant", [])
    with pytest.raises(TaskError, match="not numeric"):
        tabular_source(df, "temperature", "yield", ["plant"])


def test_source_label(omniglot_dir):
    assert source_label(None) == "none"
    assert source_label(SinusoidTaskSource()) == "sinusoid"
    assert source_label(SCMTaskSource()) == "scm: 6 variables, regression"
    csv = TabularTaskSource(EXAMPLE_CSV, "failure", "plant")
    assert source_label(csv) == "CSV: target 'failure', tasks by 'plant'"
    images = make_task_source("images", n_way=3)
    assert source_label(images) == "images: images_background_small1.zip (3-way)"
