"""AppTest of the "Graph from your data" section (Causal direction page): an uploaded table of
regimes with its truth gives a score table for ours and every baseline; bad uploads are one
clear error each."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from engine.graph_baselines import BASELINES
from engine.lab_simulation import simulate_lab_data
from tests.test_app_pages import _st_navigation_only, button, new_app, ok, texts  # noqa: F401 (fixture)
from ui import graph_from_data as gfd

PAGE = "pages/causal_direction.py"


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


@pytest.fixture(scope="module")
def lab():
    return simulate_lab_data(7, num_variables=5, num_interventions=3, rows=(150, 150))


def _upload(at, frame: pd.DataFrame, truth: bytes | None = None, targets: bytes | None = None):
    at.radio(key="gd_origin").set_value(gfd.UPLOAD)
    at.run()
    at.file_uploader(key="gd_upload").set_value(("data.csv", _csv(frame), "text/csv"))
    at.run()
    if truth is not None:
        at.file_uploader(key="gd_truth").set_value(("truth.csv", truth, "text/csv"))
    if targets is not None:
        at.file_uploader(key="gd_targets").set_value(("targets.json", targets, "application/json"))
    at.run()
    ok(at)


def test_uploaded_table_with_truth_scores_ours_and_every_baseline(lab):
    at = new_app(PAGE)
    truth = _csv(pd.DataFrame(lab.truth_edges, columns=["cause", "effect"]))
    _upload(at, lab.frame, truth=truth, targets=gfd.json.dumps(lab.nominal_targets).encode())
    assert at.selectbox(key="gd_obs_regime").value == "observational"
    button(at, "Learn the graph from this table").click()
    at.run()
    w = at.session_state["workers"]["graph"]
    assert w.join(120) and w.status == "done", w.error
    at.run()
    ok(at)
    table = next(d.value for d in at.dataframe if "SHD" in d.value.columns)
    methods = list(table["method"])
    assert methods == [gfd.METHOD_LABELS[m] for m in ("ours", *BASELINES)]
    assert table["SHD"].notna().all()  # every baseline ran: the targets of every regime were given
    assert (table["seconds"] >= 0).all()
    empty = table.loc[methods.index(gfd.METHOD_LABELS["empty"]), "SHD"]
    assert empty == len(lab.truth_edges)
    assert len(at.get("plotly_chart")) >= 2, "ours beside a baseline"
    assert "Green: a true edge in the right direction" in texts(at.caption)
    targets = next(d.value for d in at.dataframe if "inferred targets" in d.value.columns)
    assert sorted(targets["regime"]) == sorted(lab.nominal_targets)
    assert "Download the result (JSON)" in [d.proto.label for d in at.get("download_button")]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("one_regime", "has only one regime"),
        ("text_column", "are not numeric"),
        ("unknown_truth", "the truth names unknown variables ['zz']"),
        ("bad_json", "is not valid JSON"),
        ("unknown_regime", "targets name regime 'nowhere'"),
    ],
)
def test_bad_inputs_are_one_clear_error(lab, case, expected):
    frame, truth, targets = lab.frame, None, None
    if case == "one_regime":
        frame = lab.frame[lab.frame["regime"] == "observational"]
    elif case == "text_column":
        frame = lab.frame.assign(note="a")
    elif case == "unknown_truth":
        truth = b"cause,effect\nx1,zz\n"
    elif case == "bad_json":
        targets = b'{"regime1": ["x1"'
    elif case == "unknown_regime":
        targets = b'{"nowhere": ["x1"]}'
    at = new_app(PAGE)
    _upload(at, frame, truth=truth, targets=targets)
    if case == "text_column":  # pick the regime column by hand: the guess takes the first text column
        at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("gd_task_"))).set_value("regime")
        at.run()
    button(at, "Learn the graph from this table").click()
    at.run()
    ok(at)
    errors = [str(e.value) for e in at.error]
    assert len(errors) == 1 and expected in errors[0].replace("\\", ""), errors
    assert at.session_state["workers"].get("graph") is None or at.session_state["workers"]["graph"].generation == 0


def test_the_csv_in_use_on_the_tasks_page_is_offered():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("example_csv")
    at.run()
    button(at, "Use this task source").click()
    at.run()
    at.switch_page(PAGE)
    at.run()
    ok(at)
    assert gfd.TASKS_CSV in at.radio(key="gd_origin").options
    at.radio(key="gd_origin").set_value(gfd.TASKS_CSV)
    at.run()
    ok(at)
    task = next(s for s in at.selectbox if s.key.startswith("gd_task_"))
    assert task.value == "plant"
    # another source in use: the choice falls back to the simulated data
    at.switch_page("pages/tasks.py")
    at.run()
    at.radio(key="tasks_kind").set_value("sinusoid")
    at.run()
    button(at, "Use this task source").click()
    at.run()
    at.switch_page(PAGE)
    at.run()
    ok(at)
    assert at.radio(key="gd_origin").value == gfd.SIMULATED
