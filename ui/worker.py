"""A background worker owned by one browser session (no Streamlit imports: unit-testable).

Long work (meta-training, mechanism discovery, the teaching experiments) runs in a thread;
the page polls ``records()`` / ``latest`` / ``status`` from a fragment and heartbeats the
worker on every poll. The work function receives the worker itself and uses two verbs:

* ``worker.report(record)`` appends a progress record (a dict) under a lock;
* ``worker.should_stop()`` is True once Stop was pressed, or once the page has not
  heartbeated for ``heartbeat_timeout`` seconds (the browser session has gone away).

A work function that cannot poll ``should_stop`` (it only calls a progress callback) can
use ``worker.progress_callback()``: the callback records progress and raises
``WorkerStopped`` when the worker should stop, which ends the work as "stopped".

>>> w = Worker()
>>> w.start(lambda wk: [wk.report({"i": i}) for i in range(3)] and "ok")
>>> w.join(5)
True
>>> w.status, w.result, len(w.records())
('done', 'ok', 3)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

IDLE, RUNNING, DONE, STOPPED, ERROR = "idle", "running", "done", "stopped", "error"

# The OS-level name of worker threads (top -H, /proc/<pid>/task/<tid>/comm; at most 15 bytes);
# threads that a job starts inherit it (training starts one helper thread that ends with it).
OS_THREAD_NAME = "explorer-worker"

# Exceptions whose message is written for the user; anything else is shown with its type name.
_USER_ERRORS = (ValueError, RuntimeError, KeyError, FileNotFoundError, MemoryError)


class WorkerStopped(Exception):
    """Raised inside work (e.g. by a progress callback) to end it early as "stopped"."""


class Worker:
    """One background job at a time: start(fn), stop(), records, status, error, result."""

    def __init__(self, heartbeat_timeout: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._reported_at = clock()  # when the latest record came in
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = clock()
        self.status: str = IDLE
        self.error: str | None = None
        self.result: Any = None
        self.label: str = ""
        self.meta: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.generation = 0  # increases with every start (lets pollers notice a new job)

    # ---- control --------------------------------------------------------------------------
    def start(self, fn: Callable[[Worker], Any], label: str = "", **meta: Any) -> None:
        """Run ``fn(self)`` in a daemon thread. Raises RuntimeError if a job is running."""
        if self.running:
            raise RuntimeError(f"a job is already running ({self.label or 'work'}); stop it first")
        with self._lock:
            self._records = []
            self._stop = threading.Event()
            self.status, self.error, self.result = RUNNING, None, None
            self.label, self.meta, self.stop_reason = label, dict(meta), None
            self.generation += 1
        self._heartbeat = self._clock()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"worker:{label or 'work'}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Worker], Any]) -> None:
        name_os_thread(OS_THREAD_NAME)
        try:
            result = fn(self)
        except WorkerStopped:
            self._finish(STOPPED, None, None)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a message, never a crash
            if self._stop.is_set():  # the work ended its own way after a stop request
                self._finish(STOPPED, None, None)
            elif isinstance(exc, _USER_ERRORS):
                log.exception("worker %s failed", self.label)
                self._finish(ERROR, None, _message(exc))
            else:
                log.exception("worker %s failed", self.label)
                self._finish(ERROR, None, f"{type(exc).__name__}: {_message(exc)}")
        else:
            self._finish(STOPPED if self._stop.is_set() else DONE, result, None)

    def _finish(self, status: str, result: Any, error: str | None) -> None:
        with self._lock:
            if status == STOPPED and self.stop_reason is None:
                self.stop_reason = "stopped by request"
            self.status, self.result, self.error = status, result, error

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the job to stop; with ``timeout``, wait that long. True if it is no longer running."""
        if self.stop_reason is None:
            self.stop_reason = "stopped by request"
        self._stop.set()
        if timeout is not None:
            return self.join(timeout)
        return not self.running

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job; True if it has finished."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.running

    # ---- the work function's side ------------------------------------------------------------
    def heartbeat(self) -> None:
        """Called by the page on every poll: the session is still there."""
        self._heartbeat = self._clock()

    def seconds_since_heartbeat(self) -> float:
        return self._clock() - self._heartbeat

    def should_stop(self) -> bool:
        """True after stop(), or when the page has not heartbeated for ``heartbeat_timeout`` s."""
        if self._stop.is_set():
            return True
        if self.seconds_since_heartbeat() > self.heartbeat_timeout:
            self.stop_reason = f"stopped: the browser session sent no heartbeat for {self.heartbeat_timeout:g} s"
            self._stop.set()
            return True
        return False

    # Lets the worker itself be passed where a stop signal is expected (``stop=worker``).
    is_set = should_stop

    def report(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(dict(record))
            self._reported_at = self._clock()

    def progress_callback(self) -> Callable[..., None]:
        """A tolerant progress callback: records what it is given, raises WorkerStopped to stop.

        Accepts ``cb(fraction)``, ``cb(done, total)``, ``cb(record_dict)`` or keyword arguments.
        """

        def callback(*args: Any, **kwargs: Any) -> None:
            self.report(progress_record(*args, **kwargs))
            if self.should_stop():
                raise WorkerStopped()

        return callback

    # ---- the page's side ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records[start:])

    def num_records(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._records[-1]) if self._records else None

    def latest_age(self) -> float:
        """Seconds since the latest record came in."""
        with self._lock:
            return max(0.0, self._clock() - self._reported_at)

    def snapshot(self) -> dict[str, Any]:
        """Status, error, label, latest record and record count, read consistently."""
        with self._lock:
            return {
                "status": self.status,
                "running": self.running,
                "error": self.error,
                "label": self.label,
                "stop_reason": self.stop_reason,
                "latest": dict(self._records[-1]) if self._records else None,
                "num_records": len(self._records),
                "generation": self.generation,
            }


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux only; elsewhere nothing happens), so a
    job's thread can be told apart from the server's own threads from outside the process."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except Exception:  # noqa: BLE001 - no libc, no prctl (macOS, Windows): the name is optional
        pass


def progress_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Normalise the many shapes of a progress call into a dict with ``fraction`` when known."""
    rec: dict[str, Any] = {}
    if len(args) == 1 and isinstance(args[0], dict):
        rec.update(args[0])
    elif len(args) == 1 and isinstance(args[0], (int, float)):
        rec["fraction"] = float(args[0])
    elif len(args) >= 2 and all(isinstance(a, (int, float)) for a in args[:2]):
        rec["done"], rec["total"] = args[0], args[1]
        if len(args) > 2:
            rec["message"] = str(args[2])
    elif args:
        rec["message"] = " ".join(str(a) for a in args)
    rec.update(kwargs)
    if "fraction" not in rec:
        done, total = rec.get("done"), rec.get("total")
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            rec["fraction"] = float(done) / float(total)
    if "fraction" in rec:
        try:
            rec["fraction"] = min(1.0, max(0.0, float(rec["fraction"])))
        except (TypeError, ValueError):
            rec.pop("fraction")
    return rec


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or type(exc).__name__
