"""A shared view of an engine (``OneShotMetaLearningEngine.shared_view``): many users adapt one model
read-only, each keeps its own adaptation, and the first write gives a view its own copy (copy on write)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.ready_models import load_ready_model
from engine.tasks import make_task_source


@pytest.fixture(scope="module")
def scm_original():
    return load_ready_model("scm_mechanisms")


def _snapshot(eng: OneShotMetaLearningEngine) -> dict:
    return {
        "weights": {k: v.clone() for k, v in eng.learner.state_dict().items()},
        "config": eng.config.to_dict(),
        "mechanisms": eng.store.as_dicts(),
        "iterations": len(eng.history.iteration),
    }


def _assert_unchanged(eng: OneShotMetaLearningEngine, before: dict) -> None:
    now = _snapshot(eng)
    assert now["config"] == before["config"]
    assert now["mechanisms"] == before["mechanisms"]
    assert now["iterations"] == before["iterations"]
    for name, tensor in before["weights"].items():
        assert torch.equal(now["weights"][name], tensor), name


def test_views_adapt_without_copying_and_each_keeps_its_own_adaptation():
    original = load_ready_model("sinusoid_metasgd")
    before = _snapshot(original)
    tasks = make_task_source("sinusoid").tasks("test", 2, seed=5)
    a, b = original.shared_view(), original.shared_view()
    a.one_shot_adapt_sync(tasks[0], seed=0)
    b.one_shot_adapt_sync(tasks[1], seed=0)
    for name, tensor in original.learner.state_dict().items():  # no tensor copied
        for view in (a, b):
            assert view.learner.state_dict()[name].data_ptr() == tensor.data_ptr(), name
    assert a.is_shared_view and b.is_shared_view
    x = np.linspace(-5, 5, 7)[:, None]
    on_a, on_b = a.predict_sync(x), b.predict_sync(x)
    assert not torch.allclose(on_a, on_b)  # two tasks, two adaptations
    solo = original.shared_view()
    solo.one_shot_adapt_sync(tasks[0], seed=0)
    assert torch.equal(solo.predict_sync(x), on_a)  # b's adaptation did not leak into a's
    with pytest.raises(KeyError):
        a.get_adaptation_trace(tasks[1].name)
    _assert_unchanged(original, before)


def test_views_adapting_at_once_in_threads_match_one_at_a_time():
    original = load_ready_model("sinusoid_metasgd")
    tasks = make_task_source("sinusoid").tasks("test", 8, seed=9)
    x = np.linspace(-5, 5, 11)[:, None]

    def adapt_and_predict(task):
        view = original.shared_view()
        view.one_shot_adapt_sync(task, seed=1)
        return view.predict_sync(x)

    alone = [adapt_and_predict(t) for t in tasks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(adapt_and_predict, tasks))
    for one, other in zip(alone, together, strict=True):
        # equal up to float summation order (torch's own threads); a view seeing another's tensors is off by ~1
        torch.testing.assert_close(one, other, rtol=0, atol=1e-5)


def test_training_a_view_copies_first_and_leaves_the_shared_model_as_it_was():
    original = load_ready_model("sinusoid_metasgd")
    before = _snapshot(original)
    view = original.shared_view()
    view.set_config(num_meta_iterations=2, meta_batch_size=2)  # two more iterations
    assert not view.is_shared_view
    head = "model.head.weight"
    assert view.learner.state_dict()[head].data_ptr() != original.learner.state_dict()[head].data_ptr()
    view.meta_train_sync(make_task_source("sinusoid"))
    assert len(view.history.iteration) == before["iterations"] + 2
    changed = [k for k, v in view.learner.state_dict().items() if not torch.equal(v, before["weights"][k])]
    assert changed, "the view trained"
    _assert_unchanged(original, before)


@pytest.mark.parametrize(
    "write",
    [
        lambda eng: eng.set_test_time(transductive_steps=3),
        lambda eng: eng.set_transfer_priors({0: 2.5}),
        lambda eng: eng.apply_causal_priors(),
        lambda eng: eng.import_mechanisms([]),
        lambda eng: (eng.update_mechanisms_sync(make_task_source("scm").tasks("test", 1)[0]),
                     eng.refine_mechanisms_online_sync()),
    ],
    ids=["test time", "manual priors", "apply priors", "import mechanisms", "online refinement"],
)  # fmt: skip
def test_every_write_on_a_view_leaves_the_shared_model_and_its_mechanisms_alone(scm_original, write):
    before = _snapshot(scm_original)
    view = scm_original.shared_view()
    write(view)
    assert not view.is_shared_view
    _assert_unchanged(scm_original, before)


def test_an_engine_of_its_own_is_never_a_view():
    eng = OneShotMetaLearningEngine(OneShotMetaLearningConfig())
    assert not eng.is_shared_view
