"""Sinusoid task source: the MAML regression benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.tasks import SinusoidTask, SinusoidTaskSource, TaskError, make_task_source


def test_source_metadata() -> None:
    src = SinusoidTaskSource()
    assert src.name == "sinusoid"
    assert src.task_type == "regression"
    assert src.input_shape == (1,)
    assert src.output_dim == 1
    assert src.describe()["amplitude_range"] == [0.1, 5.0]


def test_episode_shapes_dtypes_and_values() -> None:
    src = SinusoidTaskSource()
    rng = np.random.default_rng(0)
    task = src.sample_task("train", rng)
    assert isinstance(task, SinusoidTask)
    assert 0.1 <= task.truth["amplitude"] <= 5.0
    assert 0.0 <= task.truth["phase"] <= math.pi
    ep = task.sample_episode(5, 10, rng)
    assert ep.support_x.shape == (5, 1) and ep.support_y.shape == (5, 1)
    assert ep.query_x.shape == (10, 1) and ep.query_y.shape == (10, 1)
    for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y):
        assert t.dtype == torch.float32
    assert ep.task_type == "regression" and ep.num_classes is None
    assert float(ep.support_x.min()) >= -5.0 and float(ep.support_x.max()) <= 5.0
    expected = task.truth["amplitude"] * np.sin(ep.query_x.numpy() - task.truth["phase"])
    np.testing.assert_allclose(ep.query_y.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(task.function(ep.query_x.numpy()), expected, atol=1e-5)


def test_reproducible_and_rng_dependent() -> None:
    src = SinusoidTaskSource()
    a = src.episodes("train", 3, 2, 4, seed=7)
    b = src.episodes("train", 3, 2, 4, seed=7)
    c = src.episodes("train", 3, 2, 4, seed=8)
    for ea, eb in zip(a, b, strict=True):
        assert torch.equal(ea.support_x, eb.support_x)
        assert torch.equal(ea.query_y, eb.query_y)
    assert not torch.equal(a[0].support_x, c[0].support_x)


def test_amplitude_and_phase_cover_their_ranges() -> None:
    tasks = SinusoidTaskSource().tasks("val", 400, seed=1)
    amps = np.array([t.amplitude for t in tasks])
    phases = np.array([t.phase for t in tasks])
    assert amps.min() < 0.5 and amps.max() > 4.5
    assert phases.min() < 0.3 and phases.max() > math.pi - 0.3


def test_custom_ranges_and_errors() -> None:
    src = SinusoidTaskSource(amplitude_range=(1.0, 1.0), phase_range=(0.0, 0.0), x_range=(0, 1))
    ep = src.sample_task("test", np.random.default_rng(0)).sample_episode(3, 3, np.random.default_rng(1))
    assert float(ep.support_x.min()) >= 0.0 and float(ep.support_x.max()) <= 1.0
    with pytest.raises(TaskError, match="x_range"):
        SinusoidTaskSource(x_range=(1, -1))
    with pytest.raises(TaskError, match="split"):
        src.sample_task("training", np.random.default_rng(0))
    with pytest.raises(TaskError, match="support_shots"):
        src.sample_task("train", np.random.default_rng(0)).sample_episode(0, 3, np.random.default_rng(0))


def test_factory() -> None:
    assert isinstance(make_task_source("sinusoid"), SinusoidTaskSource)
    with pytest.raises(TaskError, match="valid names"):
        make_task_source("mnist")
    with pytest.raises(TaskError, match="bad arguments"):
        make_task_source("sinusoid", amplitude=3)
