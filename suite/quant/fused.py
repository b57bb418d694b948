"""Fused CPU kernels for the binary quantizers' weight-sized passes (the C++ is `binary_cpu.cpp`).

Why: on the CPU a binary-weight training step is bound by memory traffic over the weights, and
torch's ops make each extra quantity its own pass. sign(W) with sign(0) = +1 takes two (W + 0, then
copysign); XNOR-Net's alpha sign(W) three or four (alpha = mean |W| per channel, the sign, the
product), and BWN's exact weight gradient three more (the STE mask, the per-channel mean of
sign(W) g, + sign(W) c). One kernel per job does each in one pass over memory:

- `sign_scaled(x, s, out)`:         out = s sign(x)                              (sign_pm1)
- `row_l1(w)`:                      sum_j |W_ij|, reading W only                 (DoReFa's E|W|)
- `scaled_sign_rows(w)`:            (alpha_i sign(W_ij), alpha_i = mean_j |W_ij|)  (BWN forward)
- `bwn_weight_grad(g, w, alpha, out)`: out = alpha 1_{|W| <= 1} g + sign(W) mean_j(sign(W) g)
                                    (BWN backward; out may be g)

The two per-channel kernels read each row twice, the second time from the L1 cache. They run on
torch's threads (OpenMP, `_openmp_flags`), each at about the speed of a copy of W. Measured on the
1024 x 1024 linear layer at batch 200 (tests/test_benchmarks_layers.py): BWN's step from 1.2-1.4x
float with torch ops to 1.07-1.17x on an AMD EPYC, from 1.6x to 1.15-1.19x on an Intel Xeon.

The values are those of the torch ops (sums of |W| in another order: within float rounding).

The kernels are built once per machine by torch.utils.cpp_extension, which needs a C++ compiler
and Python's headers (about 20 s; cached under $TORCH_EXTENSIONS_DIR, by default
~/.cache/torch_extensions), the first time a quantizer is built (`prepare`, called by
`build_quantizer`, so that no timed epoch pays for it). Where they cannot be built, or with
SUITE_FUSED_KERNELS=0, the quantizers use the torch ops: same results, more passes; one warning
says why. They serve plain contiguous float32/float64 CPU tensors only; CUDA tensors, other dtypes
and torch.func's batched tensors (vmap over forward-gradient directions) take the torch ops. Run
records note which path ran (`provenance.fused_cpu_kernels`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path

import torch

from suite import settings

ENV = "SUITE_FUSED_KERNELS"  # "0" turns the kernels off
_SOURCE = Path(__file__).with_name("binary_cpu.cpp")
_NAME = "lowbit_suite_binary_cpu"
_DTYPES = (torch.float32, torch.float64)
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # not FakeTensor or other subclasses (torch.compile)

_lock = threading.Lock()
_module = None
_error: str | None = None  # why the kernels could not be built
_tried = False
_off = False  # set by `disabled()` (benchmarks compare both paths in one run)


def _env_off() -> bool:
    return settings.fused_kernels_off()


def prepare():
    """Build (first time on this machine) or load the kernels; the module, or None with a warning
    saying why. Safe to call from several processes at once (torch locks the build folder)."""
    global _module, _error, _tried
    if _tried:
        return _module
    with _lock:
        if _tried:
            return _module
        _tried = True
        if _env_off():  # read once: the quantizers ask `kernels()` on every step
            _error = f"{ENV}=0"
            return None
        try:
            _module = _build()
        except Exception as e:  # no compiler, no Python headers, a failed build: fall back, say why
            lines = [line for line in str(e).strip().splitlines() if line.strip()]
            _error = f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]
            warnings.warn(f"suite: the fused CPU kernels for the binary quantizers could not be built ({_error}); "
                          f"using torch ops instead (same results, slower on the CPU). Set {ENV}=0 to skip the "
                          "build.", RuntimeWarning, stacklevel=2)
    return _module


def _build():
    from suite.extensions import load

    return load(_NAME, _SOURCE, "the fused CPU kernels for the binary quantizers", cflags=["-O3"], openmp=True)


def status() -> str:
    """Which path the binary quantizers take on the CPU, for run records."""
    if _env_off() or _off:
        return f"off ({ENV}=0)"
    if _module is not None:
        return "on"
    return f"unavailable ({_error})" if _error else "not used"


@contextlib.contextmanager
def disabled():
    """Within the block the quantizers use the torch ops (to compare both paths in one process)."""
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


def kernels():
    """The loaded kernels, or None where they are off or unavailable (loading them if needed)."""
    if _off:
        return None
    return _module if _tried else prepare()


def serves(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: plain, dense, contiguous CPU float32/float64."""
    is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return all(type(t) in _PLAIN and t.device.type == "cpu" and t.dtype in _DTYPES and t.is_contiguous()
               and t.layout is torch.strided and not is_wrapped(t) for t in tensors)
