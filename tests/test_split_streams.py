"""Each split draws from its own seed stream: the first held-out task of a seed is never the first
training, validation or preview task of that seed, for every task source."""

from __future__ import annotations

import numpy as np
import pytest

from engine.tasks import EXAMPLE_CSV, SCMTaskSource, SinusoidTaskSource, TabularTaskSource, make_task_source, split_rng
from ui.episodes import image_episode, sinusoid_preview


def _fingerprint(task) -> tuple:
    """What makes a task that task: its name, its truth, and one episode drawn with a fixed rng."""
    ep = task.sample_episode(1, 1, np.random.default_rng(123))
    return (task.name, repr(task.truth), ep.support_x.numpy().round(6).tobytes())


SOURCES = {
    "sinusoid": SinusoidTaskSource,
    "scm_regression": SCMTaskSource,
    "scm_classification": lambda: SCMTaskSource(task_type="classification"),
    "images": lambda: make_task_source("images"),
    "tabular": lambda: TabularTaskSource(EXAMPLE_CSV, "yield", "plant"),
}


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_first_test_task_differs_from_first_train_val_and_preview_task(name, seed):
    src = SOURCES[name]()
    test = _fingerprint(src.tasks("test", 1, seed=seed)[0])
    for split in ("train", "val"):
        assert _fingerprint(src.tasks(split, 1, seed=seed)[0]) != test, split
    episodes = {s: src.episodes(s, 1, 1, 1, seed=seed)[0] for s in ("train", "val", "test")}
    assert not np.array_equal(episodes["test"].support_x.numpy(), episodes["train"].support_x.numpy())
    assert not np.array_equal(episodes["test"].support_x.numpy(), episodes["val"].support_x.numpy())
    if name == "sinusoid":  # the Tasks page's preview
        curves, _ = sinusoid_preview(src, 1, 5, seed=seed)
        assert curves[0][0] != "A={:.2f}, phase={:.2f}".format(*_amp_phase(src.tasks("test", 1, seed=seed)[0]))
    if name == "images":
        preview, _ = image_episode(src, 1, 1, "train", seed)
        assert _fingerprint(preview) != test


def _amp_phase(task) -> tuple[float, float]:
    return task.amplitude, task.phase


def test_split_streams_are_reproducible_and_apart():
    a = split_rng(0, "test").random(3)
    assert np.array_equal(a, split_rng(0, "test").random(3))
    assert not np.array_equal(a, split_rng(0, "train").random(3))
    assert not np.array_equal(a, np.random.default_rng(0).random(3))
    assert not np.array_equal(split_rng(0, "train").random(3), np.random.default_rng([0, 0]).random(3))
