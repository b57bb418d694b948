"""Which build of the kernels runs: chosen at run time from the CPU's features, or forced.

Four builds (C++ in isa_*.cpp): "avx512_vpopcntdq" (AVX-512 with the 64-bit lane popcount: Intel
since Ice Lake, AMD since Zen 4), "avx512bw" (popcount by nibble table lookups on 512-bit vectors:
Intel Skylake-SP and Cascade Lake Xeons), "avx2" (the same on 256-bit vectors), "portable" (plain
C++, any CPU). The fastest one the CPU supports runs, unless

- the environment variable SUITE_KERNELS_ISA names one (portable | avx2 | avx512bw | avx512_vpopcntdq; "auto"
  is the default; "off" turns the kernels off: every quantized layer stays emulated), read once, or
- code runs inside `forced(name)` (tests and benchmarks run each path in one process).

Forcing a build the CPU lacks is an error (it would die on an illegal instruction).
"""

from __future__ import annotations

import contextlib

from suite import settings
from suite.kernels import build

ENV = "SUITE_KERNELS_ISA"
ISAS = ("portable", "avx2", "avx512bw", "avx512_vpopcntdq")  # slowest first; index = the C++ build's number
_NEEDS = {"portable": (), "avx2": ("avx2",), "avx512bw": ("avx512f", "avx512bw"),
          "avx512_vpopcntdq": ("avx512f", "avx512vpopcntdq")}

_forced: str | None = None
_env_choice: str | None = None
_env_read = False
_current: int | None = None  # cached index (the hot path reads it on every call)
_supported: tuple[str, ...] | None = None  # the CPU's features do not change


def _env() -> str:
    global _env_choice, _env_read
    if not _env_read:
        value = settings.kernels_isa()
        if value not in ("auto", "off", *ISAS):
            raise ValueError(f"{ENV}={value!r}: expected auto, off, {', '.join(ISAS)}")
        _env_choice, _env_read = value, True
    return _env_choice


def supported() -> tuple[str, ...]:
    """The builds this CPU can run (compiled for this architecture and with the features present)."""
    global _supported
    if _supported is None:
        ext = build.load()
        if ext is None:
            return ()
        features = ext.cpu_features()
        _supported = tuple(name for i, name in enumerate(ISAS)
                           if ext.compiled(i) and all(features.get(f, False) for f in _NEEDS[name]))
    return _supported


def why_unsupported(name: str) -> str:
    """A reason for a test's skip message: which feature the CPU lacks."""
    ext = build.load()
    if ext is None:
        return f"the kernels could not be built ({build.error()})"
    features = ext.cpu_features()
    missing = [f for f in _NEEDS[name] if not features.get(f, False)]
    return f"this CPU lacks {', '.join(missing)}" if missing else f"{name} is not compiled on this architecture"


def chosen() -> str | None:
    """The build that runs now (None: kernels off or unavailable)."""
    if _forced is not None:
        return _forced
    if _current is not None:
        return ISAS[_current]
    env = _env()
    if env == "off":
        return None
    ok = supported()
    if not ok:
        return None
    if env != "auto":
        if env not in ok:
            raise RuntimeError(f"{ENV}={env}: {why_unsupported(env)}")
        return env
    return ok[-1]


def index() -> int:
    """chosen()'s build number for the C++ calls (raises when the kernels are off or unavailable)."""
    global _current
    if _current is None:
        name = chosen()
        if name is None:
            raise RuntimeError(f"the bit-packed kernels are off or unavailable ({status()})")
        _current = ISAS.index(name)
    return _current


@contextlib.contextmanager
def forced(name: str):
    """Within the block every kernel call runs the build `name` (skipping a test where
    `name not in supported()` is the caller's job: forcing a build the CPU lacks raises here)."""
    global _forced, _current
    if name not in ISAS:
        raise ValueError(f"unknown build {name!r}; builds: {', '.join(ISAS)}")
    if name not in supported():
        raise RuntimeError(f"cannot force {name}: {why_unsupported(name)}")
    before, _forced, _current = _forced, name, None
    try:
        yield
    finally:
        _forced, _current = before, None


def status() -> str:
    """For run records: the build in use, or why none is."""
    if _forced is None and _env() == "off":
        return f"off ({ENV}=off)"
    if build.load() is None:
        return f"unavailable ({build.error()})"
    name = chosen()
    return name if name is not None else "unavailable (no build for this CPU)"
