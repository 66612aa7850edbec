"""The stop signal of a running job, checked between iterations and, during meta-training, inside
one: between the tasks of a meta-batch and between inner steps, so Stop acts within about a second
whatever the model size."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

StopSignal = Callable[[], bool] | Any  # a callable, or anything with is_set() (threading.Event)

_ACTIVE: contextvars.ContextVar[StopSignal | None] = contextvars.ContextVar("engine_stop_signal", default=None)


class Interrupted(Exception):
    """Raised by ``check_stop`` inside a step when its stop signal is set."""


def should_stop(stop: StopSignal | None) -> bool:
    if stop is None:
        return False
    if hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


@contextlib.contextmanager
def stop_checks(stop: StopSignal | None) -> Iterator[None]:
    """Within the block, ``check_stop()`` raises Interrupted once ``stop`` is set."""
    token = _ACTIVE.set(stop)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def check_stop() -> None:
    """Raise Interrupted if the active stop signal is set (a no-op outside ``stop_checks``)."""
    if should_stop(_ACTIVE.get()):
        raise Interrupted()
