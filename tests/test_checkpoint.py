import pickle
import zipfile

import numpy as np
import pytest
import torch

from engine import CheckpointError, OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.tasks import ImageTaskSource, SinusoidTaskSource

FAST = dict(meta_batch_size=2, num_meta_iterations=3, support_shots=2, query_shots=3, num_inner_steps=1, val_episodes=2)


@pytest.fixture(scope="module")
def images(omniglot_dir):
    return ImageTaskSource(omniglot_dir / "images_background_small1.zip", n_way=3)


@pytest.mark.parametrize("algorithm", ["MAML_CAUSAL", "GRADIENT_CAUSAL", "PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL"])
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_round_trip_restores_identical_predictions(tmp_path, images, algorithm, suffix):
    eng = create_one_shot_meta_learning_engine(algorithm=algorithm, hidden_dim=16, conv_channels=8, **FAST)
    eng.meta_train_sync(images)
    path = eng.save_sync(tmp_path / f"ckpt{suffix}")
    loaded = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    assert loaded.config == eng.config.replace(device="cpu") or loaded.config.to_dict() == {
        **eng.config.to_dict(),
        "device": "cpu",
    }
    assert loaded.history.iteration == eng.history.iteration
    task = images.tasks("test", 1, seed=4)[0]
    a = eng.one_shot_adapt_sync(task, seed=1)
    b = loaded.one_shot_adapt_sync(task, seed=1)
    assert a["predictions"] == b["predictions"]
    assert a["adaptation_quality"]["loss"] == pytest.approx(b["adaptation_quality"]["loss"], abs=1e-6)
    for (n1, t1), (n2, t2) in zip(eng.learner.state_dict().items(), loaded.learner.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2)


def test_upload_bytes_round_trip(tmp_path):
    eng = create_one_shot_meta_learning_engine(**FAST)
    eng.meta_train_sync(SinusoidTaskSource())
    path = eng.save_sync(tmp_path / "c.zip")
    other = OneShotMetaLearningEngine()
    other.load_bytes_sync(path.read_bytes(), "c.zip")
    x = np.linspace(-5, 5, 7, dtype=np.float32)[:, None]
    assert torch.equal(other.predict_sync(x), eng.predict_sync(x))
    assert other.checkpoint_name == "c.zip"


def _saved(tmp_path):
    eng = create_one_shot_meta_learning_engine(**FAST)
    eng.meta_train_sync(SinusoidTaskSource())
    return eng.save_sync(tmp_path / "ok")


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("model.safetensors", pickle.dumps(Boom()))
        zf.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match="safetensors"):
        OneShotMetaLearningEngine.from_checkpoint(bad)
    raw = tmp_path / "model.pt"
    raw.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a zip"):
        OneShotMetaLearningEngine.from_checkpoint(raw)


def test_truncated_weights_are_a_clear_error(tmp_path):
    path = _saved(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        OneShotMetaLearningEngine.from_checkpoint(path)


def test_wrong_shapes_and_config_mismatch_are_clear_errors(tmp_path):
    import json

    path = _saved(tmp_path)
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["hidden_dim"] = 80
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        OneShotMetaLearningEngine.from_checkpoint(path)
    meta["config"]["hidden_dim"] = -5
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hidden_dim"):
        OneShotMetaLearningEngine.from_checkpoint(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        OneShotMetaLearningEngine.from_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        OneShotMetaLearningEngine.from_checkpoint(path)


def test_save_over_existing_checkpoint_is_atomic_replace(tmp_path):
    path = _saved(tmp_path)
    eng = OneShotMetaLearningEngine.from_checkpoint(path)
    eng.save_sync(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]
    assert OneShotMetaLearningEngine.from_checkpoint(path).is_trained
