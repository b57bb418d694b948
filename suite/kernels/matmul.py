"""Products of packed matrices: XNOR-popcount for signs, bit-serial AND-popcount for unsigned codes.

For sign vectors a, b of length K (bit 1 = -1): a . b = K - 2 popcount(a xor b) (XNOR-Net, Rastegari
et al. 2016, Sec. 3.2: "binary dot products ... computed by XNOR and bitcounting operations").
For unsigned codes x = sum_p 2^p x_p and y = sum_q 2^q y_q (bit planes x_p, y_q):
x . y = sum_{p,q} 2^(p+q) popcount(x_p and y_q) (DoReFa-Net, Zhou et al. 2016, Eq. 3).

`xnor_matmul` and `bitserial_matmul` are the exact integer products; `linear` computes a quantized
linear layer's float output from them (the forms in suite/kernels/forms.py say which values the
bits stand for).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from suite.kernels import dispatch
from suite.kernels.forms import Codes, MaskedSigns, Signs
from suite.kernels.packing import Packed, _ext, as_panels, code_sums, plane_rows

XOR, AND, XOR_MASK_A = 0, 1, 2
_INT32 = 2**31 - 1


def _check_pair(a: Packed, b: Packed) -> None:
    if a.length != b.length:
        raise ValueError(f"the operands' rows differ in length: {a.length} and {b.length}")


def xnor_matmul(a: Packed, b: Packed) -> torch.Tensor:
    """int32 (M, N): sign(A) sign(B)^T exactly, for A (M, K) and B (N, K) packed by `pack_signs`
    (B shaped like a Linear's weight; packed as panels once, `pack_signs(w, "panels")`, it is not
    re-laid on every call)."""
    if a.bits or b.bits:
        raise ValueError("xnor_matmul takes signs (pack_signs); unsigned codes go to bitserial_matmul")
    if b.layout != "panels":
        b = as_panels(b)
    if a.length != b.length:
        _check_pair(a, b)
    return _ext().xnor_gemm(a.words, b.words, b.n, a.length, dispatch.index())


def bitserial_matmul(a: Packed, b: Packed) -> torch.Tensor:
    """int32 (M, N): sum_k a_ik b_jk for unsigned codes A (M, K) and B (N, K) packed by `pack_codes`
    (any bit widths: a k-bit by m-bit product takes k m AND-popcount passes)."""
    if not a.bits or not b.bits:
        raise ValueError("bitserial_matmul takes unsigned codes (pack_codes); signs go to xnor_matmul")
    _check_pair(a, b)
    if a.length * (2**a.bits - 1) * (2**b.bits - 1) > _INT32:
        raise ValueError("the products could overflow int32")
    b = as_panels(b)
    return _ext().gemm(AND, plane_rows(a), b.words, b.n, 0, 1, 0, 0, None, None, False, None, None, 1.0, None, None,
                       dispatch.index())


@dataclass(frozen=True)
class Terms:
    """A quantized product's exact integer part I and its float factor: x W^T = factor * w_scale * I,
    I = c0 + c1 U + crow rowsum(x) + ccol colsum(W), U the popcount sum of the kernel's op."""

    op: int
    c0: int
    c1: int
    crow: int
    ccol: int
    factor: float
    bound: int  # |I| <= bound


@functools.lru_cache(maxsize=256)
def terms(x_form: Signs | Codes, w_form: Signs | Codes, k: int) -> Terms:
    """The integer part of x . w over K values, for the forms the bits stand for:

    - x signs, W signs:  I = K - 2 popcount(x xor w)                               factor 1
    - x masked signs (s sign or 0), W signs:  I = popcount(m) - 2 popcount((x xor w) and m)   factor s
    - x codes (a c + b), W signs:  I = d (sum c - 2 sum c [w < 0]) + (d b / a) sum sign(w),
      d the smallest integer making d b / a an integer (b = 0: d = 1)                 factor a / d
    - x codes (a c), W codes 2 c' / n - 1:  I = 2 sum c c' - n sum c                  factor a / n
    """
    if isinstance(x_form, Signs) and isinstance(w_form, Signs):
        return Terms(XOR, k, -2, 0, 0, 1.0, k)
    if isinstance(x_form, MaskedSigns) and isinstance(w_form, Signs):
        return Terms(XOR_MASK_A, 0, -2, 1, 0, x_form.scale, 3 * k)
    if not isinstance(x_form, Codes):
        raise ValueError(f"no packed product for inputs {x_form} and weights {w_form}")
    top_x = x_form.top
    if isinstance(w_form, Signs):
        d = _denominator(x_form.offset / x_form.step)
        ccol = round(d * x_form.offset / x_form.step)
        return Terms(AND, 0, -2 * d, d, ccol, x_form.step / d, k * (3 * d * top_x + abs(ccol)))
    if not isinstance(w_form, Codes) or not w_form.symmetric() or x_form.offset:
        raise ValueError(f"no packed product for inputs {x_form} and weights {w_form}")
    return Terms(AND, 0, 2, -w_form.top, 0, x_form.step / w_form.top, 3 * k * top_x * w_form.top)


def _denominator(r: float) -> int:
    for d in range(1, 65):
        if abs(d * r - round(d * r)) < 1e-9 * max(1.0, abs(d * r)):
            return d
    raise ValueError(f"the input codes' offset / step = {r} is not a ratio of small integers")


def linear(x: Packed, x_form: Signs | Codes, w: Packed, w_form: Signs | Codes, bias: torch.Tensor | None = None,
           w_scale: torch.Tensor | float = 1.0, w_signs_sum: torch.Tensor | None = None) -> torch.Tensor:
    """float32 (M, N): x W^T + bias for a quantized layer, from x packed as rows (M, K) and W as
    panels (N, K): factor * s_j * I + b_j with the exact integer I of `terms` and s_j = w_scale (a
    float, or one per output: XNOR-Net's alpha). Inputs with an offset (codes a c + b, b != 0) need
    `w_signs_sum` (int32 sum_k sign(w_jk) per output, `signs_sum`)."""
    _check_pair(x, w)
    w = as_panels(w)
    t = terms(x_form, w_form, x.length)
    _check_range(t.bound)
    cs = _f32(w_scale) if isinstance(w_scale, torch.Tensor) else None
    scale = t.factor * (1.0 if cs is not None else float(w_scale))
    cb = _f32(bias) if bias is not None else None
    rowsum = code_sums(x) if t.crow else None
    return _ext().gemm(t.op, plane_rows(x), w.words, w.n, t.c0, t.c1, t.crow, t.ccol, rowsum,
                       w_signs_sum if t.ccol else None, True, None, cs, scale, None, cb, dispatch.index())


def linear_signs(x: Packed, x_form: Signs | Codes, w: Packed, w_form: Signs | Codes, thr: torch.Tensor,
                 flip: torch.Tensor, w_signs_sum: torch.Tensor | None = None) -> Packed:
    """The product thresholded into the next layer's packed signs: output j of row i is -1 (bit 1)
    where (I_ij < thr_j) xor flip_j, I the exact integer of `terms` (an inference model's BatchNorm
    and sign folded into one integer comparison per output)."""
    _check_pair(x, w)
    w = as_panels(w)
    t = terms(x_form, w_form, x.length)
    _check_range(t.bound)
    rowsum = code_sums(x) if t.crow else None
    words = _ext().gemm_bits(t.op, plane_rows(x), w.words, w.n, t.c0, t.c1, t.crow, t.ccol, rowsum,
                             w_signs_sum if t.ccol else None, thr, flip, dispatch.index())
    return Packed(words, w.n)


def signs_sum(w_rows: Packed) -> torch.Tensor:
    """int32 sum_k sign(w_jk) per row of packed signs (rows layout): K - 2 (count of -1s)."""
    return (w_rows.length - 2 * code_sums(w_rows)).int()


def _f32(t: torch.Tensor) -> torch.Tensor:
    """A contiguous float32 tensor without autograd history (as it is, when it already is one)."""
    if t.dtype is torch.float32 and not t.requires_grad and t.is_contiguous():
        return t
    return t.detach().float().contiguous()


def _check_range(bound: int) -> None:
    if bound > _INT32:
        raise ValueError("the integer parts could overflow int32")
