"""Keep freed tensor memory in the process instead of handing it back to the system (glibc only).

PyTorch's CPU tensors come from ``malloc``. By default glibc gives memory at the top of the heap
back to the system once more than a few tens of MB of it are free (and serves big blocks with
``mmap``), so every training step that frees its activations and allocates them again pays page
faults for the fresh pages: on this project's 2-core machine the kernel's share of an Omniglot
run's CPU time was 17-24%. Raising the two thresholds keeps those pages mapped for reuse; the
price is that the process's resident size stays at its high-water mark (up to the threshold),
which Python's own allocator mostly does anyway.

Applied when ``engine`` is imported; set ``CAUSAL_ENGINE_KEEP_FREED_MEMORY=0`` to leave malloc as
it is. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_BYTES = 1 << 30  # free heap memory kept for reuse, and the size above which blocks are mmap'ed


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds to :data:`KEPT_BYTES`; True when applied."""
    if sys.platform != "linux" or os.environ.get("CAUSAL_ENGINE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, KEPT_BYTES)) and bool(mallopt(M_MMAP_THRESHOLD, KEPT_BYTES))
