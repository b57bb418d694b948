"""Keep freed memory in the process (glibc malloc on Linux), so training steps on the CPU reuse it.

Why: every training step frees and allocates the same weight-sized buffers again (quantized
weights, weight gradients). By default glibc serves large blocks with fresh mappings and hands the
top of its heap back to the kernel when much of it is free, so those buffers come back as new pages
that fault in again on first touch. Measured on a 1024 x 1024 BWN layer (batch 200): up to 3000
page faults a step on an AMD EPYC, the step then 1.4x to 1.8x float instead of 1.1x to 1.2x; how
many depends on the order of earlier frees (0 to 1300 a step in six fresh processes on an Intel
Xeon). PyTorch's CPU performance guide recommends a caching allocator (jemalloc, tcmalloc) for the same reason; two
glibc settings give the reuse with no extra library:

- M_MMAP_THRESHOLD = 32 MiB (glibc's largest): blocks up to 32 MiB come from the heap;
- M_TRIM_THRESHOLD = 1 GiB: free memory at the top of the heap stays with the process.

The cost: memory freed after a peak is kept by the process (its RSS does not fall back); the
peak RSS of every smoke run rose by 1 to 4 % (`python -m suite check --all --profile smoke`).
Turned on by the CLI and the tests
(`keep_freed_memory`), recorded in each run's provenance (`malloc`), off with SUITE_MALLOC_TUNING=0,
and nothing where the C library is not glibc (or another allocator is preloaded: its own
settings apply).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from suite import settings

ENV = "SUITE_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
SETTINGS = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30}

_state = "default"


def keep_freed_memory() -> str:
    """Apply the settings once (glibc only); returns what now holds, as `state()` does."""
    global _state
    if _state != "default" or not sys.platform.startswith("linux"):
        return _state
    if settings.malloc_tuning_off():
        _state = f"default ({ENV}=0)"
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):  # not glibc (musl, ...): leave its allocator alone
        return _state
    if all(libc.mallopt(param, value) == 1 for param, value in SETTINGS.items()):
        _state = f"glibc {version}: mmap threshold 32 MiB, no trim below 1 GiB (suite/run/allocator.py)"
    return _state


def state() -> str:
    """The malloc settings of this process, for run records."""
    return _state
