import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import CheckpointError, OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.checkpoint import OPTIMIZER
from engine.tasks import SinusoidTaskSource


@pytest.fixture
def saved(tmp_path):
    eng = create_one_shot_meta_learning_engine(
        num_meta_iterations=2, meta_batch_size=2, val_episodes=2, hidden_dim=8, device="cpu"
    )
    eng.meta_train_sync(SinusoidTaskSource())
    return eng, eng.save_sync(tmp_path / "ck")


def test_the_adam_state_round_trips(saved):
    eng, path = saved
    back = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    want, got = eng.optimizer.state_dict(), back.optimizer.state_dict()
    assert [{**g, "betas": tuple(g["betas"])} for g in got["param_groups"]] == want["param_groups"]
    assert want["state"].keys() == got["state"].keys()
    for index, slots in want["state"].items():
        for key, value in slots.items():
            torch.testing.assert_close(got["state"][index][key], value)
    back.set_config(outer_lr=0.0005)
    assert [g["lr"] for g in back.optimizer.param_groups] == [0.0005]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda t: {**t, "0.exp_avg": torch.full_like(t["0.exp_avg"], float("nan"))}, "NaN or infinite"),
        (lambda t: {**t, "0.exp_avg": torch.zeros(3, 3)}, "does not match the model's parameters"),
        (lambda t: {**t, "999.exp_avg": torch.zeros(1)}, "does not match the model's parameters"),
    ],
)
def test_a_tampered_optimizer_state_is_refused(saved, tamper, expected):
    _, path = saved
    tensors = load_file(path / OPTIMIZER)
    save_file(tamper(tensors), path / OPTIMIZER)
    with pytest.raises(CheckpointError, match=expected):
        OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
