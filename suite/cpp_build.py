"""Building the suite's C++/OpenMP CPU extensions with torch.utils.cpp_extension (one job: compile
once per machine, on torch's threads; callers decide what to do when it fails).

Used by the binary quantizers' fused kernels (`suite.quant.fused`) and the bit-packed low-bit
kernels (`suite.kernels`). A build needs a C++ compiler and Python's headers; it is cached under
$TORCH_EXTENSIONS_DIR (by default ~/.cache/torch_extensions) and torch rebuilds it when a source
changes. `build` raises on failure; `failure_reason` turns the exception into one line for the
warning the caller prints and the status it records.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch


def openmp_flags() -> list[str]:
    """-fopenmp where torch's own threads are OpenMP's (Linux wheels). Without it at::parallel_for
    compiles to a serial loop: measured here, the fused kernels then ran at half the speed of
    torch's 2-thread ops. The extension links libgomp.so.1, which resolves to the copy torch already
    loaded, so torch and the kernels share one thread pool (and torch.set_num_threads)."""
    if sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info():
        return ["-fopenmp"]
    return []


def _cpp_extension():
    import logging

    # cpp_extension warns on import about CUDA_HOME on machines without CUDA: not ours to show
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    return cpp_extension


def built_before(name: str) -> bool:
    """Whether a build of this name exists (torch rebuilds it anyway if a source changed)."""
    try:
        folder = Path(_cpp_extension()._get_build_directory(name, verbose=False))
    except Exception:
        return False
    return any(folder.glob("*.so"))


def build(name: str, sources: list[Path], what: str, extra_cflags: tuple[str, ...] = ()):
    """Compile (first time) or load extension `name` from `sources`; `what` names it in the one
    line printed before a first build. Raises whatever the compiler or loader raised."""
    cpp_extension = _cpp_extension()
    first = not built_before(name)
    if first:
        print(f"suite: building {what} ({', '.join(Path(s).name for s in sources)}; once per machine, about "
              "20 s)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    openmp = openmp_flags()
    module = cpp_extension.load(name, [str(s) for s in sources], extra_cflags=["-O3", *openmp, *extra_cflags],
                                extra_ldflags=openmp, with_cuda=False, verbose=False)
    if first:
        print(f"suite: built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return module


def sources_digest(paths: list[Path]) -> str:
    """A short hash of files the build depends on but does not list (headers), for a -D flag: torch
    rebuilds an extension whose flags changed."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:12]


def failure_reason(error: Exception) -> str:
    """One line for a failed build: the exception type and the last line of its message."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]
