"""ui.worker: start / stop / records / status / errors / heartbeat of the session's worker."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ui.worker import DONE, ERROR, IDLE, OS_THREAD_NAME, RUNNING, STOPPED, Worker, WorkerStopped, progress_record


def _loop(worker: Worker, n: int = 10_000, delay: float = 0.005) -> int:
    i = 0
    for i in range(n):
        if worker.should_stop():
            break
        worker.report({"i": i, "done": i + 1, "total": n})
        time.sleep(delay)
    return i


def test_runs_to_completion_with_result_and_records():
    w = Worker()
    assert w.status == IDLE and not w.running and w.latest is None
    w.start(lambda wk: _loop(wk, n=5, delay=0.0) and "finished")
    assert w.join(5)
    assert w.status == DONE and w.result == "finished" and w.error is None
    assert [r["i"] for r in w.records()] == [0, 1, 2, 3, 4]
    assert w.latest == {"i": 4, "done": 5, "total": 5}
    assert w.records(3) == [{"i": 3, "done": 4, "total": 5}, {"i": 4, "done": 5, "total": 5}]
    assert not w.running and w.generation == 1


def test_stop_stops_within_a_second():
    w = Worker()
    w.start(_loop)
    time.sleep(0.05)
    assert w.status == RUNNING and w.running
    t0 = time.monotonic()
    assert w.stop(timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert w.status == STOPPED and w.stop_reason == "stopped by request"
    n = w.num_records()
    time.sleep(0.05)
    assert w.num_records() == n  # nothing more after the stop


def test_second_start_while_running_is_refused_and_restart_resets():
    w = Worker()
    w.start(_loop, label="first")
    with pytest.raises(RuntimeError, match="already running"):
        w.start(_loop)
    w.stop(timeout=2)
    w.start(lambda wk: _loop(wk, n=2, delay=0.0), label="second")
    assert w.join(5)
    assert w.label == "second" and w.status == DONE and len(w.records()) == 2 and w.generation == 2


def test_error_becomes_a_message():
    w = Worker()

    def fail(wk):
        wk.report({"i": 0})
        raise ValueError("inner_lr must be in [1e-06, 10]; got 50")

    w.start(fail)
    w.join(5)
    assert w.status == ERROR
    assert w.error == "inner_lr must be in [1e-06, 10]; got 50"
    assert w.records() == [{"i": 0}]


def test_unexpected_error_names_its_type():
    w = Worker()
    w.start(lambda wk: 1 / 0)
    w.join(5)
    assert w.status == ERROR and w.error.startswith("ZeroDivisionError")


def test_heartbeat_timeout_stops_the_job():
    now = [0.0]
    w = Worker(heartbeat_timeout=30.0, clock=lambda: now[0])
    started = threading.Event()

    def job(wk):
        started.set()
        while not wk.should_stop():
            time.sleep(0.002)
        return "left"

    w.start(job)
    started.wait(2)
    now[0] = 20.0
    w.heartbeat()  # the page polled at t = 20
    now[0] = 45.0  # 25 s since the last poll: still alive
    time.sleep(0.02)
    assert w.running
    now[0] = 51.0  # 31 s since the last poll: the session is gone
    assert w.join(2)
    assert w.status == STOPPED and "heartbeat" in w.stop_reason


def test_worker_is_a_stop_signal_for_the_engine():
    w = Worker()
    assert w.is_set() is False
    w.stop()
    assert w.is_set() is True


def test_progress_callback_records_and_raises_to_stop():
    w = Worker()

    def job(wk):
        cb = wk.progress_callback()
        for i in range(100_000):
            cb(i, 100_000)
            time.sleep(0.001)

    w.start(job)
    time.sleep(0.05)
    w.stop(timeout=2)
    assert w.status == STOPPED
    rec = w.latest
    assert rec["done"] < 100_000 and 0.0 <= rec["fraction"] < 1.0


def test_worker_stopped_exception_ends_as_stopped():
    w = Worker()

    def job(wk):
        raise WorkerStopped()

    w.start(job)
    w.join(2)
    assert w.status == STOPPED


def test_snapshot_is_consistent():
    w = Worker()
    w.start(lambda wk: _loop(wk, n=3, delay=0.0), label="snap")
    w.join(5)
    snap = w.snapshot()
    assert snap["status"] == DONE and snap["num_records"] == 3 and snap["label"] == "snap"
    assert snap["latest"]["i"] == 2 and snap["running"] is False


@pytest.mark.parametrize(
    "args,kwargs,expected",
    [
        ((0.25,), {}, {"fraction": 0.25}),
        ((3, 12), {}, {"done": 3, "total": 12, "fraction": 0.25}),
        (({"done": 1, "total": 4, "stage": "bootstrap"},), {}, {"done": 1, "total": 4, "stage": "bootstrap"}),
        ((), {"fraction": 2.0}, {"fraction": 1.0}),
        (("measuring",), {}, {"message": "measuring"}),
    ],
)
def test_progress_record_shapes(args, kwargs, expected):
    rec = progress_record(*args, **kwargs)
    for k, v in expected.items():
        assert rec[k] == pytest.approx(v) if isinstance(v, float) else rec[k] == v


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_job_threads_carry_an_os_name_and_the_caller_keeps_its_own():
    def names() -> dict[int, str]:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as fh:
                out[int(tid)] = fh.read().strip()
        return out

    gate = threading.Event()
    w = Worker()
    w.start(lambda wk: gate.wait(5))
    deadline = time.monotonic() + 5
    while OS_THREAD_NAME not in names().values() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert OS_THREAD_NAME in names().values()
    assert names()[threading.get_native_id()] != OS_THREAD_NAME
    gate.set()
    assert w.join(5)
