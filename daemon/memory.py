"""Process-wide memory settings every stocksync process starts with (bench/RESULTS.md, C and H).

A daemon with a large catalogue holds 100,000s of long-lived objects and a full sync allocates
as many again, briefly. Both the garbage collector's and glibc malloc's defaults are tuned for
the opposite: many short-lived processes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

# CPython's default thresholds (700, 10, 10) collect every 700 allocations, and the full
# collections that follow walk the whole catalogue again and again: that doubled the planner's
# CPU time. Larger young generations collect as much, less often; cyclic garbage just waits.
GC_THRESHOLDS = (50_000, 20, 10)

# glibc mallopt() parameters, each with the environment variable that sets it at start-up
# (an operator's setting wins). Python objects above 512 bytes (page bodies, the lists and dict
# tables of a 10,000-variant chunk) come from malloc, whose defaults keep freed memory for
# reuse: up to 8 arenas per core for the aiosqlite and resolver threads, and a threshold for
# returning memory that grows with the largest block ever freed. Together they added ~7 MiB
# to the peak RSS of a 100,000-variant full sync.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MALLOPT_SETTINGS = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, 2),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 64 * 1024),
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, 128 * 1024),
)


def tune_garbage_collector() -> None:
    """Apply the process-wide collector thresholds."""
    gc.set_threshold(*GC_THRESHOLDS)


def tune_allocator() -> list[str]:
    """Apply MALLOPT_SETTINGS where glibc malloc is in use; returns the settings applied.

    Runs before any thread starts (M_ARENA_MAX must). Elsewhere (another libc, another OS)
    it changes nothing: the defaults cost memory, not correctness.
    """
    if not sys.platform.startswith("linux"):
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return [
        name
        for name, parameter, value in MALLOPT_SETTINGS
        # glibc's mallopt returns 1 on success; musl's stub returns 0.
        if name not in os.environ and mallopt(parameter, value) == 1
    ]
