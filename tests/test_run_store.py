"""The run store on disk (ui.run_store), task-source recipes and the worker registry."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from engine import OneShotMetaLearningEngine
from engine.tasks import EXAMPLE_CSV, OMNIGLOT_DIR, TaskError, make_task_source
from ui.config_form import build_config, preset_values
from ui.job_registry import JobRegistry
from ui.run_store import RunStore, StoreError, new_workspace_id, workspace_id_problem
from ui.source_recipe import call_of, recipe_for_call, upload_recipe
from ui.worker import Worker

WS = "ws_test-0123456789"


@pytest.fixture(scope="module")
def trained() -> OneShotMetaLearningEngine:
    src = make_task_source("sinusoid")
    eng = OneShotMetaLearningEngine(
        build_config(preset_values("sinusoid")).replace(num_meta_iterations=3, val_episodes=2)
    )
    eng.meta_train_sync(src)
    return eng


def entry(name: str, eng: OneShotMetaLearningEngine) -> dict:
    return {"name": name, "history": eng.history.to_dict(), "config": eng.config.to_dict(), "algorithm": "MAML"}


def test_a_run_and_the_model_round_trip(tmp_path, trained):
    rs = RunStore(WS, root=tmp_path)
    assert not rs.exists
    assert rs.save_run(entry("first", trained), trained) == []
    rs.save_engine(trained, "mine.zip", {"kept": 2, "note": float("nan")})
    data = RunStore(WS, root=tmp_path).load()
    assert data.problems == []
    [run] = data.runs
    assert run.name == "first" and run.has_checkpoint and run.bytes > 0
    assert run.entry["history"]["iteration"] == trained.history.to_dict()["iteration"]
    back = OneShotMetaLearningEngine.from_checkpoint(rs.run_checkpoint(run.run_id))
    for a, b in zip(back.learner.state_dict().values(), trained.learner.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert data.engine_name == "mine.zip" and data.report == {"kept": 2, "note": None}
    assert OneShotMetaLearningEngine.from_checkpoint(data.engine_path).history.iteration == trained.history.iteration
    assert trained.checkpoint_name != "checkpoint"  # storing does not rename the session's model
    idx = json.loads((rs.path / "index.json").read_text())
    assert [r["name"] for r in idx["runs"]] == ["first"]


def test_same_name_replaces_and_delete_removes(tmp_path, trained):
    rs = RunStore(WS, root=tmp_path)
    rs.save_run(entry("a", trained), trained)
    rs.save_run(entry("b", trained))
    rs.save_run(entry("a", trained))
    runs = rs.load().runs
    assert sorted(r.name for r in runs) == ["a", "b"]
    assert len(list((rs.path / "runs").iterdir())) == 2
    b = next(r for r in runs if r.name == "b")
    assert not b.has_checkpoint
    with pytest.raises(StoreError):
        rs.run_checkpoint(b.run_id)
    assert rs.delete_run(b.run_id)
    assert not rs.delete_run(b.run_id) and not rs.delete_run("../../etc")
    assert [r.name for r in rs.load().runs] == ["a"]


def test_the_bound_deletes_the_oldest_runs_and_says_which(tmp_path, trained):
    rs = RunStore(WS, root=tmp_path, max_runs=3)
    deleted = [rs.save_run(entry(f"run {i}", trained), trained) for i in range(5)]
    assert deleted == [[], [], [], ["run 0"], ["run 1"]]
    assert [r.name for r in rs.load().runs] == ["run 2", "run 3", "run 4"]
    one_run = rs.load().runs[0].bytes
    small = RunStore(WS, root=tmp_path, max_bytes=int(2.5 * one_run))
    assert small.save_run(entry("run 5", trained), trained) == ["run 2", "run 3"]
    assert [r.name for r in small.load().runs] == ["run 4", "run 5"]
    assert small.total_bytes() <= 2.5 * one_run


def test_corrupt_or_missing_files_spoil_only_their_run(tmp_path, trained):
    rs = RunStore(WS, root=tmp_path)
    for name in ("good", "garbled", "gone"):
        rs.save_run(entry(name, trained), trained)
    ids = {r.name: r.run_id for r in rs.load().runs}
    (rs.path / "runs" / ids["garbled"] / "run.json").write_bytes(b"{not json\xff")
    (rs.path / "runs" / ids["gone"] / "run.json").unlink()
    data = rs.load()
    by = {r.name: r for r in data.runs}
    assert by["good"].entry is not None
    assert by["garbled"].entry is None and "not valid JSON" in by["garbled"].problem
    assert by["gone"].entry is None and "missing" in by["gone"].problem
    assert len(data.problems) == 2 and all("unreadable" in p for p in data.problems)
    # curves that are not numbers spoil the run; missing descriptive fields get defaults
    rs.save_run(entry("odd curves", trained))
    rs.save_run({"name": "bare", "history": trained.history.to_dict(), "config": trained.config.to_dict()})
    ids = {r.name: r.run_id for r in rs.listing()}
    odd = rs.path / "runs" / ids["odd curves"] / "run.json"
    bad = json.loads(odd.read_text())
    bad["history"]["train_loss"] = ["1.0; rm -rf /"] * len(bad["history"]["train_loss"])
    odd.write_text(json.dumps(bad))
    by = {r.name: r for r in rs.load().runs}
    assert "train_loss must be a list of numbers" in by["odd curves"].problem
    assert by["bare"].entry["algorithm"] == trained.config.algorithm.name and by["bare"].entry["plain"] is False
    for name in ("odd curves", "bare"):
        rs.delete_run(ids[name])
    # a corrupt index is rebuilt from the run folders
    (rs.path / "index.json").write_text('{"runs": 5}')
    data = rs.load()
    assert "rebuilt" in data.problems[0]
    assert sorted(r.name for r in data.runs if r.entry) == ["good"]
    assert len(data.runs) == 3
    rs.save_engine(trained, None, None)
    (rs.path / "index.json").write_bytes(b"\x00\xff")
    assert rs.load().engine_path is not None  # the model is found without its index entry


def test_a_stored_engine_that_is_corrupt_is_refused_with_its_name(tmp_path, trained):
    rs = RunStore(WS, root=tmp_path)
    rs.save_engine(trained, None, None)
    (rs.path / "engine" / "checkpoint" / "model.safetensors").write_bytes(b"garbage")
    data = rs.load()
    with pytest.raises(ValueError, match="model.safetensors|safetensors"):
        OneShotMetaLearningEngine.from_checkpoint(data.engine_path)


@pytest.mark.parametrize(
    "bad",
    ["", "../x", "../../etc/passwd", "a" * 65, "short", "wörkspace-id", "abcdefgh\x00", "abc/defgh", "abcdefgh\n", 5],
)
def test_hostile_workspace_ids_are_refused(tmp_path, bad):
    assert workspace_id_problem(bad)
    with pytest.raises(StoreError):
        RunStore(bad, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_new_ids_are_valid_and_distinct():
    ids = {new_workspace_id() for _ in range(50)}
    assert len(ids) == 50 and all(workspace_id_problem(i) is None and len(i) == 16 for i in ids)


def test_workspaces_stay_apart(tmp_path, trained):
    a, b = RunStore("workspace-a1", root=tmp_path), RunStore("workspace-b2", root=tmp_path)
    a.save_run(entry("only in a", trained))
    assert [r.name for r in a.load().runs] == ["only in a"] and b.load().runs == []


def test_source_recipes_rebuild_the_same_source(tmp_path):
    for name, params in [
        ("sinusoid", {}),
        ("scm", {"num_variables": 5, "task_type": "classification", "seed": 3, "intervention_size": 1}),
        ("tabular", {"data": EXAMPLE_CSV, "target_column": "failure", "task_column": "plant"}),
    ]:
        recipe = recipe_for_call(name, params)
        rs = RunStore(WS, root=tmp_path)
        rs.save_source(recipe)
        kind, back = call_of(rs.load().source)
        assert make_task_source(kind, **back).describe() == make_task_source(name, **params).describe()
    assert recipe_for_call("tabular", {"data": b"x,y\n1,2\n"}) is None  # bytes: only an upload recipe keeps them
    with pytest.raises(TaskError, match="not installed"):
        call_of({"kind": "images", "params": {}, "builtin_zip": "../../secret.zip"})
    with pytest.raises(TaskError, match="plain values"):
        call_of({"kind": "images", "params": {"path": "/etc/passwd"}})
    with pytest.raises(TaskError, match="unknown kind"):
        call_of({"kind": "os.system", "params": {}})


def test_omniglot_recipe_names_the_set_only(tmp_path):
    zips = sorted(OMNIGLOT_DIR.glob("*.zip"))
    if not zips:
        pytest.skip("the Omniglot minimal sets are not installed")
    recipe = recipe_for_call("images", {"path": zips[0], "n_way": 3, "rotations": True})
    assert recipe == {"kind": "images", "params": {"n_way": 3, "rotations": True}, "builtin_zip": zips[0].name}
    assert call_of(recipe)[1]["path"] == zips[0]


def test_an_uploaded_csv_is_kept_as_a_file_and_rebuilt(tmp_path):
    rs = RunStore(WS, root=tmp_path)
    params = {"target_column": "yield", "task_column": "plant", "task_type": "auto", "feature_columns": None}
    rs.save_source(upload_recipe("tabular", params), ("my data.csv", EXAMPLE_CSV.read_bytes()))
    data = rs.load()
    assert data.source_file.name == "upload.csv"
    kind, back = call_of(data.source, data.source_file)
    assert (
        make_task_source(kind, **back).feature_names
        == make_task_source("tabular", data=EXAMPLE_CSV, target_column="yield", task_column="plant").feature_names
    )
    data.source_file.unlink()
    data = rs.load()
    assert data.source is None and "missing" in data.problems[0]
    with pytest.raises(StoreError, match="MB"):
        RunStore(WS, root=tmp_path).save_source(upload_recipe("tabular", params), ("big.csv", b"0" * (51 * 1024**2)))


def test_the_registry_shares_workers_within_a_workspace_and_collects_each_job_once():
    reg = JobRegistry(Worker, max_workspaces=2)
    w = reg.worker("space-one", "train")
    assert reg.worker("space-one", "train") is w and reg.worker("space-two", "train") is not w
    w.start(lambda wk: 1)
    w.join(5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(reg.claim_result(w))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    reg.worker("space-three", "train")
    assert "space-one" not in reg._spaces  # idle workspaces beyond the cap are forgotten


def test_the_registry_keeps_a_workspace_with_a_running_job():
    reg = JobRegistry(Worker, max_workspaces=1)
    w = reg.worker("busy-space", "train")
    gate = threading.Event()
    w.start(lambda wk: gate.wait(10))
    try:
        reg.worker("other-space", "train")
        assert reg.worker("busy-space", "train") is w
    finally:
        gate.set()
        w.join(5)
