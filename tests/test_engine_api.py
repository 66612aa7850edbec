import asyncio
import threading

import numpy as np
import pytest
import torch

from engine import ConfigError, OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.tasks import SinusoidTaskSource, TabularTaskSource, make_example_csv

FAST = dict(
    meta_batch_size=4,
    num_meta_iterations=6,
    support_shots=5,
    query_shots=5,
    num_inner_steps=1,
    eval_interval=3,
    val_episodes=4,
)


def test_factory_validates():
    with pytest.raises(ConfigError, match="meta_batch_size"):
        create_one_shot_meta_learning_engine(meta_batch_size=0)


def test_meta_train_streams_records_and_curves():
    eng = create_one_shot_meta_learning_engine(**FAST)
    records = []
    history = eng.meta_train_sync(SinusoidTaskSource(), callback=records.append)
    assert [r["done"] for r in records] == list(range(1, 7))
    assert {"train_loss", "train_metric", "val_loss", "val_metric", "eta", "elapsed"} <= set(records[0])
    assert history["iteration"] == list(range(6))
    assert history["val_iteration"] == [0, 3, 5] and len(history["val_metric"]) == 3
    assert history["metric_name"] == "mse" and eng.is_trained
    # a second call continues the same curves
    eng.meta_train_sync(SinusoidTaskSource())
    assert eng.history.iteration == list(range(12))


def test_stop_signal_stops_between_iterations():
    eng = create_one_shot_meta_learning_engine(**{**FAST, "num_meta_iterations": 1000})
    stop = threading.Event()

    def cb(record):
        if record["done"] == 3:
            stop.set()

    history = eng.meta_train_sync(SinusoidTaskSource(), callback=cb, stop=stop)
    assert len(history["iteration"]) == 3 and history["stopped_early"]
    assert "stopped by request" in history["message"]


def test_non_finite_loss_stops_and_keeps_last_good_weights():
    eng = create_one_shot_meta_learning_engine(
        **{**FAST, "num_meta_iterations": 50, "inner_lr": 10.0, "outer_lr": 1.0, "grad_clip": 0.0}
    )
    src = SinusoidTaskSource(amplitude_range=(1e30, 1e30))
    history = eng.meta_train_sync(src)
    assert history["stopped_early"] and "not finite" in history["message"]
    assert all(torch.isfinite(p).all() for p in eng.learner.parameters())


def test_one_shot_adapt_result_and_trace():
    eng = create_one_shot_meta_learning_engine(**FAST)
    src = SinusoidTaskSource()
    eng.meta_train_sync(src)
    task = src.tasks("test", 1, seed=0)[0]
    r = eng.one_shot_adapt_sync(task)
    assert r["adaptation_time"] > 0 and r["steps"] == eng.config.adaptation_steps
    assert set(r["adaptation_quality"]) == {"loss", "mse", "num_query"}
    assert len(r["trace"]) == r["steps"] + 1 and r["trace"][-1] < r["trace"][0]
    assert len(r["predictions"]) == r["adaptation_quality"]["num_query"] == 5
    assert len(r["explanation"]["mechanism_shift"]) == eng.model.num_mechanisms
    assert "mechanism" in r["explanation"]["text"]
    assert eng.get_adaptation_trace(task) == r["trace"]
    # explicit one-point support and query sets
    x = np.array([[1.0]], dtype=np.float32)
    r1 = eng.one_shot_adapt_sync(task, support_data=(x, task.function(x)), query_data=(x, task.function(x)))
    assert r1["adaptation_quality"]["num_query"] == 1
    pred = eng.predict_sync(np.zeros((3, 1), dtype=np.float32))
    assert pred.shape == (3, 1)


def test_coroutines_are_the_sync_twins():
    async def run():
        eng = create_one_shot_meta_learning_engine(**FAST)
        src = SinusoidTaskSource()
        await eng.meta_train(src)
        return await eng.one_shot_adapt(src.tasks("test", 1, seed=0)[0])

    result = asyncio.run(run())
    assert "adaptation_time" in result


@pytest.mark.parametrize("algorithm", ["PROTOTYPICAL_CAUSAL", "RELATION_CAUSAL"])
def test_embedding_learners_refuse_regression(algorithm):
    eng = create_one_shot_meta_learning_engine(algorithm=algorithm)
    with pytest.raises(ValueError, match="classification method"):
        eng.meta_train_sync(SinusoidTaskSource())


def test_tabular_classification_gets_input_gates_and_trains(tmp_path):
    src = TabularTaskSource(make_example_csv(), target_column="failure", task_column="plant")
    eng = create_one_shot_meta_learning_engine(**{**FAST, "support_shots": 2, "query_shots": 3})
    eng.meta_train_sync(src)
    assert eng.model.has_input_gates and eng.task_type == "classification"
    r = eng.one_shot_adapt_sync(src.tasks("test", 1, seed=0)[0])
    assert 0 <= r["adaptation_quality"]["accuracy"] <= 1


def test_predict_before_initialize_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not initialised"):
        OneShotMetaLearningEngine().predict_sync(np.zeros((1, 1)))
