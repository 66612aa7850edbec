"""``discover`` on a task CSV: every regime usable (split fractions 1,0,0), the target's real
column name in the report, and the invariance test switched and tuned from the command line."""

import json

import pandas as pd
import pytest

from engine.cli import main
from engine.lab_simulation import simulate_lab_data

TRAIN = ["--num-meta-iterations", "4", "--meta-batch-size", "2", "--val-episodes", "2", "--quiet"]


@pytest.fixture(scope="module")
def lab_csv(tmp_path_factory):
    lab = simulate_lab_data(seed=1, num_variables=5, num_interventions=4, rows=(60, 80))
    path = tmp_path_factory.mktemp("lab") / "lab.csv"
    lab.frame.to_csv(path, index=False)
    truth = path.with_name("truth.csv")
    pd.DataFrame(lab.truth_edges, columns=["cause", "effect"]).to_csv(truth, index=False)
    return path, truth, lab


@pytest.fixture(scope="module")
def all_in_train(lab_csv, tmp_path_factory):
    path = lab_csv[0]
    ck, out = tmp_path_factory.mktemp("ck") / "ck", path.with_name("train.json")
    source = ["--source", "tabular", "--path", str(path), "--target-column", "x5", "--task-column", "regime"]
    argv = ["train", *source, "--split-fractions", "1,0,0", "--support-shots", "3", "--query-shots", "5", *TRAIN]
    assert main([*argv, "--out", str(ck), "--json", str(out)]) == 0
    return ck, json.loads(out.read_text())


def test_training_with_every_regime_in_train_says_what_it_skipped(all_in_train):
    _, doc = all_in_train
    assert len(doc["source"]["tasks"]["train"]) == 5 and doc["source"]["tasks"]["val"] == []
    assert doc["test"] is None
    assert "trained without validation" in doc["message"] and "not evaluated" in doc["message"]
    assert doc["history"]["val_loss"] == [] and len(doc["history"]["train_loss"]) == 4


def test_discover_on_split_train_names_the_target_column(all_in_train, tmp_path, capsys):
    ck, _ = all_in_train
    out = tmp_path / "d.json"
    argv = ["discover", "--checkpoint", str(ck), "--tasks", "5", "--threshold", "0", "--quiet"]
    assert main([*argv, "--json", str(out)]) == 2  # the default split (val) is empty
    assert "split 'val' of the data has no tasks" in capsys.readouterr().err
    assert main([*argv, "--split", "train", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    inv = doc["report"]["invariance"]
    assert inv["variables"][-1] == "x5" and "target" not in inv["variables"]
    assert doc["settings"] == {"use_invariance": True, "invariance_alpha": 0.01}
    # a stricter level (larger alpha) accepts fewer feature sets
    assert main([*argv, "--split", "train", "--invariance-alpha", "0.5", "--json", str(out)]) == 0
    strict = json.loads(out.read_text())["report"]["invariance"]["accepted_sets"]
    assert {tuple(s) for s in strict} < {tuple(s) for s in inv["accepted_sets"]}
    assert main([*argv, "--split", "train", "--no-use-invariance", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "invariance" not in doc["report"] and doc["settings"]["use_invariance"] is False
    assert main([*argv, "--split", "train", "--invariance-alpha", "2"]) == 2


def test_all_targets_assembles_one_graph_scored_against_the_truth(lab_csv, tmp_path, capsys):
    path, truth, lab = lab_csv
    out = tmp_path / "graph.json"
    argv = ["discover", "--all-targets", "--path", str(path), "--task-column", "regime", "--iterations", "5"]
    assert main([*argv, "--truth", str(truth), "--quiet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text(), parse_constant=lambda c: None)
    assert doc["variables"] == lab.names and set(doc["per_target"]) == set(lab.names)
    assert all(len(e) == 2 and set(e) <= set(lab.names) and e[0] != e[1] for e in doc["edges"])
    for target, found in doc["per_target"].items():
        assert [target, target] not in doc["edges"]
        assert all([p, target] in doc["edges"] for p in found["parents"])
    assert set(doc["scores"]) == {"ours", "empty"} and doc["scores"]["empty"]["shd"] == len(lab.truth_edges)
    # on this small problem the assembled parents beat guessing no edges
    assert doc["scores"]["ours"]["shd"] < doc["scores"]["empty"]["shd"]
    assert doc["scores"]["ours"]["precision"] >= 0.5
    assert "edges assembled" in doc["message"]
    for bad, why in [
        (["--checkpoint", str(path)], "leave out --checkpoint"),
        (["--task-column", "nowhere"], "task column 'nowhere'"),
    ]:
        assert main([*argv, *bad, "--quiet"]) == 2
        assert why in capsys.readouterr().err
    assert main(["discover", "--path", str(path)]) == 2
    assert "discover needs --checkpoint" in capsys.readouterr().err
