"""The coroutine twin of a synchronous engine method (docs/DESIGN.md section 4).

Every method that does work exists as ``name_sync`` and as the coroutine ``name``, which runs
the synchronous one in a worker thread so that the caller's event loop stays responsive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def async_twin(name: str, doc: str) -> Callable[..., Any]:
    """A coroutine method ``name`` that awaits ``self.<name>_sync`` off the event loop."""

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, f"{name}_sync"), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Coroutine twin of ``{name}_sync``: {doc}"
    return method
