"""Every environment variable the suite reads, in one place (the README's "Settings" lists them).

Each is read when asked (not at import), so a test or a launcher can set it for one call.
Command-line options win over these where both exist (``--data-dir``, ``--results-dir``).
"""

from __future__ import annotations

import os
from pathlib import Path

from suite.errors import UserError

# name -> what it does (README "Settings"); tests check that the suite reads no other variable.
DOCUMENTED = {
    "SUITE_ROOT": "the project folder (reproductions/, baselines/, results/); default: the current folder if it "
                  "holds reproductions/, else the source checkout",
    "SUITE_RESULTS_DIR": "where records, tables and checkpoints go; default: results/ in the project",
    "SUITE_DATA_DIR": "a folder holding the datasets, searched after --data-dir",
    "XDG_CACHE_HOME": "the cache folder (default ~/.cache); datasets are downloaded to its lowbit-suite/data",
    "SUITE_FUSED_KERNELS": "0 turns the fused CPU kernels of the binary quantizers off (torch ops instead)",
    "SUITE_KERNELS_ISA": "which build of the bit-packed low-bit kernels runs: auto (default: the fastest the CPU "
                         "has), portable, avx2, avx512bw, avx512_vpopcntdq, or off (quantized layers stay emulated)",
    "SUITE_TENSOR_MEMORY": "0 does not install the counting CPU allocator (tensor memory then unmeasured)",
    "SUITE_MALLOC_TUNING": "0 leaves glibc's malloc settings alone (default: freed buffers kept for reuse)",
    "SUITE_DIST_TIMEOUT_MINUTES": "under torchrun: the process group's timeout for set-up and every collective "
                                  "(default 30)",
    "CXX": "the C++ compiler torch.utils.cpp_extension builds the suite's extensions with (default c++); "
           "a build is reused only by the same one",
    "TORCH_EXTENSIONS_DIR": "where the extensions are built and kept (torch's; default "
                            "~/.cache/torch_extensions/py<version>_<cuda>)",
}
DEFAULT_DIST_TIMEOUT_MINUTES = 30.0


def _value(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _turned_off(name: str) -> bool:
    return (_value(name) or "").lower() in ("0", "false", "no", "off")


def project_root() -> Path | None:
    value = _value("SUITE_ROOT")
    return Path(value) if value else None


def results_dir() -> Path | None:
    value = _value("SUITE_RESULTS_DIR")
    return Path(value) if value else None


def data_dir() -> Path | None:
    value = _value("SUITE_DATA_DIR")
    return Path(value) if value else None


def cache_dir() -> Path:
    """The suite's cache folder (downloaded datasets)."""
    return Path(_value("XDG_CACHE_HOME") or Path.home() / ".cache") / "lowbit-suite"


def fused_kernels_off() -> bool:
    return _turned_off("SUITE_FUSED_KERNELS")


def kernels_isa() -> str:
    """SUITE_KERNELS_ISA, lower case; "auto" when unset (suite/kernels/dispatch.py checks the name)."""
    return (_value("SUITE_KERNELS_ISA") or "auto").lower()


def cxx() -> str:
    """CXX as torch.utils.cpp_extension reads it: the compiler an extension build depends on."""
    return _value("CXX") or "c++"


def tensor_memory_off() -> bool:
    return _turned_off("SUITE_TENSOR_MEMORY")


def malloc_tuning_off() -> bool:
    return _turned_off("SUITE_MALLOC_TUNING")


def dist_timeout_minutes() -> float:
    raw = _value("SUITE_DIST_TIMEOUT_MINUTES")
    try:
        minutes = float(raw) if raw else DEFAULT_DIST_TIMEOUT_MINUTES
    except ValueError:
        minutes = -1.0
    if not 0 < minutes < float("inf"):
        raise UserError(f"$SUITE_DIST_TIMEOUT_MINUTES = {raw!r}: expected a positive number of minutes")
    return minutes
