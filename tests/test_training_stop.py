"""Stop acts inside a meta-training iteration (between tasks and inner steps), and an
interrupted iteration changes no weight."""

from __future__ import annotations

import time

import pytest
import torch

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.stop import Interrupted, check_stop, stop_checks
from engine.tasks import SinusoidTaskSource, make_task_source


class StopAfter:
    """A stop signal that turns on after ``n`` checks (the loop's own check is the first)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.n


def test_check_stop_raises_only_inside_stop_checks_with_the_signal_set():
    check_stop()  # no active signal: nothing happens
    with stop_checks(lambda: False):
        check_stop()
    with stop_checks(lambda: True), pytest.raises(Interrupted):
        check_stop()


@pytest.mark.parametrize(
    "make",
    [
        lambda: (SinusoidTaskSource(), OneShotMetaLearningConfig(hidden_dim=16, num_inner_steps=5, device="cpu")),
        lambda: (
            make_task_source("images", n_way=3),
            OneShotMetaLearningConfig(hidden_dim=16, conv_channels=8, n_way=3, num_inner_steps=2, device="cpu"),
        ),
    ],
    ids=["vmapped-mlp", "conv4-task-by-task"],
)
def test_stop_inside_the_first_iteration_leaves_the_weights_untouched(make):
    src, cfg = make()
    eng = OneShotMetaLearningEngine(cfg.replace(num_meta_iterations=5, meta_batch_size=4, val_episodes=1))
    eng.initialize_for_source(src)
    before = {k: v.detach().clone() for k, v in eng.model.state_dict().items()}
    stop = StopAfter(2)  # the loop's check passes, then the step's first inner check stops it
    history = eng.meta_train_sync(src, stop=stop)
    assert history["stopped_early"] and history["iteration"] == []
    assert "during iteration 1" in history["message"]
    after = eng.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_stop_of_a_large_model_acts_within_about_a_second():
    src = SinusoidTaskSource()
    cfg = OneShotMetaLearningConfig(hidden_dim=1024, num_inner_steps=20, meta_batch_size=8, device="cpu")
    eng = OneShotMetaLearningEngine(cfg.replace(num_meta_iterations=1000, val_episodes=1))
    eng.initialize_for_source(src)
    t0 = time.monotonic()
    deadline = t0 + 0.3  # ask to stop 0.3 s in, in the middle of an iteration of this model
    history = eng.meta_train_sync(src, stop=lambda: time.monotonic() > deadline)
    assert history["stopped_early"]
    assert time.monotonic() - deadline < 1.5
