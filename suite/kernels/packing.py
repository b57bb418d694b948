"""The packed format: rows of values as 64-bit words of bits, and the functions that pack tensors.

Format (the C++ reads exactly this; lowbit.h says the same):

- a row of K values takes ceil(K / 64) words (int64 tensors, read as unsigned); value k sits in word
  k // 64 at bit k % 64, least significant bit first; the bits past K in the last word are 0 (the
  xnor kernel relies on it: 0 xor 0 adds no disagreement, so K - 2 popcount(a xor b) stays exact);
- signs (`bits == 0`): bit 1 where the value is negative, 0 where it is >= 0: sign(0) = sign(-0.0)
  = +1, the suite's convention (`suite.quant.sign_pm1`); a NaN goes by its sign bit, as there;
- unsigned k-bit codes (`bits == k`): k bit planes, plane p holding bit p of every code;
- signs some of which are 0 (`mask`): two planes, the sign bits and the nonzero bits;
- layout "rows": signs (*rows, nw), codes and masked signs (planes, *rows, nw); layout "panels" (the B operand of a
  product, re-laid once for the micro-kernels: a Linear's packed weights): (ceil(N / 32), planes,
  nw, 32), word w of 32 consecutive rows side by side, rows past N zero.

A convolution's input is packed per pixel over the channels of each group, (N, H, W, G, planes,
wc) with wc = ceil(C / G / 64); its weights as rows of kh kw wc words (tap-major, each tap's channel
bits in their own words, so that a patch is whole words copied from the packed input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from suite.kernels import build, dispatch

NR = 32  # rows per panel (lowbit.h's kNR)


@dataclass(frozen=True, eq=False)
class Packed:
    """Packed rows (see the module docstring): `words`, the row length `length` (K), `bits` (0 for
    signs, k for k-bit codes), the `layout` ("rows" or "panels"), for panels the row count `n`, and
    `mask` for signs some of which are 0 (a second plane of nonzero bits)."""

    words: torch.Tensor
    length: int
    bits: int = 0
    layout: str = "rows"
    n: int = -1  # panels: rows before padding to a multiple of 32
    mask: bool = False

    @property
    def planes(self) -> int:
        return 2 if self.mask else max(self.bits, 1)

    @property
    def rows(self) -> int:
        """How many rows were packed (N for panels; the product of the leading axes for rows)."""
        if self.layout == "panels":
            return self.n
        lead = self.words.shape[1:-1] if self.planes > 1 or self.bits else self.words.shape[:-1]
        return int(torch.Size(lead).numel())

    @property
    def nbytes(self) -> int:
        return self.words.numel() * self.words.element_size()


def words_for(length: int) -> int:
    return (length + 63) // 64


def _ext():
    ext = build.load()
    if ext is None:
        raise RuntimeError(f"the bit-packed kernels are unavailable: {build.error()}")
    return ext


def _rows2d(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 0:
        raise ValueError("a scalar has no row to pack")
    return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x


def pack_signs(x: torch.Tensor, layout: str = "rows") -> Packed:
    """The sign bits of a float tensor (sign(0) = +1) along its last axis, any length.

    rows: words shaped (*x.shape[:-1], ceil(K / 64)); panels (x 2-D (N, K), a product's B operand):
    (ceil(N / 32), 1, nw, 32)."""
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    k = x.shape[-1]
    words = _ext().pack_signs(_rows2d(x.detach()), 0, dispatch.index()).view(*x.shape[:-1], words_for(k))
    packed = Packed(words, k)
    return as_panels(packed) if layout == "panels" else packed


def sign_and_pack(w: torch.Tensor) -> tuple[torch.Tensor, Packed]:
    """A 2-D float32 tensor's signs (sign(0) = +1) as floats and as packed rows, reading it once (the
    backward pass multiplies by the floats, the forward pass by the bits)."""
    signs, words = _ext().sign_pack(w.detach().contiguous(), dispatch.index())
    return signs, Packed(words, w.shape[-1])


def pack_masked_signs(x: torch.Tensor) -> Packed:
    """Signs some of which are 0 (dropout after a sign): planes (2, *x.shape[:-1], nw), the sign bits
    and the nonzero bits (a 0 contributes nothing to a product)."""
    x2, ext, isa = _rows2d(x.detach().float()), _ext(), dispatch.index()
    words = torch.stack([ext.pack_signs(x2, 0, isa), ext.pack_signs(x2, 1, isa)])
    return Packed(words.view(2, *x.shape[:-1], words_for(x.shape[-1])), x.shape[-1], mask=True)


def pack_codes(x: torch.Tensor, bits: int, scale: float = 1.0, offset: float = 0.0, layout: str = "rows") -> Packed:
    """Unsigned `bits`-bit codes c = clamp(round(x scale + offset), 0, 2^bits - 1) (round half to even,
    as torch.round) along the last axis, as `bits` bit planes: rows (bits, *x.shape[:-1], nw)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    k = x.shape[-1]
    words = _ext().pack_codes(_rows2d(x.detach().float()), bits, float(scale), float(offset), dispatch.index())
    packed = Packed(words.view(bits, *x.shape[:-1], words_for(k)), k, bits)
    return as_panels(packed) if layout == "panels" else packed


def as_panels(p: Packed) -> Packed:
    """A 2-D operand (N rows) re-laid as panels for the B side of a product (kept as is if it is)."""
    if p.layout == "panels":
        return p
    rows = p.words if p.planes > 1 or p.bits else p.words.unsqueeze(0)
    if rows.dim() != 3:
        raise ValueError(f"panels are made of a 2-D operand (N, K); got rows shaped {tuple(p.words.shape)}")
    return Packed(_ext().to_panels(rows.contiguous(), dispatch.index()), p.length, p.bits, "panels", rows.shape[1],
                  p.mask)


def plane_rows(p: Packed) -> torch.Tensor:
    """A rows operand as (planes, rows, nw) words (the A side of a product)."""
    if p.layout != "rows":
        raise ValueError("the A operand of a product must be in rows")
    w = p.words if p.planes > 1 or p.bits else p.words.unsqueeze(0)
    if w.dim() != 3:
        w = w.reshape(w.shape[0], -1, w.shape[-1])
    return w if w.is_contiguous() else w.contiguous()


def code_sums(p: Packed) -> torch.Tensor:
    """Per row, the sum of its codes (signs: the count of -1s; masked signs: the count of nonzeros), int32."""
    rows = plane_rows(p)
    return _ext().plane_sums(rows[1:] if p.mask else rows, dispatch.index())


def pack_conv_input(x: torch.Tensor, groups: int = 1, bits: int = 0, scale: float = 1.0,
                    offset: float = 0.0) -> torch.Tensor:
    """An (N, C, H, W) input as (N, H, W, G, planes, wc) words: its signs (bits = 0), its signs and
    nonzero bits (bits = -1: masked signs) or its codes."""
    return _ext().pack_nchw(x.detach().float().contiguous(), groups, bits, float(scale), float(offset),
                            dispatch.index())


def pack_conv_weight(w: torch.Tensor, bits: int = 0, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """(O, C/G, kh, kw) weights as (planes, O, kh kw wc) words, tap-major: signs or codes."""
    o, cg, kh, kw = w.shape
    rows = w.detach().permute(0, 2, 3, 1).reshape(o * kh * kw, cg)
    p = pack_signs(rows) if bits == 0 else pack_codes(rows, bits, scale, offset)
    words = p.words.unsqueeze(0) if bits == 0 else p.words
    return words.reshape(words.shape[0], o, kh * kw * words_for(cg))


def conv_tap_sums(packed_weight: torch.Tensor, cg: int, taps: int) -> torch.Tensor:
    """sum_c sign(W[o, c, t]) per output channel o and tap t (int32 (O, taps)) from packed signs: what
    the +1s packed in the zero padding add, which the convolution subtracts."""
    o = packed_weight.shape[1]
    negatives = _ext().plane_sums(packed_weight.reshape(1, o * taps, -1).contiguous(), dispatch.index())
    return (cg - 2 * negatives).view(o, taps)
