"""Building the suite's small C++ extensions with torch.utils.cpp_extension (once per machine,
cached under $TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions/py<version>_<cuda>, and
found again by what it was built from: `build_key`). Each caller turns a failure into its own
fallback and says why."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from suite import settings


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
    sources = [source] if isinstance(source, Path) else list(source)
    omp = openmp_flags() if openmp else []
    flags = [*cflags, *omp]
    key = build_key(sources, flags)
    stamp = build_dir / "suite-build.json"
    module_name = _built(stamp, key)
    if module_name:
        try:
            return cpp_extension._import_module_from_library(module_name, str(build_dir), True)
        except Exception:  # an unreadable or foreign library: build it again below
            pass
    if not any(build_dir.glob("*.so")):
        print(f"suite: building {what} ({', '.join(s.name for s in sources)}; once per machine, about 30 s)",
              file=sys.stderr, flush=True)
    module = cpp_extension.load(name, [str(s) for s in stage(sources, build_dir / "src")], extra_cflags=flags,
                                extra_ldflags=omp, with_cuda=False, verbose=False)
    _write_atomically(stamp, json.dumps({"key": key, "module": module.__name__}).encode())
    return module


def build_key(sources: list[Path], flags: list[str]) -> str:
    """What a build depends on: the sources and the headers beside them, the flags, torch, Python,
    the compiler. Not the paths: torch's own build command names the checkout's virtualenv, so
    torch.utils.cpp_extension alone rebuilds in every fresh clone (about 90 s for the four)."""
    h = hashlib.sha256()
    for path in [*sources, *_headers(sources)]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for part in [*flags, torch.__version__, str(torch.version.git_version), sys.version, platform.machine(),
                 settings.cxx()]:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:32]


def _built(stamp: Path, key: str) -> str | None:
    """The module name built for `key`, when its library is there."""
    try:
        found = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("key") != key or not isinstance(found.get("module"), str):
        return None
    return found["module"] if (stamp.parent / f"{found['module']}.so").exists() else None


def _headers(sources: list[Path]) -> list[Path]:
    return sorted({h for s in sources for h in s.parent.glob("*.h")})


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # whole or not at all: another process may be reading it


def stage(sources: list[Path], folder: Path) -> list[Path]:
    """Copies of `sources` and the headers beside them in `folder`, rewritten only when their text
    changed: when a source changes, ninja rebuilds that file's object only, wherever the checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in [*sources, *_headers(sources)]:
        text = path.read_bytes()
        copy = folder / path.name
        if not (copy.exists() and copy.read_bytes() == text):  # unchanged: keep its time for ninja
            _write_atomically(copy, text)
    return [folder / s.name for s in sources]
