"""The ready-trained models shipped in assets/models: each is there, loads, is for its task kind and does
its job on held-out data; the command that makes them refuses unknown names."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.sinusoid_quality import heldout_mse
from engine.cli import main
from engine.ready_models import READY_MODELS, load_ready_model
from engine.tasks import OMNIGLOT_DIR, make_task_source
from ui.ready import READY_FOR_KIND

# The sinusoid_quality benchmark measured 0.35 at 5 shots over 600 tasks for this recipe; a
# model that fails to train sits near the un-adapted error (about 3 to 4).
SINUSOID_5SHOT_BOUND = 0.6


@pytest.mark.parametrize("name", list(READY_MODELS))
def test_every_ready_model_is_shipped_loads_and_is_for_its_task_kind(name):
    model = READY_MODELS[name]
    assert model.exists(), f"{model.path} lacks model.safetensors or config.json"
    eng = load_ready_model(name)
    assert eng.is_trained
    # saved by save_ready: restoring Adam state imports torch._dynamo, seconds on the app's first page
    assert eng.optimizer is None and not (model.path / "optimizer.safetensors").exists()
    assert (eng.source_info or {}).get("name") == model.source
    assert READY_FOR_KIND[model.source] == name  # the app uses it for its kind


def test_sinusoid_model_adapts_from_five_points_far_below_the_unadapted_error():
    eng = load_ready_model("sinusoid_metasgd")
    source = make_task_source("sinusoid")
    before = float(np.mean(heldout_mse(eng, source, 5, 50, steps=0)))
    after = float(np.mean(heldout_mse(eng, source, 5, 50)))
    assert after < SINUSOID_5SHOT_BOUND, after
    assert after < 0.25 * before, (before, after)


def test_omniglot_model_labels_unseen_alphabets_one_shot_well_above_chance():
    eng = load_ready_model("omniglot_proto")
    small2 = OMNIGLOT_DIR / "images_background_small2.zip"
    seen = set((eng.source_info or {}).get("groups", []))
    # small2 shares alphabets (Greek, Latin) with small1: keep the ones the model never saw
    groups = [g for g in make_task_source("images", path=small2).groups if g not in seen]
    assert len(groups) >= 2, groups
    unseen = make_task_source("images", path=small2, n_way=5, split_fractions=(0.0, 0.0, 1.0), include_groups=groups)
    eng.set_config(n_way=5, support_shots=1, query_shots=5)
    result = eng.evaluate_sync(unseen, "test", episodes=50, seed=0)
    assert result["accuracy"] > 0.6, result  # chance: 0.2


def test_scm_model_carries_its_discovered_mechanisms():
    eng = load_ready_model("scm_mechanisms")
    assert len(eng.store) > 0
    insights = eng.get_mechanism_insights()
    assert insights, "the mechanisms page has something to show"
    # it is for the Tasks page's default SCM, so a fresh session choosing SCM tasks gets it
    default = make_task_source("scm")
    info = eng.source_info or {}
    assert all(info.get(k) == v for k, v in default.describe().items())


def test_ready_models_command_refuses_an_unknown_name_before_making_anything(tmp_path, capsys):
    code = main(["ready-models", "--only", "sinusoid_metasgd", "no_such_model", "--out-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no_such_model" in err and "sinusoid_metasgd" in err and "omniglot_proto" in err
    assert list(tmp_path.iterdir()) == []


def test_ready_models_command_writes_a_loadable_checkpoint_and_what_it_measured(tmp_path, monkeypatch):
    import json

    from engine import ready_model_recipes
    from engine.ready_models import ReadyModel

    monkeypatch.setattr(ready_model_recipes, "SINUSOID_ITERATIONS", 3)
    monkeypatch.setattr(ready_model_recipes, "SINUSOID_EVAL_TASKS", 4)
    assert main(["ready-models", "--only", "sinusoid_metasgd", "--out-root", str(tmp_path), "-q"]) == 0
    record = json.loads((tmp_path / "sinusoid_metasgd" / "ready.json").read_text())
    assert record["iterations"] == 3 and record["quality"]["mse_5shot"]["tasks"] == 4
    assert record["bytes"] > 0 and record["command"].endswith("--only sinusoid_metasgd")
    monkeypatch.setattr(ReadyModel, "path", property(lambda self: tmp_path / self.name))
    assert len(load_ready_model("sinusoid_metasgd").history.iteration) == 3
