"""The worker-process pool: results, a fair FIFO queue with positions, one job per session, Stop
of queued and running jobs (also one that ignores the request), crashes, closed sessions."""

from __future__ import annotations

import os
import time

import pytest

from ui.job_pool import DONE, ERROR, QUEUED, RUNNING, STOPPED, JobPool, JobRefused


# Work functions run in spawned processes: module level, so they pickle by reference.
def count_work(n: int, delay: float, worker) -> int:
    for i in range(n):
        if worker.should_stop():
            break
        worker.report({"done": i + 1, "total": n})
        time.sleep(delay)
    return n


def stubborn_work(seconds: float, worker) -> str:
    time.sleep(seconds)  # like one long backward pass: never looks at should_stop
    return "finished"


def crash_work(worker) -> None:
    os._exit(3)


def fail_work(worker) -> None:
    raise ValueError("the value 7 is out of range")


def pid_work(worker) -> int:
    return os.getpid()


def wait_running(job, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while job.status == QUEUED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == RUNNING, job.status


@pytest.fixture(scope="module")
def pool():
    p = JobPool(workers=1, stop_grace=1.0, heartbeat_timeout=600)
    yield p
    p.shutdown()


def test_a_job_runs_in_another_process_and_reports(pool):
    job = pool.submit("s1", count_work, 3, 0.01, label="count")
    assert job.join(180)
    assert job.status == DONE and job.result == 3
    assert [r["done"] for r in job.records()] == [1, 2, 3]
    pid = pool.submit("s1", pid_work, label="pid")
    assert pid.join(180) and pid.result != os.getpid()
    assert pool.expected_duration("count") is not None


def test_fifo_queue_positions_eta_and_one_job_per_session(pool):
    first = pool.submit("a", count_work, 400, 0.01, label="count")
    second = pool.submit("b", count_work, 2, 0.0, label="count")
    third = pool.submit("c", count_work, 2, 0.0, label="count")
    with pytest.raises(JobRefused, match="already has a job"):
        pool.submit("b", count_work, 1, 0.0)
    wait_running(first)
    assert first.position() is None
    assert (second.status, second.position(), third.position()) == (QUEUED, 1, 2)
    assert third.eta_start() >= second.eta_start() >= 0  # from the measured duration of "count" jobs
    first.stop(timeout=30)
    assert second.join(180) and third.join(180)
    assert second.started_at <= third.started_at  # first come, first served
    assert (first.status, second.status, third.status) == (STOPPED, DONE, DONE)


def test_stop_while_queued_drops_the_job_at_once(pool):
    running = pool.submit("x", count_work, 400, 0.01)
    waiting = pool.submit("y", count_work, 5, 0.0)
    wait_running(running)
    while running.num_records() == 0:
        time.sleep(0.05)
    assert waiting.stop(timeout=1)  # no worker involved: ended before stop returns
    assert waiting.status == STOPPED and waiting.position() is None and waiting.records() == []
    running.stop(timeout=30)
    assert running.status == STOPPED and running.stop_reason == "stopped by request"
    assert 0 < running.num_records() < 400


def test_a_job_that_ignores_stop_is_ended_by_killing_its_process_and_the_slot_recovers(pool):
    job = pool.submit("z", stubborn_work, 120.0)
    wait_running(job)
    assert job.stop(timeout=30)  # 120 s of work, ended by the kill after the grace second
    assert job.status == STOPPED
    after = pool.submit("z", count_work, 1, 0.0)
    assert after.join(180) and after.status == DONE


def test_a_crashed_worker_fails_its_job_clearly_and_the_pool_recovers(pool):
    job = pool.submit("c1", crash_work)
    assert job.join(180)
    assert job.status == ERROR and "ended unexpectedly (exit code 3)" in job.error
    again = pool.submit("c1", count_work, 2, 0.0)
    assert again.join(180) and again.status == DONE


def test_a_failing_job_reports_its_message(pool):
    job = pool.submit("f1", fail_work)
    assert job.join(180)
    assert job.status == ERROR and job.error == "the value 7 is out of range"


def test_a_closed_sessions_job_ends():
    p = JobPool(workers=1, heartbeat_timeout=1.0)
    try:
        job = p.submit("gone", count_work, 10_000, 0.01)
        assert job.join(180)
        assert job.status == STOPPED and "no heartbeat" in job.stop_reason
    finally:
        p.shutdown()


def test_a_pooled_training_job_trains_the_servers_engine_in_place():
    """What the page gives a job (the engine) is what it finds trained afterwards, as with a thread."""
    from engine import OneShotMetaLearningEngine
    from engine.tasks import SinusoidTaskSource
    from ui.config_form import build_config, preset_values
    from ui.jobs import training_job
    from ui.pooled_worker import PooledWorker

    p = JobPool(workers=1, sync_types=(OneShotMetaLearningEngine,))
    try:
        src = SinusoidTaskSource()
        cfg = build_config(preset_values("sinusoid")).replace(num_meta_iterations=3, val_episodes=2)
        eng = OneShotMetaLearningEngine(cfg)
        w = PooledWorker(lambda: p)
        w.start(training_job(eng, src, "causal"), label="training")
        assert w.join(180) and w.status == DONE, w.error
        assert [r["run"] for r in w.records()] == ["causal"] * 3
        assert eng.is_trained and len(eng.history.iteration) == 3
        assert w.result["causal"]["iteration"] == eng.history.iteration
        assert w.snapshot()["generation"] == 1 and w.position() is None
    finally:
        p.shutdown()


def test_workers_never_run_the_page_script_that_is_main(tmp_path, monkeypatch):
    """Under Streamlit, ``__main__`` is the page script being run; a spawned worker must not re-run it."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('a page script ran in a worker process')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    p = JobPool(workers=1)
    try:
        job = p.submit("m", count_work, 1, 0.0)
        assert job.join(180) and job.status == DONE, job.error
        assert sys.modules["__main__"] is page
    finally:
        p.shutdown()
