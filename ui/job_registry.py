"""The process-wide registry of background workers, keyed by workspace id (no Streamlit imports).

A reload starts a new browser session; with the workspace id from the URL it finds the workers
of its workspace here, so a running job keeps running and the page reattaches to it. Two
workspaces never share a worker. Workspaces with no running job are forgotten, least recently
used first, beyond ``MAX_WORKSPACES``.

>>> reg = JobRegistry(lambda: object())
>>> reg.workers("ws-aaaaaaaa") is reg.workers("ws-aaaaaaaa"), reg.workers("ws-aaaaaaaa") is reg.workers("ws-bbbbbbbb")
(True, False)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_WORKSPACES = 64


class JobRegistry:
    """{workspace id: {kind: worker}}; every access takes one lock."""

    def __init__(self, factory: Callable[[], Any], max_workspaces: int = MAX_WORKSPACES) -> None:
        self._factory = factory
        self._max = int(max_workspaces)
        self._lock = threading.Lock()
        self._spaces: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def workers(self, ws_id: str) -> dict[str, Any]:
        """The workers of a workspace (the same dict for every session of it)."""
        with self._lock:
            space = self._spaces.get(ws_id)
            if space is None:
                space = self._spaces[ws_id] = {}
                self._forget_idle()
            self._spaces.move_to_end(ws_id)
            return space

    def worker(self, ws_id: str, kind: str) -> Any:
        """The workspace's worker of ``kind`` (made on first use)."""
        space = self.workers(ws_id)
        with self._lock:
            if kind not in space:
                space[kind] = self._factory()
            return space[kind]

    def claim_result(self, worker: Any) -> bool:
        """True for exactly one caller per finished job: that session collects its result."""
        with self._lock:
            if getattr(worker, "collected_generation", None) == worker.generation:
                return False
            worker.collected_generation = worker.generation
            return True

    def mark_collected(self, worker: Any) -> None:
        """The current job's result is accounted for (e.g. restored from the store instead)."""
        with self._lock:
            worker.collected_generation = worker.generation

    def _forget_idle(self) -> None:
        for ws_id in list(self._spaces)[:-1]:  # never the one just added
            if len(self._spaces) <= self._max:
                return
            space = self._spaces[ws_id]
            if not any(getattr(w, "running", False) for w in space.values()):
                del self._spaces[ws_id]
