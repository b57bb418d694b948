"""Building and loading the bit-packed kernels' C++ extension (one job; the compiler work itself is
`suite.extensions`, shared with the suite's other C++ extensions).

One extension holds the four builds of the kernels (isa_portable.cpp, isa_avx2.cpp, isa_avx512bw.cpp,
isa_avx512.cpp, each compiled for its instruction set by a target pragma; kernels_impl.h is their
common code) and the bindings (bindings.cpp). Built once per machine, the first time a kernel or a packed layer is used
(about 30 s); where it cannot be built, one warning says why and the layers stay emulated.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path

from suite.extensions import load as load_extension

_HERE = Path(__file__).parent
SOURCES = [_HERE / name for name in ("bindings.cpp", "isa_portable.cpp", "isa_avx2.cpp", "isa_avx512bw.cpp",
                                     "isa_avx512.cpp")]
HEADERS = [_HERE / "lowbit.h", _HERE / "kernels_impl.h"]
NAME = "lowbit_suite_kernels"

_lock = threading.Lock()
_module = None
_error: str | None = None
_tried = False


def _build():
    # torch rebuilds when a listed source changes; a header's change reaches it through ninja's
    # dependency files, and its hash through this flag (so that a stale build is never loaded).
    # No fused multiply-add contraction: every build rounds the float epilogue alike. No loop turned
    # into a memcpy call: a 32-lane copy is a few vector stores, the call cost more (measured).
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in HEADERS)).hexdigest()[:12]
    return load_extension(NAME, SOURCES, "the bit-packed low-bit kernels",
                          ["-O3", f"-DLOWBIT_HEADERS={digest}", "-ffp-contract=off",
                           "-fno-tree-loop-distribute-patterns"], openmp=True)


def load():
    """The extension module (built the first time on this machine), or None with one warning."""
    global _module, _error, _tried
    if _tried:
        return _module
    with _lock:
        if not _tried:
            try:
                _module = _build()
            except Exception as e:  # no compiler, no Python headers, a failed build: emulate, say why
                lines = [line for line in str(e).strip().splitlines() if line.strip()]
                _error = f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]
                warnings.warn(f"suite: the bit-packed kernels could not be built ({_error}); quantized layers stay "
                              "emulated (float arithmetic on +-1 values: same results, slower)", RuntimeWarning,
                              stacklevel=3)
            _tried = True
    return _module


def error() -> str | None:
    """Why the extension could not be built (None if it was, or was not tried)."""
    return _error
