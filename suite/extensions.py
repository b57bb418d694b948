"""Building the suite's small C++ extensions with torch.utils.cpp_extension (once per machine,
cached under $TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions). Each caller turns a
failure into its own fallback and says why."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch


def openmp_flags() -> list[str]:
    """-fopenmp where torch's threads are OpenMP's (Linux wheels): at::parallel_for then runs on
    torch's thread pool (libgomp resolves to the copy torch loaded); without it, a serial loop."""
    if sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info():
        return ["-fopenmp"]
    return []


def load(name: str, source: Path | list[Path], what: str, cflags: list[str] = (), openmp: bool = False):
    """The extension module built from `source` (one file or a list; a note on stderr the first
    time: it takes ~30 s). Per-source instruction sets go in the sources (`#pragma GCC target`)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # CUDA_HOME notice on CPU hosts
    from torch.utils import cpp_extension

    try:
        built = any(Path(cpp_extension._get_build_directory(name, verbose=False)).glob("*.so"))
    except Exception:
        built = False
    sources = [source] if isinstance(source, Path) else list(source)
    if not built:
        print(f"suite: building {what} ({', '.join(s.name for s in sources)}; once per machine, about 30 s)",
              file=sys.stderr, flush=True)
    flags = openmp_flags() if openmp else []
    return cpp_extension.load(name, [str(s) for s in sources], extra_cflags=[*cflags, *flags], extra_ldflags=flags,
                              with_cuda=False, verbose=False)
