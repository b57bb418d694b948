"""Building the suite's small C++ extensions with torch.utils.cpp_extension (once per machine,
cached under $TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions/py<version>_<cuda>). Each
caller turns a failure into its own fallback and says why."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
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

    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    built = any(build_dir.glob("*.so"))
    sources = stage([source] if isinstance(source, Path) else list(source), build_dir / "src")
    if not built:
        print(f"suite: building {what} ({', '.join(s.name for s in sources)}; once per machine, about 30 s)",
              file=sys.stderr, flush=True)
    flags = openmp_flags() if openmp else []
    return cpp_extension.load(name, [str(s) for s in sources], extra_cflags=[*cflags, *flags], extra_ldflags=flags,
                              with_cuda=False, verbose=False)


def stage(sources: list[Path], folder: Path) -> list[Path]:
    """Copies of `sources` and the headers beside them in `folder`, rewritten only when their text
    changed. ninja rebuilds when a source's path or time changes, so building from the checkout
    itself would rebuild in every fresh clone or moved checkout (about 90 s for the four
    extensions); building from these copies rebuilds only what changed."""
    folder.mkdir(parents=True, exist_ok=True)
    headers = {h for s in sources for h in s.parent.glob("*.h")}
    for path in [*sources, *sorted(headers)]:
        text = path.read_bytes()
        copy = folder / path.name
        if copy.exists() and copy.read_bytes() == text:
            continue  # unchanged: keep its time, so ninja keeps the object
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.replace(tmp, copy)  # whole or not at all: another process may be building from it
    return [folder / s.name for s in sources]
