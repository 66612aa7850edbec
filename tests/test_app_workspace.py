"""AppTest of the workspace in the URL (?ws=<id>) and its run store: a reload restores the session,
a running job is found again, other workspaces stay apart, hostile ids are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from engine.tasks import EXAMPLE_CSV
from tests.test_app_pages import (  # noqa: F401  (fixtures used by name)
    APP,
    _restore_torch_threads,
    _st_navigation_only,
    button,
    ok,
    texts,
    train_a_few_iterations,
    trained_sine_engine,
    wait_records,
)
from tests.test_hostile_mechanisms import GOOD
from ui.run_store import RunStore, workspace_id_problem


def open_app(ws: str | None = None, page: str | None = None) -> AppTest:
    """A new browser session, opened with ``?ws=<ws>`` when given (a reload or a reopened link)."""
    at = AppTest.from_file(APP, default_timeout=60)
    if ws is not None:
        at.query_params["ws"] = ws
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def session_runs(at: AppTest) -> list[str]:
    return [r["name"] for r in at.session_state["runs"]] if "runs" in at.session_state else []


def test_a_reload_with_the_workspace_id_restores_runs_model_source_and_mechanisms():
    at = open_app(page="pages/tasks.py")
    ws = at.query_params["ws"]
    assert workspace_id_problem(ws) is None
    at.radio(key="tasks_kind").set_value("scm")
    at.run()
    at.number_input(key="scm_d").set_value(5)
    at.run()
    button(at, "Use this task source").click()
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert at.query_params["ws"] == ws  # the id stays in the URL from page to page
    train_a_few_iterations(at)
    ok(at)
    eng = at.session_state["engine"]
    assert eng.is_trained and session_runs(at)
    [stored] = RunStore(ws).listing()
    assert stored.name == session_runs(at)[0] and stored.has_checkpoint  # stored as the run finished
    assert eng.import_mechanisms(GOOD) == 1
    at.run()  # a model changed on this run is stored at its end

    again = open_app(ws, "pages/train.py")
    ok(again)
    assert again.query_params["ws"] == ws
    assert session_runs(again) == session_runs(at)
    back = again.session_state["engine"]
    assert back is not eng and back.history.iteration == eng.history.iteration
    for a, b in zip(back.learner.state_dict().values(), eng.learner.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [m.source for m in back.discovered_mechanisms] == ["X1"]
    assert again.session_state["source"].describe() == at.session_state["source"].describe()
    assert "Restored 1 run(s), the model with 1 mechanisms, the task source." in texts(again.sidebar.caption)
    assert "3 iterations" in texts(again.sidebar.markdown)

    # another workspace sees none of it
    other = open_app("another-workspace-1234", "pages/train.py")
    ok(other)
    assert session_runs(other) == [] and "Restored" not in texts(other.sidebar.caption)
    assert other.session_state["workers"] is not again.session_state["workers"]

    # the stored run is deleted from the page: gone from the session and from disk
    button(again, "Delete").click()
    again.run()
    ok(again)
    assert session_runs(again) == [] and RunStore(ws).load().runs == []


@pytest.mark.parametrize(
    "bad",
    ["../x", "../../etc/passwd", "a" * 300, "wörkspace-ïd-1234", "", "abcdefgh\x00ijk", "%00abcdefgh", "a b c d e f"],
)
def test_a_hostile_workspace_id_is_refused_and_a_fresh_workspace_used(bad):
    at = open_app(bad)
    ok(at)
    assert "The link's workspace id was refused" in texts(at.sidebar.warning)
    fresh = at.query_params["ws"]
    assert fresh != bad and workspace_id_problem(fresh) is None
    root = Path(os.environ["CAUSAL_EXPLORER_STORE"])
    assert all(workspace_id_problem(p.name) is None for p in root.iterdir()) if root.exists() else True


def test_a_reload_during_training_reattaches_to_the_running_job():
    at = open_app(page="pages/train.py")
    ws = at.query_params["ws"]
    at.number_input(key="cfg_num_meta_iterations").set_value(100_000)
    at.run()
    button(at, "Start").click()
    at.run()
    w = at.session_state["workers"]["train"]
    wait_records(w, 2)

    again = open_app(ws, "pages/train.py")  # the reload: a new session of the same workspace
    ok(again)
    assert again.session_state["workers"]["train"] is w and w.running
    assert any("meta-training" in str(p.proto.text) for p in again.get("progress")), "the sidebar shows its progress"
    # the run replaces the ready model only once it finishes: until then the reloaded session keeps that
    training = w.meta["engines"][w.meta["run_name"]]
    assert w.meta["successor"] is training and again.session_state["engine"] is not training
    button(again, "Stop").click()
    again.run()
    assert not w.running and w.status == "stopped"
    again.run()
    ok(again)
    assert len(session_runs(again)) == 1  # collected once, by the session that saw it finish
    at.run()
    assert session_runs(at) == []
    third = open_app(ws, "pages/train.py")
    assert session_runs(third) == session_runs(again)


def test_a_corrupt_store_restores_what_it_can_and_names_the_rest():
    eng = trained_sine_engine(3)
    rs = RunStore("corrupt-store-1234")
    for name in ("good run", "spoilt run"):
        rs.save_run({"name": name, "history": eng.history.to_dict(), "config": eng.config.to_dict()}, eng)
    rs.save_engine(eng, None, None)
    spoilt = next(r for r in rs.listing() if r.name == "spoilt run")
    (rs.path / "runs" / spoilt.run_id / "run.json").write_text("{")
    (rs.path / "engine" / "checkpoint" / "model.safetensors").write_bytes(b"not safetensors")
    at = open_app("corrupt-store-1234", "pages/train.py")
    ok(at)
    assert session_runs(at) == ["good run"]
    notes = texts(at.sidebar.caption)
    assert "run 'spoilt run' is unreadable: run.json is not valid JSON" in notes.replace("\\", "")
    assert "the stored model is unreadable" in notes
    assert not at.session_state["engine"].is_trained or at.session_state["engine"].history != eng.history
    # the good run's model is one click away
    good = next(r for r in rs.listing() if r.name == "good run")
    at.button(key=f"ws_use_{good.run_id}").click()
    at.run()
    ok(at)
    assert at.session_state["engine"].history.iteration == eng.history.iteration


def test_an_uploaded_csv_source_comes_back_after_a_reload():
    at = open_app(page="pages/tasks.py")
    ws = at.query_params["ws"]
    at.radio(key="tasks_kind").set_value("upload_csv")
    at.run()
    at.file_uploader(key="csv_upload").set_value(("plants.csv", EXAMPLE_CSV.read_bytes(), "text/csv"))
    at.run()
    at.selectbox(key="csv_target").set_value("failure")
    at.run()
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    src = at.session_state["source"]
    again = open_app(ws, "pages/train.py")
    ok(again)
    back = again.session_state["source"]
    assert back is not src and back.target_column == "failure" and back.task_type == "classification"
    assert back.feature_names == src.feature_names and back.task_ids == src.task_ids
    assert (RunStore(ws).path / "source" / "upload.csv").read_bytes() == EXAMPLE_CSV.read_bytes()
