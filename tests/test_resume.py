import json

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.cli import main

pytestmark = pytest.mark.slow  # three short training runs

SCM = ["--source", "scm", "--num-variables", "5", "--scm-seed", "7", "--support-shots", "3"]
RUN = ["--meta-batch-size", "2", "--val-episodes", "2", "--eval-interval", "2", "--outer-lr", "0.01", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    assert main(["train", *SCM, *RUN, "--num-meta-iterations", "6", "--out", str(root / "full")]) == 0
    assert main(["train", *SCM, *RUN, "--num-meta-iterations", "3", "--out", str(root / "half")]) == 0
    # no source options repeated: the checkpoint's own task source and Adam state continue
    res = root / "resumed.json"
    rc = main(
        ["train", "--resume", str(root / "half"), "--num-meta-iterations", "6", "--quiet"]
        + ["--out", str(root / "resumed"), "--json", str(res)]
    )
    assert rc == 0
    return root, json.loads(res.read_text())


def test_resume_equals_an_uninterrupted_run_of_the_same_total_length(runs):
    root, resumed = runs
    full, again = load_checkpoint(root / "full"), load_checkpoint(root / "resumed")
    assert resumed["iterations"] == 6 and resumed["resumed"]["changed"] == []
    assert again.meta["config"]["num_meta_iterations"] == 6
    assert full.meta["history"]["train_loss"] == pytest.approx(again.meta["history"]["train_loss"], rel=1e-5)
    for name, weight in full.tensors.items():
        torch.testing.assert_close(again.tensors[name], weight, rtol=1e-5, atol=1e-6)
    assert set(full.optimizer) == set(again.optimizer) and full.optimizer
    for name, moment in full.optimizer.items():
        torch.testing.assert_close(again.optimizer[name], moment, rtol=1e-5, atol=1e-7)


def test_an_explicit_option_on_resume_says_what_changed(runs, capsys):
    root, _ = runs
    res = root / "changed.json"
    rc = main(
        ["train", "--resume", str(root / "half"), "--more-iterations", "2", "--outer-lr", "0.005"]
        + ["--scm-seed", "8", "--quiet", "--out", str(root / "changed"), "--json", str(res)]
    )
    assert rc == 0
    out = json.loads(res.read_text())
    assert out["iterations"] == 5 and out["source"]["cli_args"]["seed"] == 8
    assert "outer_lr: 0.01 -> 0.005" in out["resumed"]["changed"] and "seed: 7 -> 8" in out["resumed"]["changed"]
    assert "resume: outer_lr: 0.01 -> 0.005" in capsys.readouterr().err


def test_a_total_already_reached_is_an_error(runs, capsys):
    root, _ = runs
    rc = main(
        ["train", "--resume", str(root / "half"), "--num-meta-iterations", "3", "--quiet"] + ["--out", str(root / "x")]
    )
    assert rc == 2 and "has trained 3 iterations" in capsys.readouterr().err
    rc = main(["train", *SCM, "--more-iterations", "2", "--quiet", "--out", str(root / "x")])
    assert rc == 2 and "--more-iterations needs --resume" in capsys.readouterr().err
