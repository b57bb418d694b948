"""Random directions for forward gradients, drawn from a counter-based generator.

A forward-gradient step draws one d-vector per direction (d = the trainable parameters). torch's
CPU generator (mt19937) draws one number after another on one thread: 6.4 ms for the 1.9 M
weights of the MNIST MLP with 2 threads, about two thirds of a backprop step there, so a step
that draws its direction with it cannot cost one backprop step. Here element e of direction s
under a step's key K is a pure function of (K, s, e): Philox4x32-10 (Salmon, Moraes, Dror, Shaw,
"Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011; the generator of cuRAND and of torch's
CUDA RNG) of the counter (e div 4, s) under the key K gives 4 words, turned into

    gaussian:    Box-Muller, z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), u1 in (0, 1], u2 in [0, 1)
                 (24-bit uniforms for float32, 32-bit for float64);
    rademacher:  +1 or -1 by the word's top bit (probability 1/2 each).

So a direction is drawn on all of torch's threads, the same on any thread count, and can be drawn
again from its key rather than kept (`fill` is cheap enough to call twice). The distributions are
those of torch's ``normal_`` and ``random_(0, 2) * 2 - 1`` (the estimator is unchanged:
E[v v^T] = I), the values are not: the same run seed gives other directions than the torch draws
before this change. The method draws each step's key from its own torch generator (seeded from
the run's seed), so checkpoints restore the directions with the generator's state.

The kernel is C++ (``philox.h``; ``directions.cpp`` binds it; built once per machine by
torch.utils.cpp_extension), in AVX-512, AVX2 and portable builds that draw the same words (the
gaussians agree to float32 rounding: AVX-512 fuses multiply-adds), the widest the CPU runs chosen
when it loads (``kernels().use_isa(name)`` switches, for tests). Where
it cannot be built (or with SUITE_FUSED_KERNELS=0) the draws come from torch's generator seeded by
(key, stream): deterministic and regenerable too, other values, slower; `status()` says which.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import torch

from suite.quant import fused

_SOURCE = Path(__file__).with_name("directions.cpp")
_NAME = "lowbit_suite_directions"
_lock = threading.Lock()
_module = None
_error: str | None = None
_tried = False


def kernels():
    """The built module, or None (with one warning saying why) where it cannot be built."""
    global _module, _error, _tried
    if _tried:
        return _module
    with _lock:
        if _tried:
            return _module
        _tried = True
        if fused._env_off():  # the suite's one switch for its CPU kernels
            _error = f"{fused.ENV}=0"
            return None
        try:
            from suite.extensions import load

            _module = load(_NAME, _SOURCE, "the direction sampler", ["-O3", "-fno-math-errno"], openmp=True)
        except Exception as e:
            lines = [line for line in str(e).strip().splitlines() if line.strip()]
            _error = f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]
            warnings.warn(f"suite: the direction sampler could not be built ({_error}); forward-gradient "
                          "directions come from torch's generator instead (other values, slower)",
                          RuntimeWarning, stacklevel=2)
    return _module


def status() -> str:
    if kernels() is not None:
        return f"philox ({_module.isa()})"
    return f"torch generator ({_error})"


def _served(out: torch.Tensor) -> bool:
    return (out.device.type == "cpu" and out.is_contiguous() and out.dtype in (torch.float32, torch.float64)
            and kernels() is not None)


def _torch_draw(out: torch.Tensor, key: int, stream: int, distribution: str) -> None:
    g = torch.Generator(device=out.device).manual_seed((key * 1_000_003 + stream) % 2**63)
    if distribution == "gaussian":
        out.normal_(generator=g)
    else:
        out.random_(0, 2, generator=g).mul_(2).sub_(1)


def fill(out: torch.Tensor, key: int, stream: int, distribution: str, scale: float = 1.0) -> torch.Tensor:
    """out = scale * direction `stream` of the step with `key` (a flat contiguous tensor, or any
    tensor: non-contiguous ones are drawn flat and copied in)."""
    if distribution not in ("gaussian", "rademacher"):
        raise ValueError(f"distribution must be 'gaussian' or 'rademacher', got {distribution!r}")
    if _served(out):
        getattr(_module, distribution)(out, key, stream, scale)
        return out
    if out.is_contiguous():
        _torch_draw(out, key, stream, distribution)
        return out.mul_(scale) if scale != 1.0 else out
    flat = torch.empty(out.numel(), dtype=out.dtype, device=out.device)
    fill(flat, key, stream, distribution, scale)
    return out.copy_(flat.view(out.shape))
