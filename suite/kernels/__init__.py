"""Real low-bit arithmetic on the CPU: bit-packed XNOR-popcount and bit-serial kernels (C++/OpenMP).

A binary layer emulated in float32 multiplies +-1 values through the same GEMMs as a float layer;
packed, 64 of its products take one XOR and one popcount. This package packs tensors into bits
(`pack_signs`, `pack_codes`; the format: suite/kernels/packing.py) and multiplies them:

- `xnor_matmul(a, b)`: int32 (M, N), the exact +-1 dot products sign(A) sign(B)^T;
- `bitserial_matmul(a, b)`: int32 (M, N), exact products of unsigned k-bit and m-bit codes;
- `binary_conv2d(x, w, ...)`: int32, conv2d(sign(x), sign(W)) with zero padding, stride, dilation,
  groups; `conv.conv2d` and `matmul.linear` give a quantized layer's float output (suite/nn/packed.py
  runs the quantized layers on them).

The C++ is built once per machine (`build.py`), in three builds chosen at run time from the CPU's
features (`dispatch.py`: AVX-512 VPOPCNTDQ, AVX2, portable; SUITE_KERNELS_ISA or `forced` choose one),
and runs on torch's threads (OpenMP). `status()` says which build runs, for run records.
"""

from suite.kernels.conv import ConvWeights, binary_conv2d
from suite.kernels.dispatch import ISAS, forced, supported
from suite.kernels.forms import Codes, MaskedSigns, Signs
from suite.kernels.matmul import bitserial_matmul, xnor_matmul
from suite.kernels.packing import Packed, as_panels, pack_codes, pack_masked_signs, pack_signs


def status() -> str:
    """The build of the kernels that runs ("avx512_vpopcntdq", "avx512bw", "avx2", "portable"), or why none
    does."""
    from suite.kernels import dispatch

    return dispatch.status()


def threads_used(tasks: int = 64) -> int:
    """How many threads the kernels' parallel loops run on (torch's count; a test checks it)."""
    from suite.kernels import build

    return build.load().threads_used(tasks)


__all__ = ["ISAS", "Codes", "ConvWeights", "MaskedSigns", "Packed", "Signs", "as_panels", "binary_conv2d",
           "bitserial_matmul", "forced", "pack_codes", "pack_masked_signs", "pack_signs", "status", "supported",
           "threads_used", "xnor_matmul"]
