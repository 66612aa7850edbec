"""ui.jobs and ui.direction: worker jobs (training, discovery, the causal direction
experiment), their progress as the pages show it, and the belief curves."""

from __future__ import annotations

import pytest

from engine import OneShotMetaLearningEngine
from engine.tasks import SinusoidTaskSource
from ui.config_form import build_config, plain_baseline, preset_values
from ui.direction import belief_curves, live_belief
from ui.jobs import (
    direction_job,
    discovery_job,
    empty_history,
    extend_history,
    format_seconds,
    progress_of,
    training_job,
    worker_progress,
)
from ui.worker import DONE, STOPPED, Worker


def test_history_from_records_and_progress():
    recs = [
        {
            "iteration": 0,
            "train_loss": 2.0,
            "train_metric": 2.0,
            "metric_name": "mse",
            "val_loss": 1.5,
            "val_metric": 1.5,
            "run": "a",
            "done": 1,
            "total": 4,
            "elapsed": 0.5,
            "eta": 1.5,
        },
        {
            "iteration": 1,
            "train_loss": 1.0,
            "train_metric": 1.0,
            "metric_name": "mse",
            "val_loss": None,
            "val_metric": None,
            "run": "a",
            "done": 2,
            "total": 4,
            "elapsed": 1.0,
            "eta": 1.0,
        },
        {"iteration": 0, "train_loss": 9.0, "train_metric": 9.0, "metric_name": "mse", "run": "b"},
    ]
    h = extend_history(empty_history(), recs, "a")
    assert h["iteration"] == [0, 1] and h["val_iteration"] == [0] and h["metric_name"] == "mse"
    frac, text = progress_of(recs[1])
    assert frac == 0.5 and "2 / 4" in text and "ETA 1 s" in text
    assert progress_of(None) == (0.0, "starting…")
    assert format_seconds(3725) == "1 h 02 min" and format_seconds(75) == "1 min 15 s"


def test_training_job_runs_main_then_baseline_and_stops():
    src = SinusoidTaskSource()
    cfg = build_config(preset_values("sinusoid")).replace(num_meta_iterations=3, val_episodes=2)
    eng, beng = OneShotMetaLearningEngine(cfg), OneShotMetaLearningEngine(plain_baseline(cfg))
    w = Worker()
    w.start(training_job(eng, src, "causal", (beng, "plain")))
    assert w.join(60) and w.status == DONE, w.error
    assert set(w.result) == {"causal", "plain"}
    assert [r["run"] for r in w.records()] == ["causal"] * 3 + ["plain"] * 3
    assert eng.is_trained and beng.is_trained

    long = OneShotMetaLearningEngine(cfg.replace(num_meta_iterations=100_000))
    w.start(training_job(long, src, "long"))
    while w.num_records() < 2:
        pass
    assert w.stop(timeout=2) and w.status == STOPPED
    assert long.history.stopped_early


def test_direction_job_runs_the_engine_experiment_and_draws_beliefs():
    w = Worker()
    w.start(direction_job(20, 2, 5))
    assert w.join(30) and w.status == DONE, w.error
    curves = belief_curves(w.result)
    assert curves["episodes"] == [float(e) for e in range(1, 21)]
    assert len(curves["median"]) == 20 and len(curves["curves"]) == 2 and len(curves["curves"][0]) == 20
    assert curves["median"] == pytest.approx(w.result["median"])
    assert w.latest["done"] == 20 and w.latest["fraction"] == 1.0 and "median σ(γ)" in w.latest["message"]
    live = live_belief(w.records())
    assert len(live["curves"]) == 2 and live["episodes"][-1] == 20.0
    assert live["curves"][0][-1] == pytest.approx(curves["curves"][0][-1])


def test_belief_curves_of_a_run_stopped_before_its_first_episode():
    assert belief_curves({"sigma": [], "median": []}) is None


def test_discovery_job_passes_progress_stop_and_held_out_tasks():
    seen = {}

    class Eng:
        def discover_causal_patterns_sync(self, tasks, progress=None, stop=None, held_out=None):
            seen.update(tasks=tasks, stop=stop is not None, held_out=held_out)
            progress(0.5)
            return ["found"]

    w = Worker()
    w.start(discovery_job(Eng(), ["t1", "t2"], ["h1"]))
    w.join(5)
    assert w.result == ["found"] and w.latest["fraction"] == 0.5
    assert seen == {"tasks": ["t1", "t2"], "stop": True, "held_out": ["h1"]}


def test_worker_progress_counts_the_eta_down_from_the_latest_record():
    now = [100.0]
    w = Worker(clock=lambda: now[0])
    w.report({"done": 10, "total": 100, "elapsed": 10.0, "eta": 90.0})
    now[0] += 30.0  # no record for 30 s: every display at this moment says the same
    frac, text = worker_progress(w)
    assert frac == 0.1 and "ETA 1 min 00 s" in text and "40 s elapsed" in text
    now[0] += 100.0
    assert "ETA 0 s" in worker_progress(w)[1]
