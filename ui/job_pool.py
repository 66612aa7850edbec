"""Long jobs in worker processes: a fixed pool, a fair queue, Stop within a second, crash recovery.

The server process only schedules, relays progress and holds results (no Streamlit imports here:
unit-testable). Each slot of the pool is one long-lived worker process (``spawn``: a clean
interpreter, so no lock or thread pool of the server is inherited) that runs one job at a time.

* A job is a picklable callable ``fn(*args, worker)`` (a module-level function and the
  arguments before the worker, as ``functools.partial(fn, *args)`` would call it); ``worker`` offers the verbs of :class:`ui.worker.Worker`
  (``report``, ``should_stop``, ``progress_callback``), so a work function runs in a thread or
  in a process unchanged. Its return value comes back by pickle (between our own processes only).
* Fair queue: first come, first served, and a session holds at most one queued or running job,
  so nobody waits behind more than one job of anyone else. Each queued job knows its position
  and an ETA from the measured durations of finished jobs and the progress of running ones.
* Stop: a queued job is dropped at once; a running one is asked to stop (its work polls
  ``should_stop`` between tasks and inner steps) and, if it has not ended ``stop_grace`` seconds
  later (one uninterruptible backward pass of a large model), its process is killed and replaced.
* A job whose page has not heartbeated for ``heartbeat_timeout`` seconds (a closed session) is
  stopped the same way; a worker process that dies fails its job with a clear message and the
  slot starts a new process.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any

from .worker import _USER_ERRORS, DONE, ERROR, IDLE, RUNNING, STOPPED, WorkerStopped, _message, progress_record

log = logging.getLogger(__name__)

QUEUED = "queued"
POLL_S = 0.05  # how often the dispatcher looks at pipes, stop requests and heartbeats


class JobRefused(RuntimeError):
    """The session already has a job queued or running."""


# ------------------------------------------------------------------------------------ child side
class _ChildWorker:
    """What a work function sees inside a worker process: the verbs of ui.worker.Worker."""

    def __init__(self, conn: Connection, stop: Any) -> None:
        self._conn, self._stop = conn, stop

    def report(self, record: dict[str, Any]) -> None:
        self._conn.send(("record", dict(record)))

    def should_stop(self) -> bool:
        return self._stop.is_set()

    is_set = should_stop

    def progress_callback(self) -> Callable[..., None]:
        def callback(*args: Any, **kwargs: Any) -> None:
            self.report(progress_record(*args, **kwargs))
            if self.should_stop():
                raise WorkerStopped()

        return callback


def stateful_arguments(args: tuple, types: tuple[type, ...]) -> list[Any]:
    """The arguments (or members of tuple, list and dict arguments) of the given types, in order:
    the objects a job changes in place, which a worker process sends back to the server."""
    found = []
    for a in args:
        members = a.values() if isinstance(a, dict) else a if isinstance(a, tuple | list) else (a,)
        found += [m for m in members if types and isinstance(m, types)]
    return found


def _child_main(conn: Connection, stop: Any, threads: int, sync_types: tuple[type, ...]) -> None:
    """A worker process: run jobs sent on ``conn`` until told to end (``None``)."""
    import torch

    torch.set_num_threads(max(1, threads))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        fn, args = msg
        status, result, error = _run_job(fn, args, _ChildWorker(conn, stop), stop)
        # What the job changed in place travels back with its result (one pickle: shared references stay shared).
        conn.send(("end", status, result, error, stateful_arguments(args, sync_types)))


def _run_job(fn: Callable, args: tuple, worker: _ChildWorker, stop: Any) -> tuple[str, Any, str | None]:
    try:
        result = fn(*args, worker)
    except WorkerStopped:
        return STOPPED, None, None
    except Exception as exc:  # noqa: BLE001 - any failure becomes a message for the page
        if stop.is_set():
            return STOPPED, None, None
        text = _message(exc) if isinstance(exc, _USER_ERRORS) else f"{type(exc).__name__}: {_message(exc)}"
        return ERROR, None, text
    return (STOPPED if stop.is_set() else DONE), result, None


# ------------------------------------------------------------------------------------- the jobs
class PoolJob:
    """One submitted job, as the page sees it (the page side of ui.worker.Worker, plus queue data)."""

    def __init__(self, pool: JobPool, job_id: int, session: str, fn: Callable, args: tuple, label: str, meta: dict):
        self.pool, self.id, self.session = pool, job_id, session
        self.fn, self.args = fn, args
        self.label, self.meta = label, meta
        self.status: str = QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._records: list[dict[str, Any]] = []
        self._reported_at = self.submitted_at
        self._heartbeat = self.submitted_at
        self._stop_requested_at: float | None = None
        self._ended = threading.Event()

    # ---- the page's side ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Queued or running (not yet ended)."""
        return not self._ended.is_set()

    @property
    def queued(self) -> bool:
        return self.status == QUEUED

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        with self.pool._lock:
            return list(self._records[start:])

    def num_records(self) -> int:
        with self.pool._lock:
            return len(self._records)

    @property
    def latest(self) -> dict[str, Any] | None:
        with self.pool._lock:
            return dict(self._records[-1]) if self._records else None

    def latest_age(self) -> float:
        with self.pool._lock:
            return max(0.0, time.monotonic() - self._reported_at)

    def position(self) -> int | None:
        """1-based place in the queue (None once it runs or ended)."""
        return self.pool.position(self)

    def eta_start(self) -> float | None:
        """Seconds until a slot is expected to take this queued job (None: unknown or not queued)."""
        return self.pool.eta_start(self)

    def heartbeat(self) -> None:
        self._heartbeat = time.monotonic()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop it (queued: at once; running: asked, then killed after the pool's grace)."""
        self.pool.stop(self, "stopped by request")
        return self.join(timeout) if timeout is not None else not self.running

    def join(self, timeout: float | None = None) -> bool:
        self._ended.wait(timeout)
        return not self.running

    def snapshot(self) -> dict[str, Any]:
        with self.pool._lock:
            latest = dict(self._records[-1]) if self._records else None
            n = len(self._records)
        return {
            "status": self.status,
            "running": self.running,
            "error": self.error,
            "label": self.label,
            "stop_reason": self.stop_reason,
            "latest": latest,
            "num_records": n,
            "position": self.position(),
            "eta_start": self.eta_start(),
        }


@contextmanager
def _bare_main() -> Iterator[None]:
    """A spawned child re-runs its parent's ``__main__`` file; under Streamlit that is the page script
    being run (the script runner installs it as ``__main__``), which a worker must never run. While a
    child starts, ``__main__`` is a bare module, so the child imports only what its jobs need."""
    saved = sys.modules.get("__main__")
    bare = sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None and sys.modules.get("__main__") is bare:  # unless a script run replaced it since
            sys.modules["__main__"] = saved


class _Slot:
    """One worker process and the job it runs."""

    def __init__(self, ctx: Any, threads: int, sync_types: tuple[type, ...]) -> None:
        self.conn, child = ctx.Pipe()
        self.stop = ctx.Event()
        self.process = ctx.Process(target=_child_main, args=(child, self.stop, threads, sync_types), daemon=True)
        with _bare_main():
            self.process.start()
        child.close()
        self.job: PoolJob | None = None


# ------------------------------------------------------------------------------------- the pool
class JobPool:
    """``workers`` worker processes and one FIFO queue (at most one job per session)."""

    def __init__(
        self,
        workers: int | None = None,
        threads_per_worker: int = 1,
        stop_grace: float = 1.0,
        heartbeat_timeout: float = 30.0,
        sync_types: tuple[type, ...] = (),
    ) -> None:
        """``sync_types``: arguments of these types that a job changes in place are, when it ends,
        updated in the server from the worker's copies (as if the job had run in a thread)."""
        self.sync_types = tuple(sync_types)
        self.size = max(1, int(workers or os.cpu_count() or 1))
        self.threads = threads_per_worker
        self.stop_grace = float(stop_grace)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.RLock()
        self._queue: deque[PoolJob] = deque()
        self._slots = [_Slot(self._ctx, self.threads, self.sync_types) for _ in range(self.size)]
        self._ids = itertools.count(1)
        self._durations: dict[str, deque[float]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch_loop, name="job-pool", daemon=True)
        self._thread.start()
        # Before multiprocessing's own exit handler kills the workers (atexit runs last-registered
        # first): a worker killed at exit must not be replaced by a new one.
        atexit.register(self.shutdown)

    # ---- submitting and stopping -----------------------------------------------------------------
    def submit(self, session: str, fn: Callable, *args: Any, label: str = "", **meta: Any) -> PoolJob:
        """Queue ``fn(*args, worker)`` for ``session``; JobRefused if it has a job queued or running."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job pool is shut down")
            mine = self.job_of(session)
            if mine is not None:
                raise JobRefused(
                    f"this session already has a job {mine.status} ({mine.label or 'work'}): stop it first"
                )
            job = PoolJob(self, next(self._ids), session, fn, args, label, meta)
            self._queue.append(job)
        return job

    def job_of(self, session: str) -> PoolJob | None:
        """The session's queued or running job, if any."""
        with self._lock:
            for job in [*self._queue, *(s.job for s in self._slots if s.job is not None)]:
                if job.session == session:
                    return job
        return None

    def stop(self, job: PoolJob, reason: str) -> None:
        with self._lock:
            if job.stop_reason is None:
                job.stop_reason = reason
            if job in self._queue:
                self._queue.remove(job)
                self._end(job, STOPPED, None, None)
                return
            slot = self._slot_of(job)
            if slot is not None and job._stop_requested_at is None:
                job._stop_requested_at = time.monotonic()
                slot.stop.set()

    # ---- queue data ------------------------------------------------------------------------------
    def position(self, job: PoolJob) -> int | None:
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else None

    def expected_duration(self, label: str) -> float | None:
        """Mean duration of the last finished jobs with this label (None before the first)."""
        with self._lock:
            done = self._durations.get(label)
            return sum(done) / len(done) if done else None

    def eta_start(self, job: PoolJob) -> float | None:
        """When a slot should take ``job``: each slot frees when its job's ETA (its own report, else
        the measured duration of its label) is spent; queued jobs ahead take the earliest slots."""
        with self._lock:
            if job not in self._queue:
                return None
            free_at = [self._remaining(s.job) if s.job is not None else 0.0 for s in self._slots]
            for ahead in self._queue:
                if any(t is None for t in free_at):
                    return None
                i = min(range(len(free_at)), key=lambda k: free_at[k])
                if ahead is job:
                    return free_at[i]
                took = self.expected_duration(ahead.label)
                free_at[i] = None if took is None else free_at[i] + took
        return None

    def _remaining(self, job: PoolJob) -> float | None:
        latest = job._records[-1] if job._records else None
        if latest and "eta" in latest:
            return max(0.0, float(latest["eta"]) - (time.monotonic() - job._reported_at))
        took = self.expected_duration(job.label)
        if took is None or job.started_at is None:
            return None
        return max(0.0, took - (time.monotonic() - job.started_at))

    # ---- the dispatcher --------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while not self._closed:
            conns = {s.conn: s for s in self._slots if s.job is not None}
            sentinels = {s.process.sentinel: s for s in self._slots if s.job is not None}
            ready = wait([*conns, *sentinels], timeout=POLL_S) if conns else (time.sleep(POLL_S) or [])
            with self._lock:
                for r in ready:
                    if r in conns:
                        self._receive(conns[r])
                for r in ready:
                    if r in sentinels and sentinels[r].job is not None and not sentinels[r].conn.poll():
                        self._crashed(sentinels[r])
                self._enforce_stops()
                self._start_queued()

    def _receive(self, slot: _Slot) -> None:
        while slot.job is not None and slot.conn.poll():
            try:
                msg = slot.conn.recv()
            except (EOFError, OSError):
                self._crashed(slot)
                return
            job = slot.job
            if msg[0] == "record":
                job._records.append(msg[1])
                job._reported_at = time.monotonic()
            else:
                _, status, result, error, changed = msg
                slot.job = None
                for local, remote in zip(stateful_arguments(job.args, self.sync_types), changed, strict=True):
                    local.__dict__.update(remote.__dict__)
                self._end(job, status, result, error)

    def _crashed(self, slot: _Slot) -> None:
        slot.process.join(2)  # reap it, so its exit code is known
        job, code = slot.job, slot.process.exitcode
        slot.job = None
        if not self._closed:
            self._replace(slot)
        if job is None:
            return
        if job._stop_requested_at is not None:
            self._end(job, STOPPED, None, None)
        else:
            self._end(job, ERROR, None, f"the worker process running this job ended unexpectedly (exit code {code})")

    def _enforce_stops(self) -> None:
        now = time.monotonic()
        for job in list(self._queue):
            if now - job._heartbeat > self.heartbeat_timeout:
                self.stop(job, self._gone_reason())
        for slot in self._slots:
            job = slot.job
            if job is None:
                continue
            if now - job._heartbeat > self.heartbeat_timeout:
                self.stop(job, self._gone_reason())
            if job._stop_requested_at is not None and now - job._stop_requested_at > self.stop_grace:
                slot.process.kill()  # one uninterruptible step of a large model: end it now
                slot.process.join(5)
                self._crashed(slot)

    def _gone_reason(self) -> str:
        return f"stopped: the browser session sent no heartbeat for {self.heartbeat_timeout:g} s"

    def _start_queued(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.job is None and slot.process.is_alive():
                job = self._queue.popleft()
                slot.stop.clear()
                try:
                    slot.conn.send((job.fn, job.args))
                except Exception as exc:  # noqa: BLE001 - e.g. an argument that cannot be pickled
                    self._end(job, ERROR, None, f"the job could not be sent to a worker process ({_message(exc)})")
                    continue
                job.status, job.started_at = RUNNING, time.monotonic()
                slot.job = job

    def _replace(self, slot: _Slot) -> None:
        slot.conn.close()
        fresh = _Slot(self._ctx, self.threads, self.sync_types)
        slot.conn, slot.stop, slot.process = fresh.conn, fresh.stop, fresh.process

    def _end(self, job: PoolJob, status: str, result: Any, error: str | None) -> None:
        job.status, job.result, job.error = status, result, error
        if status == STOPPED and job.stop_reason is None:
            job.stop_reason = "stopped by request"
        job.ended_at = time.monotonic()
        if status == DONE and job.started_at is not None:
            self._durations.setdefault(job.label, deque(maxlen=20)).append(job.ended_at - job.started_at)
        job._ended.set()

    def _slot_of(self, job: PoolJob) -> _Slot | None:
        return next((s for s in self._slots if s.job is job), None)

    # ---- shutting down ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """End every job and worker process (idempotent; also run at interpreter exit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job in list(self._queue):
                self.stop(job, "stopped: the server is shutting down")
            for slot in self._slots:
                if slot.job is not None:
                    slot.process.kill()
                    job, slot.job = slot.job, None
                    job.stop_reason = job.stop_reason or "stopped: the server is shutting down"
                    self._end(job, STOPPED, None, None)
                else:
                    try:
                        slot.conn.send(None)
                    except OSError:
                        pass
        for slot in self._slots:
            slot.process.join(5)
            if slot.process.is_alive():
                slot.process.kill()
        self._thread.join(5)


__all__ = ["QUEUED", "IDLE", "RUNNING", "DONE", "STOPPED", "ERROR", "JobPool", "JobRefused", "PoolJob"]
