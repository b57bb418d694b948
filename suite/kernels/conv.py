"""Packed convolutions: signs by XNOR-popcount, unsigned codes by bit-serial AND-popcount.

The kernel is an implicit im2col: for each panel of 32 output positions it copies the patches' words
from the packed input (one word per 64 channels of a tap), then runs the product's micro-kernels with
the packed weights (C++: kernels_impl.h, `conv`). Stride, dilation and groups are the patch
addresses; zero padding is exact:

- signs: a padded position packs as +1 (bit 0), so each padded tap t adds sum_c sign(W[o, c, t]) to
  the XNOR count; the kernel subtracts it again for the positions near the border (the emulated
  layer's zero padding contributes 0: it is neither +1 nor -1);
- codes: a padded position is code 0, value 0 (DoReFa's activations have no offset): nothing to do;
- masked signs (dropout after the sign): a padded position is masked out like a dropped one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.modules.utils import _pair

from suite.kernels import dispatch
from suite.kernels.forms import Codes, MaskedSigns, Signs
from suite.kernels.packing import _ext, conv_tap_sums, pack_conv_input, pack_conv_weight

XOR, AND, XOR_MASK_B = 0, 1, 3


@dataclass(frozen=True, eq=False)
class ConvWeights:
    """Packed (O, C/G, kh, kw) weights: `words` (planes, O, kh kw wc), and for signs `tap_sums`
    (int32 (O, kh kw), the padding correction)."""

    words: torch.Tensor
    form: Signs | Codes
    shape: tuple[int, int, int, int]
    tap_sums: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        return self.words.numel() * 8 + (self.tap_sums.numel() * 4 if self.tap_sums is not None else 0)


def pack_weights(w: torch.Tensor, form: Signs | Codes) -> ConvWeights:
    """Pack a convolution's weights (their signs, or their codes under `form`)."""
    o, cg, kh, kw = w.shape
    if isinstance(form, Signs):
        words = pack_conv_weight(w)
        return ConvWeights(words, form, (o, cg, kh, kw), conv_tap_sums(words, cg, kh * kw))
    words = pack_conv_weight(w, form.bits, 1.0 / form.step, -form.offset / form.step)
    return ConvWeights(words, form, (o, cg, kh, kw), None)


def conv2d(x: torch.Tensor, x_form: Signs | Codes, w: ConvWeights, bias: torch.Tensor | None = None,
           w_scale: torch.Tensor | float = 1.0, stride=1, padding=0, dilation=1, groups: int = 1,
           integer: bool = False) -> torch.Tensor:
    """conv2d(x, W) + bias (zero padding) for x holding values of `x_form` and W packed, as float32
    (N, O, oh, ow): s_o I + b_o with I the exact integer part (returned as int32 with integer=True):

    - signs x signs:   I = sum sign(x) sign(W) over the patch (padded taps excluded)
    - masked signs (s sign or 0) x signs:   s s_o I,  I = the same sum over the nonzero inputs
    - codes (step a) x signs:   a s_o I,  I = sum c sign(W)
    - codes (step a) x codes (2 c'/n - 1):   a/n I,  I = sum c (2 c' - n)
    """
    o, cg, kh, kw = w.shape
    if x.dim() != 4 or x.shape[1] != cg * groups:
        raise ValueError(f"expected an input (N, {cg * groups}, H, W), got {tuple(x.shape)}")
    stride, padding, dilation = list(_pair(stride)), list(_pair(padding)), list(_pair(dilation))
    rs = w_scale.detach().float().contiguous() if isinstance(w_scale, torch.Tensor) else None
    scale = 1.0 if rs is not None else float(w_scale)
    rb = bias.detach().float().contiguous() if bias is not None else None
    ext, isa = _ext(), dispatch.index()
    geometry = (cg, kh, kw, stride, padding, dilation)
    if isinstance(x_form, Signs) and isinstance(w.form, Signs):
        xp = pack_conv_input(x, groups)
        tap_sums = w.tap_sums if any(padding) else None
        return ext.conv(XOR, xp, w.words, *geometry, kh * kw * cg, -2, 0, -1, tap_sums, not integer, rs, scale, rb,
                        isa)
    if isinstance(x_form, MaskedSigns) and isinstance(w.form, Signs):
        xp = pack_conv_input(x, groups, -1)
        return ext.conv(XOR_MASK_B, xp, w.words, *geometry, 0, -2, 1, 1, None, not integer, rs, scale * x_form.scale,
                        rb, isa)
    if not isinstance(x_form, Codes) or x_form.offset:
        raise ValueError(f"no packed convolution for inputs {x_form} and weights {w.form}")
    xp = pack_conv_input(x, groups, x_form.bits, 1.0 / x_form.step)
    scale *= x_form.step
    if isinstance(w.form, Signs):
        return ext.conv(AND, xp, w.words, *geometry, 0, -2, 1, -1, None, not integer, rs, scale, rb, isa)
    if not w.form.symmetric():
        raise ValueError(f"no packed convolution for inputs {x_form} and weights {w.form}")
    top = w.form.top
    return ext.conv(AND, xp, w.words, *geometry, 0, 2, -top, -1, None, not integer, rs, scale / top, rb, isa)


def binary_conv2d(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1,
                  groups: int = 1) -> torch.Tensor:
    """int32 conv2d(sign(x), sign(W)) with zero padding, exactly (sign(0) = +1)."""
    return conv2d(x, Signs(), pack_weights(weight, Signs()), None, 1.0, stride, padding, dilation, groups,
                  integer=True)
