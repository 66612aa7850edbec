import hashlib
import json

import pytest

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.cli import main
from engine.tasks import make_task_source
from tests.fixed_episode_data import copies_layout, write_fixed_zip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An untrained prototypical checkpoint recorded as trained on set A, and a second set B
    (2 images per class) it has never seen."""
    root = tmp_path_factory.mktemp("eval")
    set_a = write_fixed_zip(root / "a.zip", copies_layout(episodes=3, ways=4))
    set_b = write_fixed_zip(root / "b.zip", {f"g{e}": copies_layout(1, 5)["ep0"] for e in range(2)})
    cfg = OneShotMetaLearningConfig(
        algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16, conv_channels=8, n_way=3, query_shots=1, device="cpu"
    )
    eng = OneShotMetaLearningEngine(cfg)
    args = {"path": str(set_a), "n_way": 3, "split_fractions": [0.5, 0.0, 0.5]}
    src = make_task_source("images", **{**args, "split_fractions": (0.5, 0.0, 0.5)})
    eng.initialize_for_source(src)
    eng.source_info = {**src.describe(), "cli_source": "images", "cli_args": args}
    ck = eng.save_sync(root / "ck")
    return {"ck": str(ck), "a": set_a, "b": set_b, "root": root}


def _evaluate(data, *args):
    out = data["root"] / "ev.json"
    out.unlink(missing_ok=True)
    rc = main(["evaluate", "--checkpoint", data["ck"], "--episodes", "3", "--quiet", "--json", str(out), *args])
    return rc, json.loads(out.read_text()) if rc == 0 else None


def test_a_missing_path_is_an_error(data, capsys):
    rc, _ = _evaluate(data, "--path", str(data["root"] / "nonexistent.zip"))
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err
    rc, _ = _evaluate(data, "--fixed-episodes", str(data["root"] / "nonexistent.zip"))
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err


def test_path_without_source_scores_that_data_and_the_json_names_it(data):
    rc, res = _evaluate(data, "--path", str(data["b"]))
    assert rc == 0
    d = res["data"]
    assert d["kind"] == "images" and d["path"] == str(data["b"])
    assert d["sha256"] == hashlib.sha256(data["b"].read_bytes()).hexdigest()
    # new data is all held out: every class of set B is in the scored split
    assert d["classes"] == 10 and d["split_fractions"] == [0.0, 0.0, 1.0] and d["episodes"] == 3
    assert res["settings"]["n_way"] == 3 and res["settings"]["query_shots"] == 1
    rc, own = _evaluate(data)
    assert rc == 0 and own["data"]["path"] == str(data["a"]) and own["data"]["classes"] == 6


def test_shots_and_ways_are_checked_against_the_data(data, capsys):
    rc, _ = _evaluate(data, "--path", str(data["b"]), "--query-shots", "5")
    err = capsys.readouterr().err
    assert rc == 2 and "has 2 images" in err and "need 6 per class" in err and "--query-shots 1" in err
    rc, _ = _evaluate(data, "--path", str(data["b"]), "--n-way", "11")
    assert rc == 2 and "10 classes, fewer than --n-way 11" in capsys.readouterr().err
    rc, res = _evaluate(data, "--path", str(data["b"]), "--n-way", "5", "--support-shots", "1", "--query-shots", "1")
    assert rc == 0 and res["settings"]["n_way"] == 5


def test_data_options_imply_their_kind(data, capsys):
    rc, _ = _evaluate(data, "--num-variables", "4")  # an scm option: scm data, which this model cannot take
    assert rc == 2 and "input shape" in capsys.readouterr().err
    rc, _ = _evaluate(data, "--source", "sinusoid", "--rotations")
    assert rc == 2 and "--rotations is an option of --source images" in capsys.readouterr().err
    rc, res = _evaluate(data, "--path", str(data["b"]), "--mirrors", "--test-time-shifts", "1")
    assert rc == 0 and res["data"]["classes"] == 20 and res["settings"]["test_time_shifts"] == 1


def test_fixed_episodes_from_the_command_line(data, capsys):
    rc, res = _evaluate(data, "--fixed-episodes", str(data["a"]))
    assert rc == 0 and res["accuracy"] == 1.0 and res["episodes"] == 3
    assert res["data"]["sha256"] == hashlib.sha256(data["a"].read_bytes()).hexdigest()
    assert [r["accuracy"] for r in res["per_episode"]] == [1.0, 1.0, 1.0]
    rc, swapped = _evaluate(data, "--fixed-episodes", "--path", str(data["a"]), "--swap-roles")
    assert rc == 0 and swapped["data"]["swap_roles"] is True
    rc, _ = _evaluate(data, "--fixed-episodes", str(data["a"]), "--query-shots", "2")
    assert rc == 2 and "does not apply to --fixed-episodes" in capsys.readouterr().err
    rc, _ = _evaluate(data, "--swap-roles")
    assert rc == 2 and "--fixed-episodes only" in capsys.readouterr().err
