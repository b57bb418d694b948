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

import torch

from suite.kernels import dispatch
from suite.kernels.forms import Codes, Signs
from suite.kernels.packing import Packed, _ext, as_panels, code_sums, plane_rows

XOR, AND = 0, 1
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


def linear(x: Packed, x_form: Signs | Codes, w: Packed, w_form: Signs | Codes, bias: torch.Tensor | None = None,
           w_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """float32 (M, N): x W^T + bias for a quantized layer, from x packed as rows (M, K) and W as
    panels (N, K), with the values the forms give the bits:

    - x signs, W signs:     y = s_j (K - 2 popcount(x xor w)) + b_j
    - x codes (step a), W signs:     y = a s_j (sum_k c_k - 2 sum_k c_k [w_jk < 0]) + b_j
    - x codes (step a), W codes (DoReFa's k-bit, 2 c'/n - 1):  y = a/n (2 sum_k c_k c'_k - n sum_k c_k) + b_j

    s_j = w_scale (a float, or one per output: XNOR-Net's alpha). The integer in parentheses is exact;
    one multiplication and one addition in float32 follow."""
    _check_pair(x, w)
    w = as_panels(w)
    m, n = x.rows, w.n
    cs = w_scale if isinstance(w_scale, torch.Tensor) else None
    scale = 1.0 if cs is not None else float(w_scale)
    if cs is not None:
        cs = cs.detach().float().contiguous()
    cb = bias.detach().float().contiguous() if bias is not None else None
    k = x.length
    if isinstance(x_form, Signs) and isinstance(w_form, Signs):
        return _ext().gemm(XOR, plane_rows(x), w.words, n, k, -2, 0, 0, None, None, True, None, cs, scale, None, cb,
                           dispatch.index())
    if not isinstance(x_form, Codes) or x_form.offset:
        raise ValueError(f"no packed product for inputs {x_form} and weights {w_form}")
    rowsum = code_sums(x)
    scale *= x_form.step
    if isinstance(w_form, Signs):
        _check_range(k * (2**x.bits - 1) * 3)
        return _ext().gemm(AND, plane_rows(x), w.words, n, 0, -2, 1, 0, rowsum, None, True, None, cs, scale, None, cb,
                           dispatch.index())
    if not isinstance(w_form, Codes) or not w_form.symmetric():
        raise ValueError(f"no packed product for inputs {x_form} and weights {w_form}")
    top = w_form.top
    _check_range(k * (2**x.bits - 1) * top * 3)
    return _ext().gemm(AND, plane_rows(x), w.words, n, 0, 2, -top, 0, rowsum, None, True, None, cs, scale / top, None,
                       cb, dispatch.index()).view(m, n)


def _check_range(bound: int) -> None:
    if bound > _INT32:
        raise ValueError("the integer parts could overflow int32")
