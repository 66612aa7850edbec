import json
import subprocess
import sys

import pytest

from engine.cli import main
from tests.conftest import ROOT

TRAIN = ["--num-meta-iterations", "4", "--meta-batch-size", "2", "--val-episodes", "2", "--quiet"]


def test_help_for_every_subcommand(capsys):
    from engine.cli import COMMANDS

    assert {"train", "evaluate", "adapt", "discover", "evolve", "graph", "bench"} <= set(COMMANDS)
    for cmd in COMMANDS:
        assert main([cmd, "--help"]) == 0, cmd
        assert "usage: " in capsys.readouterr().out
    out = subprocess.run(
        [sys.executable, "-m", "engine", "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "usage: python -m engine" in out.stdout
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
    # resuming continues the recorded curve; --num-meta-iterations is the total
    resume = ["train", "--resume", str(ck), *TRAIN[2:], "--num-meta-iterations", "8", "--out", str(ck)]
    assert main([*resume, "--json", str(res)]) == 0
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
            "--mirrors",
            "--augment-shift",
            "1",
            "--augment-affine",
            "0.5",
            "--augment-elastic",
            "0.25",
            "--test-time-shifts",
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
    if "PROTOTYPICAL_CAUSAL" in source_args:  # test-time settings can be overridden when evaluating
        scores = {}
        for steps in ("0", "5"):
            argv = ["evaluate", "--checkpoint", str(ck), "--episodes", "3", "--transductive-steps", steps]
            assert main([*argv, "--json", str(out), "--quiet"]) == 0
            scores[steps] = json.loads(out.read_text())["loss"]
        assert scores["0"] != scores["5"]
        assert main(["evaluate", "--checkpoint", str(ck), "--transductive-steps", "101"]) == 2
        argv = ["evaluate", "--checkpoint", str(ck), "--episodes", "3", "--transductive-steps", "0"]
        assert main([*argv, "--test-time-views", "grid_affine", "--json", str(out), "--quiet"]) == 0
        assert json.loads(out.read_text())["loss"] != scores["0"]  # 15 views, not the checkpoint's 5
        assert main(["evaluate", "--checkpoint", str(ck), "--test-time-views", "rotated"]) == 2


def test_errors_are_one_clear_line(capsys, tmp_path):
    assert main(["train", "--source", "sinusoid", "--inner-lr", "-3", "--quiet"]) == 2
    assert "argument --inner-lr: must be a number in [1e-06, 10]; got '-3'" in capsys.readouterr().err
    assert main(["train", "--source", "tabular", "--quiet"]) == 2
    assert "--target-column" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2
    assert "available" in capsys.readouterr().err
    assert main(["train", "--source", "images", "--augment-affine", "3", "--quiet"]) == 2
    assert "augment_affine must be a number in [0, 2]" in capsys.readouterr().err


# ---------------------------------------------------------------------------- option ranges
def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _range_cases():
    import dataclasses

    from engine.config import OneShotMetaLearningConfig

    cases = []
    for f in dataclasses.fields(OneShotMetaLearningConfig):
        bounds = OneShotMetaLearningConfig.field_range(f.name)
        if bounds is None:
            continue
        low, high = bounds
        what = "an integer" if f.type == "int" else "a number"
        expected = f"argument {_flag(f.name)}: must be {what} in [{low:g}, {high:g}]"
        below = str(int(low) - 1) if f.type == "int" else repr(low - 1.0)
        above = str(int(high) + 1) if f.type == "int" else repr(high * 2 + 1.0)
        cases += [(f.name, below, expected), (f.name, above, expected)]
    return cases


@pytest.mark.parametrize(("field", "value", "expected"), _range_cases())
def test_every_config_option_out_of_range_names_flag_and_range(capsys, field, value, expected):
    assert main(["train", "--source", "sinusoid", "--quiet", f"{_flag(field)}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"{expected}; got '{value}'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--inner-lr", "abc"], "argument --inner-lr: must be a number in [1e-06, 10]; got 'abc'"),
        (["--inner-lr", "nan"], "argument --inner-lr: must be a number in [1e-06, 10]; got 'nan'"),
        (["--outer-lr", "inf"], "argument --outer-lr: must be a number in [1e-07, 1]; got 'inf'"),
        (["--inner-lr", "0"], "argument --inner-lr: must be a number in [1e-06, 10]; got '0'"),
        (["--n-way", "1"], "argument --n-way: must be an integer in [2, 200]; got '1'"),
        (["--n-way", "two"], "argument --n-way: must be an integer in [2, 200]; got 'two'"),
        (["--num-inner-steps", "1e9"], "argument --num-inner-steps: must be an integer in [0, 100]; got '1e9'"),
        (["--num-inner-steps", "1000000"], "argument --num-inner-steps: must be an integer in [0, 100]"),
        (["--meta-batch-size", "0"], "argument --meta-batch-size: must be an integer in [1, 1024]; got '0'"),
        (["--meta-batch-size", "2.5"], "argument --meta-batch-size: must be an integer in [1, 1024]; got '2.5'"),
        (["--seed", "-1"], "argument --seed: must be an integer in [0, 2.14748e+09]; got '-1'"),
        (["--algorithm", "SGD"], "algorithm must be one of MAML_CAUSAL"),
        (["--device", "tpu"], "device must be one of"),
        (["--encoder", "resnet"], "encoder must be one of"),
        (["--hidden-dim", "2", "--num-mechanisms", "4"], "hidden_dim must be at least num_mechanisms (4); got 2"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_train_option_is_one_clear_line(capsys, tmp_path, args, expected):
    assert main(["train", "--source", "sinusoid", "--quiet", "--out", str(tmp_path / "ck"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("evaluate", ["--episodes", "0"], "argument --episodes: must be an integer in [1, 100000]; got '0'"),
        ("evaluate", ["--steps", "-1"], "argument --steps: must be an integer in [0, 1000]; got '-1'"),
        ("evaluate", ["--support-shots", "0"], "argument --support-shots: must be an integer in [1, 100]; got '0'"),
        ("evaluate", ["--seed", "-3"], "argument --seed: must be an integer in [0, 2.14748e+09]; got '-3'"),
        ("adapt", ["--task-seed", "-1"], "argument --task-seed: must be an integer in [0, 2.14748e+09]; got '-1'"),
        ("adapt", ["--steps", "99999"], "argument --steps: must be an integer in [0, 1000]; got '99999'"),
        ("discover", ["--tasks", "0"], "argument --tasks: must be an integer in [1, 10000]; got '0'"),
        ("discover", ["--threshold", "2"], "argument --threshold: must be a number in [0, 1]; got '2'"),
        ("discover", ["--threshold", "x"], "argument --threshold: must be a number in [0, 1]; got 'x'"),
    ],
)
def test_bad_option_of_other_commands_is_one_clear_line(capsys, tmp_path, command, args, expected):
    # refused while parsing: the (missing) checkpoint is never opened
    assert main([command, "--checkpoint", str(tmp_path / "none"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "not found" not in err


@pytest.mark.parametrize(
    ("args", "expected"), [(["--n-way", "1"], "argument --n-way: must be an integer in [2, 200]; got '1'")]
)
def test_out_of_range_through_python_m_engine_exits_2_without_traceback(tmp_path, args, expected):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "train",
            "--source",
            "sinusoid",
            "--quiet",
            "--out",
            str(tmp_path / "c"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and expected in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def _reject_nan(name):
    raise ValueError(f"{name} in the JSON output")


def test_discover_writes_valid_json_and_logs_with_verbose(tmp_path, capfd):
    ck, out, mech = tmp_path / "ck", tmp_path / "discover.json", tmp_path / "mechanisms.json"
    train = ["--num-meta-iterations", "4", "--meta-batch-size", "2", "--val-episodes", "2"]
    assert main(["train", "--source", "scm", "--num-variables", "4", *train, "-q", "--out", str(ck)]) == 0
    capfd.readouterr()
    argv = ["discover", "--checkpoint", str(ck), "--tasks", "4", "--threshold", "0", "--export", str(mech)]
    assert main([*argv, "--json", str(out), "-v"]) == 0
    err = capfd.readouterr().err
    assert "INFO engine.engine: discovery on 3 tasks (1 held out)" in err  # a quarter held out by default
    doc = json.loads(out.read_text(), parse_constant=_reject_nan)  # NaN (not measured) is written as null
    assert doc["mechanisms"] and all(isinstance(m["causal_strength"], float) for m in doc["mechanisms"])
    eff = doc["insights"]["average_effectiveness"]
    assert eff is None or -1 <= eff <= 1
    assert doc["insights"]["effectiveness_note"]
    json.loads(mech.read_text(), parse_constant=_reject_nan)
    # -q: errors only, nothing logged
    assert main([*argv, "--json", str(out), "-q"]) == 0
    assert "INFO" not in capfd.readouterr().err
