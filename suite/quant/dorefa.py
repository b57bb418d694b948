"""DoReFa-Net (Zhou, Wu, Ni, Zhou, Wen, Zou; arXiv 1606.06160v3): k-bit weights, activations and
gradients (the W/A/G of its tables), built on one quantizer,

    quantize_k(r) = round((2^k - 1) r) / (2^k - 1),   r in [0, 1]          (Sec. 2.2)
    backward: dc/dr_i = dc/dr_o                                             (straight through)

With 32 bits each quantizer is the identity ("When bitwidth is 32, we simply remove the
quantization functions", Table 1 caption). The paper does not say how round() breaks ties;
torch.round rounds halves to even, as tf.round in the authors' tensorpack code does. Ties matter
for the k-bit weights: a zero weight maps to r = 1/2, always a tie since 2^k - 1 is odd
(quantize_k(1/2) = 2/3 for k = 2, so W = 0 becomes +1/3).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.fast_functions import fast
from suite.quant import fused, packing
from suite.quant.binary import inside, sign_pm1
from suite.quant.noise import uniform_centered
from suite.quant.registry import register
from suite.quant.ste import StraightThrough


def _check_bits(bits, allowed: str = "1..16 or 32") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not (1 <= bits <= 16 or bits == 32):
        raise ValueError(f"bits must be an integer in {allowed}, got {bits!r}")
    return bits


def quantize_k(r: torch.Tensor, bits: int) -> torch.Tensor:
    """quantize_k(r) = round((2^k - 1) r) / (2^k - 1): the 2^k levels j / (2^k - 1) of [0, 1]
    (no gradient estimator; `_QuantizeK` is the straight-through version)."""
    n = 2**bits - 1
    return (r * n).round_().div_(n)


class _QuantizeK(StraightThrough):
    """quantize_k forward; gradient and tangent straight through (DoReFa's STE)."""

    @staticmethod
    def forward(r, bits):
        return quantize_k(r, bits)


class _BinaryMeanScaled(StraightThrough):
    """sign(W) E(|W|) forward, E the mean over the whole layer; straight through backward."""

    @staticmethod
    def forward(w):
        if fused.serves(w) and fused.kernels() is not None:  # E|W| reading W only, then one pass
            e = fused.kernels().row_l1(w).sum().div_(w.numel())
            return sign_pm1(w, e)
        buf = torch.abs(w)
        e = buf.sum().div_(w.numel())
        return sign_pm1(w, e, out=buf)  # sign(W) E written over the |W| buffer: one fresh tensor


_binary_mean_scaled = fast(_BinaryMeanScaled)


class _TanhQuantize(torch.autograd.Function):
    """DoReFa's k-bit weights, 2 quantize_k(tanh(W) / (2 m) + 1/2) - 1 with m = max |tanh(W)|, and
    the exact chain rule with quantize_k straight through, written out: the autograd graph of the
    same composition makes a dozen passes over W where this makes five.

    d r_o / d W = (1 - t^2) / m - t (1 - t*^2) sign(t*) / m^2 e*,  t = tanh(W), t* = tanh(W*) at the
    weight W* of largest |W| (the first one on ties: a subgradient of the max).
    """

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(w, bits):
        n = 2**bits - 1
        t = torch.tanh(w)
        flat = t.view(-1)
        hi, i_hi = flat.max(0)
        lo, i_lo = flat.min(0)
        top = hi >= -lo
        m = torch.where(top, hi, -lo)
        m = torch.where(m > 0, m, 1.0)  # an all-zero W: r = 1/2 and a finite gradient, not 0/0
        idx = torch.where(top, i_hi, i_lo)
        # n (t / (2 m) + 1/2), rounded: j in 0..n; r_o = (j - n/2) (2/n)
        out = torch.addcmul(torch.full((), n / 2, dtype=w.dtype, device=w.device), t, n / (2 * m))
        return out.round_().sub_(n / 2).mul_(2 / n), t, m, idx

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, t, m, idx = output
        ctx.mark_non_differentiable(t, m, idx)
        ctx.save_for_backward(t, m, idx)
        ctx.save_for_forward(t, m, idx)

    @staticmethod
    def _direct(t, m, v):
        """(1 - t^2) v / m: d(t/m)/dW with m held fixed (out of place in v, which vmap may batch)."""
        return torch.addcmul(v, v, t * t, value=-1).div_(m)

    @staticmethod
    def _dm(t, m, idx):
        """dm/dW* / m^2 = sign(t*) (1 - t*^2) / m^2."""
        t_star = t.view(-1)[idx]
        return torch.sign(t_star) * (1 - t_star * t_star) / (m * m)

    @staticmethod
    def backward(ctx, grad, _t, _m, _idx):
        t, m, idx = ctx.saved_tensors
        out = _TanhQuantize._direct(t, m, grad)
        # through m: sum_j g_j d(t_j/m)/dm = -sum_j g_j t_j / m^2, carried to W* alone
        coef = torch.dot(grad.reshape(-1), t.view(-1)) * _TanhQuantize._dm(t, m, idx)
        out.view(-1).index_add_(0, idx.view(1), -coef.view(1))
        return out, None

    @staticmethod
    def jvp(ctx, tangent, _):
        t, m, idx = ctx.saved_tensors
        out = _TanhQuantize._direct(t, m, tangent)
        # dm = sign(t*) (1 - t*^2) v*, and d(t/m) gets -t dm / m^2 everywhere
        out = out.sub_(t * (tangent.reshape(-1)[idx] * _TanhQuantize._dm(t, m, idx)))
        return out, None, None, None


_tanh_quantize = fast(_TanhQuantize)


@register
class DoReFaWeight(nn.Module):
    """DoReFa-Net weight quantizer f_w^k (Sec. 2.3).

    k = 1:  forward  r_o = sign(r_i) E(|r_i|)  (sign(0) = +1), E the mean of |r_i| over the whole
            layer: one constant scalar for all filters instead of XNOR-Net's per-channel alpha, so
            that the backward convolutions stay bit operations (the authors' slides: "Simplified
            scaled binarization: only scalar");
            backward dc/dr_i = dc/dr_o (E treated as a constant, as the paper's STE states and the
            authors' tensorpack code does with stop_gradient).
    k > 1:  forward  r_o = 2 quantize_k( tanh(r_i) / (2 max(|tanh(r_i)|)) + 1/2 ) - 1, the max over
            all weights of the layer, giving the 2^k levels 2j/(2^k - 1) - 1 of [-1, 1];
            backward dc/dr_i = (dr_o/dr_i) dc/dr_o with quantize_k straight through: the chain
            rule through tanh and through the max (tensorpack does not stop its gradient; on ties
            the first largest weight takes the max's share, a subgradient).
    k = 32: identity.
    """

    name = "dorefa_weight"
    roles = frozenset({"weight"})

    def __init__(self, bits: int = 1):
        super().__init__()
        self.bits = _check_bits(bits)

    def forward(self, w):
        k = self.bits
        if k == 32:
            return w
        if k == 1:
            return _binary_mean_scaled(w)
        return _tanh_quantize(w, k)[0]

    def stored_scales(self, weight: torch.Tensor) -> int:
        """E(|W|) for k = 1; the k-bit levels of [-1, 1] need no scale."""
        return 1 if self.bits == 1 else 0

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class _ClipQuantize(torch.autograd.Function):
    """quantize_k(clip(r, 0, 1)) forward; g * 1_{0 <= r <= 1} backward and on the tangent."""

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(x, bits):
        n = 2**bits - 1
        return x.clamp(0.0, 1.0).mul_(n).round_().div_(n)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return inside(x, 0.0, 1.0).mul_(grad), None

    @staticmethod
    def jvp(ctx, tangent, _):
        (x,) = ctx.saved_tensors
        return tangent * inside(x, 0.0, 1.0)  # not in place: the tangent may be batched (vmap)


_clip_quantize = fast(_ClipQuantize)


class _ClipQuantizeMasked(_ClipQuantize):
    """_ClipQuantize saving the mask 1_{0 <= r <= 1} (bool; 1 bit under `packing.saving_in_bits`)
    instead of r: the same gradient for every finite r."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        mask = inside(inputs[0], 0.0, 1.0).bool()
        ctx.save_for_backward(mask)
        ctx.save_for_forward(mask)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None

    @staticmethod
    def jvp(ctx, tangent, _):
        (mask,) = ctx.saved_tensors
        return tangent * mask


_clip_quantize_masked = fast(_ClipQuantizeMasked)


@register
class DoReFaActivation(nn.Module):
    """DoReFa-Net activation quantizer f_a^k (Sec. 2.4): f_a^k(r) = quantize_k(r) for r in [0, 1].

    The paper assumes "the output of the previous layer has passed through a bounded activation
    function h, which ensures r in [0, 1]"; this quantizer applies that bound itself:
    forward  r_o = quantize_k(clip(r_i, 0, 1))        (2^k levels j/(2^k - 1) of [0, 1])
    backward dc/dr_i = dc/dr_o 1_{0 <= r_i <= 1}       (clip's gradient, bounds included; quantize_k
                                                        straight through)
    k = 32: identity (the quantization function, clip included, is removed).
    """

    name = "dorefa_activation"
    roles = frozenset({"input"})

    def __init__(self, bits: int = 2, packed: bool = False):
        super().__init__()
        self.bits = _check_bits(bits)
        if not isinstance(packed, bool):
            raise ValueError(f"packed must be true or false, got {packed!r}")
        self.packed = packed  # save the k-bit codes and the mask in bits (`packing`)

    def forward(self, x):
        if self.bits == 32:
            return x
        if not self.packed or self.bits > 8:
            return _clip_quantize(x, self.bits)
        n = 2**self.bits - 1
        return packing.mark(_clip_quantize_masked(x, self.bits), self.bits, 1.0, 0.0, n)  # round(.) / n

    def extra_repr(self) -> str:
        return f"bits={self.bits}" + (", packed=True" if self.packed else "")


def quantize_gradient(dr: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa's f_g^k(dr) = 2 max0(|dr|) [quantize_k(dr / (2 max0(|dr|)) + 1/2 + N(k)) - 1/2], a fresh
    tensor; max0 per sample (over every axis but the first), N(k) = sigma / (2^k - 1), sigma ~ U(-1/2, 1/2)."""
    n = 2**bits - 1
    if dr.dim() > 1:
        m = torch.linalg.vector_norm(dr, float("inf"), dim=tuple(range(1, dr.dim())), keepdim=True)
    else:
        m = torch.linalg.vector_norm(dr, float("inf"))  # no batch axis: the tensor is one sample
    safe = torch.where(m > 0, m, 1.0)  # an all-zero sample maps to 0 below, not 0/0 (one value per sample)
    # n (dr / (2 m) + 1/2) + sigma, built in the noise buffer (the one fresh tensor)
    q = uniform_centered(dr).addcmul_(dr, n / (2 * safe)).add_(n / 2).round_()
    # n v + sigma lies in [-1/2, n + 1/2); float rounding of n + sigma near the max can reach
    # n + 1/2, which rounds (half to even) to n + 1: keep the 2^k levels
    q.clamp_(0, n)
    return q.mul_(2 * m / n).sub_(m)  # 2 m (q / n - 1/2)


class _GradientQuantize(torch.autograd.Function):
    """Identity forward (a copy, so that later in-place ops stay legal); f_g^k on the gradient;
    identity on the tangent (forward mode has no back-propagated error to quantize)."""

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(x, bits):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.bits = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return quantize_gradient(grad, ctx.bits), None

    @staticmethod
    def jvp(ctx, tangent, _):
        return tangent


_gradient_quantize = fast(_GradientQuantize)


@register
class DoReFaGradient(nn.Module):
    """DoReFa-Net gradient quantizer f_g^k (Sec. 2.5), the G of W/A/G, applied by a quantized layer
    to the gradient flowing back into its output (the back-propagated error):

    forward  r_o = r_i
    backward dc/dr_i = f_g^k(dc/dr_o) = 2 max0(|dr|) [quantize_k(dr / (2 max0(|dr|)) + 1/2 + N(k)) - 1/2]
             N(k) = sigma / (2^k - 1),  sigma ~ Uniform(-1/2, 1/2)
             max0: the maximum over all axes of dr except the mini-batch axis (one scale per sample)
    The noise makes it unbiased: E[f_g^k(dr)] = dr (the uniform dither of width one level turns
    rounding into stochastic rounding). Noise from torch's global generator, 16-bit resolution on
    the CPU (see `noise.uniform_centered`). k = 32: identity.
    """

    name = "dorefa_gradient"
    roles = frozenset({"gradient"})

    def __init__(self, bits: int = 6):
        super().__init__()
        self.bits = _check_bits(bits)

    def forward(self, x):
        # without a reverse-mode graph (eval, no_grad, forward-mode AD) there is nothing to quantize
        if self.bits == 32 or not x.requires_grad:
            return x
        return _gradient_quantize(x, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"
