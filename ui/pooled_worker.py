"""A session's worker whose jobs run in the shared process pool (ui.job_pool), with the page-side
interface of ui.worker.Worker, so pages and the session code use either one the same way.

``CAUSAL_EXPLORER_WORKERS`` sets the pool size (default: the machine's cores); ``0`` keeps every
job in a thread of the server process (ui.worker.Worker), as a fallback.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .job_pool import JobPool, PoolJob
from .worker import IDLE, Worker

_POOL: JobPool | None = None
_POOL_LOCK = threading.Lock()


def pool_size() -> int:
    """Worker processes of the server's pool (0: jobs run in server threads)."""
    text = os.environ.get("CAUSAL_EXPLORER_WORKERS", "").strip()
    if not text:
        return os.cpu_count() or 1
    try:
        return max(0, int(text))
    except ValueError:
        raise ValueError(f"CAUSAL_EXPLORER_WORKERS must be a whole number of processes, got {text!r}") from None


def shared_pool(heartbeat_timeout: float) -> JobPool:
    """The server's one pool, started on first use (its processes live as long as the server)."""
    global _POOL
    from engine import OneShotMetaLearningEngine

    with _POOL_LOCK:
        if _POOL is None:
            _POOL = JobPool(
                workers=pool_size(),
                heartbeat_timeout=heartbeat_timeout,
                sync_types=(OneShotMetaLearningEngine,),
            )
        return _POOL


def make_worker(heartbeat_timeout: float) -> Worker | PooledWorker:
    """A session worker: pooled in processes, or a thread Worker when the pool size is 0."""
    if pool_size() == 0:
        return Worker(heartbeat_timeout=heartbeat_timeout)
    return PooledWorker(lambda: shared_pool(heartbeat_timeout))


class PooledWorker:
    """One kind of job of one workspace: start() queues it in the pool; the rest reads its job."""

    def __init__(self, pool: Callable[[], JobPool]) -> None:
        self._pool = pool
        self._key = uuid.uuid4().hex  # the pool's "session": one queued or running job at a time
        self._job: PoolJob | None = None
        self.generation = 0

    def start(self, fn: Callable[..., Any], label: str = "", **meta: Any) -> None:
        """Queue ``fn(worker)``; ``fn`` must pickle (a module-level function or a partial of one)."""
        if isinstance(fn, functools.partial):  # its arguments in the open: engines among them come back
            if fn.keywords:
                raise ValueError("a pooled job is a partial with positional arguments only")
            fn, args = fn.func, tuple(fn.args)
        else:
            args = ()
        self._job = self._pool().submit(self._key, fn, *args, label=label, **meta)
        self.generation += 1

    # ---- read through to the current job ---------------------------------------------------------
    @property
    def status(self) -> str:
        return self._job.status if self._job else IDLE

    @property
    def running(self) -> bool:
        return self._job is not None and self._job.running

    @property
    def result(self) -> Any:
        return self._job.result if self._job else None

    @property
    def error(self) -> str | None:
        return self._job.error if self._job else None

    @property
    def stop_reason(self) -> str | None:
        return self._job.stop_reason if self._job else None

    @property
    def label(self) -> str:
        return self._job.label if self._job else ""

    @property
    def meta(self) -> dict[str, Any]:
        return self._job.meta if self._job else {}

    @property
    def latest(self) -> dict[str, Any] | None:
        return self._job.latest if self._job else None

    def latest_age(self) -> float:
        return self._job.latest_age() if self._job else 0.0

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        return self._job.records(start) if self._job else []

    def num_records(self) -> int:
        return self._job.num_records() if self._job else 0

    def position(self) -> int | None:
        return self._job.position() if self._job else None

    def eta_start(self) -> float | None:
        return self._job.eta_start() if self._job else None

    def heartbeat(self) -> None:
        if self._job:
            self._job.heartbeat()

    def stop(self, timeout: float | None = None) -> bool:
        return self._job.stop(timeout) if self._job else True

    def join(self, timeout: float | None = None) -> bool:
        return self._job.join(timeout) if self._job else True

    def snapshot(self) -> dict[str, Any]:
        if self._job is None:
            return {
                "status": IDLE,
                "running": False,
                "error": None,
                "label": "",
                "stop_reason": None,
                "latest": None,
                "num_records": 0,
                "generation": 0,
                "position": None,
                "eta_start": None,
            }
        return {**self._job.snapshot(), "generation": self.generation}
