import json
import subprocess
import sys

import pytest

from engine.cli import main
from tests.conftest import ROOT

TRAIN = ["--num-meta-iterations", "4", "--meta-batch-size", "2", "--val-episodes", "2", "--quiet"]


def test_help_for_every_subcommand():
    for cmd in ("train", "evaluate", "adapt", "bench"):
        out = subprocess.run(
            [sys.executable, "-m", "engine", cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and "usage: python -m engine" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "engine", "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "--causal-weight" in out.stdout and "--no-enable-causal-priors" in out.stdout


def test_train_evaluate_adapt_sinusoid(tmp_path):
    ck, res = tmp_path / "ck", tmp_path / "train.json"
    assert (
        main(["train", "--source", "sinusoid", "--support-shots", "5", *TRAIN, "--out", str(ck), "--json", str(res)])
        == 0
    )
    train = json.loads(res.read_text())
    assert train["iterations"] == 4 and (ck / "model.safetensors").exists() and "mse" in train["test"]
    ev = tmp_path / "ev.json"
    assert main(["evaluate", "--checkpoint", str(ck), "--episodes", "5", "--json", str(ev), "--quiet"]) == 0
    assert json.loads(ev.read_text())["episodes"] == 5
    ad = tmp_path / "ad.json"
    assert main(["adapt", "--checkpoint", str(ck), "--json", str(ad)]) == 0
    adapted = json.loads(ad.read_text())
    assert adapted["adaptation_time"] > 0 and "explanation" in adapted
    # resuming continues the recorded curve
    assert (
        main(["train", "--source", "sinusoid", "--resume", str(ck), *TRAIN, "--out", str(ck), "--json", str(res)]) == 0
    )
    assert json.loads(res.read_text())["iterations"] == 8


@pytest.mark.parametrize(
    "source_args",
    [
        [
            "--source",
            "images",
            "--algorithm",
            "PROTOTYPICAL_CAUSAL",
            "--hidden-dim",
            "16",
            "--conv-channels",
            "8",
            "--n-way",
            "3",
            "--support-shots",
            "1",
        ],
        ["--source", "scm", "--num-variables", "5", "--support-shots", "3"],
        [
            "--source",
            "tabular",
            "--path",
            str(ROOT / "assets" / "example_tasks.csv"),
            "--target-column",
            "yield",
            "--task-column",
            "plant",
            "--support-shots",
            "2",
            "--query-shots",
            "3",
        ],
    ],
)
def test_train_other_sources_then_evaluate_from_recorded_source(tmp_path, source_args):
    ck = tmp_path / "ck.zip"
    assert main(["train", *source_args, *TRAIN, "--out", str(ck)]) == 0
    out = tmp_path / "ev.json"
    assert main(["evaluate", "--checkpoint", str(ck), "--episodes", "3", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["episodes"] == 3


def test_errors_are_one_clear_line(capsys, tmp_path):
    assert main(["train", "--source", "sinusoid", "--inner-lr", "-3", "--quiet"]) == 2
    assert "inner_lr must be in" in capsys.readouterr().err
    assert main(["train", "--source", "tabular", "--quiet"]) == 2
    assert "--target-column" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2
    assert "available" in capsys.readouterr().err
