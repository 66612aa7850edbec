"""Values a page would otherwise rebuild on every rerun (plotly figures cost tens of milliseconds each,
plotly checks every property of a new one): kept per session, or once per process for what is the same
in every session (what a ready model shows before a session changes anything)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
SHARED_ENTRIES = 64  # process-wide values kept, least recently used dropped first
_SHARED: OrderedDict[tuple[str, Hashable], Any] = OrderedDict()
_LOCK = threading.Lock()


def cached(name: str, stamp: Hashable, build: Callable[[], T], shared: bool = False) -> T:
    """``build()``, rebuilt only when ``stamp`` changes. ``shared``: one value for every session of this
    process, for a ``stamp`` that says everything the value depends on; never mutate a shared value."""
    if shared:
        with _LOCK:
            if (name, stamp) in _SHARED:
                _SHARED.move_to_end((name, stamp))
                return _SHARED[(name, stamp)]
        value = build()  # outside the lock: two sessions may build it once each, never wait on each other
        with _LOCK:
            _SHARED[(name, stamp)] = value
            while len(_SHARED) > SHARED_ENTRIES:
                _SHARED.popitem(last=False)
        return value
    cache = st.session_state.setdefault("memo", {})
    hit = cache.get(name)
    if hit is None or hit[0] != stamp:
        hit = cache[name] = (stamp, build())
    return hit[1]
