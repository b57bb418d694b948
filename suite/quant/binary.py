"""Binary quantizers: the sign function, BinaryConnect (deterministic and stochastic) and BNN's
sign with the saturating straight-through estimator."""

import math

import torch
import torch.nn as nn

from suite.fast_functions import fast
from suite.quant import fused, packing
from suite.quant.noise import random_int16
from suite.quant.registry import register
from suite.quant.ste import StraightThrough


def sign_pm1(x: torch.Tensor, scale: torch.Tensor | float | None = None, *,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """sign(x) with sign(0) = +1, the convention of every paper here (torch.sign(0) is 0); times
    `scale` (>= 0, broadcast to x's shape) if given. Written to `out` if given (may be x itself).
    No gradient (the quantizers state theirs in their autograd Functions).

    The one place in the suite where this convention lives (with its fused CPU kernel,
    `suite.quant.fused`, which computes the same copysign(scale, x + 0) in one pass).
    """
    if _fused_serves(x, scale, out):
        return fused.kernels().sign_scaled(x, 1.0 if scale is None else float(scale),
                                           torch.empty_like(x) if out is None else out)
    # Two passes: x + 0.0 is x except that -0.0 becomes +0.0 (IEEE 754 round to nearest), then
    # copysign(1, .) takes the sign bit: +1 for x >= 0 and -0.0, -1 for x < 0. (sign, + 0.5, sign
    # takes three passes; a torch.where on a bool mask costs ten times more on the CPU.) NaN gives
    # +1 or -1 by its sign bit: a NaN weight comes from NaN gradients, which reach the float
    # parameters (biases, BatchNorm) and the loss too, where the divergence check sees them.
    with torch.no_grad():  # out= ops refuse autograd
        t = torch.add(x, 0.0) if out is None else torch.add(x, 0.0, out=out)
        mag = torch.ones((), dtype=x.dtype, device=x.device) if scale is None else \
            torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        return torch.copysign(mag, t, out=t)


def _fused_serves(x, scale, out) -> bool:
    """The one-pass kernel takes a scalar scale (not a per-channel one) and an `out` like x."""
    if scale is not None and not isinstance(scale, (int, float)) and not (
            isinstance(scale, torch.Tensor) and scale.dim() == 0 and scale.device.type == "cpu"):
        return False
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or not fused.serves(out)):
        return False
    return fused.serves(x) and fused.kernels() is not None


def pass_where_pm1(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad * 1_{|x| <= 1} (bounds included) in one fused pass: hardtanh's backward kernel, which
    zeroes where x <= lo or x >= hi; with lo, hi = -(1 + eps), 1 + eps, the floats next to -1 and
    1, that is exactly |x| > 1. A fresh tensor."""
    b = 1.0 + torch.finfo(x.dtype).eps
    return torch.ops.aten.hardtanh_backward(grad, x, -b, b)


def inside(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """1_{lo <= x <= hi} as a fresh float tensor (bounds included, NaN -> 0), for the masks whose
    bounds are not +-1 (DoReFa's clip to [0, 1]; +-1 has the fused `pass_where_pm1`). A torch.where
    on a bool mask costs several times more on the CPU.
    """
    return x.clamp(lo, hi).eq_(x)


class _BinarizeDeterministic(StraightThrough):
    """w_b = h sign(w) forward (h = 1 unless given); gradient and tangent passed straight through
    (BinaryConnect Alg. 1)."""

    @staticmethod
    def forward(w, h=None):
        return sign_pm1(w) if h is None else sign_pm1(w, h)


class _BinarizeStochastic(StraightThrough):
    """w_b = +1 with probability hard_sigmoid(w) = clip((w + 1) / 2, 0, 1), else -1.

    Drawn as sign(w - u) with u uniform in (-1, 1): P(u <= w) = hard_sigmoid(w). On the CPU u
    has 16-bit resolution (see `noise.random_int16`): P(+1) is within 2^-16 of hard_sigmoid(w),
    far below any sampling error a training run can see; elsewhere (CUDA's Philox generator is
    fast) it is a float draw. Gradient and tangent straight through.
    """

    @staticmethod
    def forward(w, h=None):
        # with binary values +-h: +h with probability hard_sigmoid(w / h), i.e. sign(w / h - u) h
        r = w if h is None else w / h
        if w.device.type == "cpu":
            # d = r - (k + 0.5) / 2^15 for the signed int16 draw k, computed in place in the one
            # fresh float buffer (each fresh 12 MB tensor costs page faults on the CPU).
            d = random_int16(w).to(w.dtype).mul_(-(2.0**-15)).add_(r).sub_(2.0**-16)
        else:
            d = torch.empty_like(w).uniform_(-1.0, 1.0).neg_().add_(r)
        return sign_pm1(d, out=d) if h is None else sign_pm1(d, h, out=d)


_binarize_deterministic, _binarize_stochastic = fast(_BinarizeDeterministic), fast(_BinarizeStochastic)


class _SignSTE(torch.autograd.Function):
    """q = sign(r) forward (sign(0) = +1); g_r = g_q * 1_{|r| <= 1} backward, and the same mask
    on the tangent in forward mode (BNN's straight-through estimator of hard_tanh)."""

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(x):
        return sign_pm1(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return pass_where_pm1(grad, x)

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return pass_where_pm1(tangent, x)


class _SignSTEMasked(_SignSTE):
    """_SignSTE saving the mask 1_{|r| <= 1} (bool; 1 bit under `packing.saving_in_bits`) instead of
    r (32 bits): the same gradient, bit for bit, for every finite r."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        mask = inputs[0].abs() <= 1
        ctx.save_for_backward(mask)
        ctx.save_for_forward(mask)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask

    @staticmethod
    def jvp(ctx, tangent):
        (mask,) = ctx.saved_tensors
        return tangent * mask


_sign_ste, _sign_ste_masked = fast(_SignSTE), fast(_SignSTEMasked)


def sign_ste(x: torch.Tensor, packed: bool = False) -> torch.Tensor:
    """sign(x) (sign(0) = +1) with BNN's straight-through estimator, g_x = g * 1_{|x| <= 1}; with
    `packed`, saving the mask instead of x and marking the output as 1-bit codes (`packing`)."""
    if not packed:
        return _sign_ste(x)
    return packing.mark(_sign_ste_masked(x), 1, 2.0, -1.0)


@register
class Identity(nn.Module):
    """Full precision: x -> x (the float baseline; same as passing no quantizer)."""

    name = "identity"
    roles = frozenset({"weight", "input", "gradient"})
    bits = 32

    def forward(self, x):
        return x


def glorot_w0(fan_in: int, fan_out: int) -> float:
    """W0 = sqrt(1.5 / (fan_in + fan_out)), half Glorot's uniform bound sqrt(6 / (fan_in + fan_out))."""
    return math.sqrt(1.5 / (fan_in + fan_out))


# BinaryConnect's `scale`: the binary values +-h of a layer, from its (fan_in, fan_out)
BINARY_SCALES = {"glorot": glorot_w0}


@register
class BinaryConnect(nn.Module):
    """BinaryConnect weight binarization (Courbariaux et al. 2015, Eq. 1 and 2), binary values +-h.

    forward, deterministic (Eq. 1): w_b = +h if w >= 0 else -h                  (sign(0) = +1)
    forward, stochastic    (Eq. 2): w_b = +h with p = hard_sigmoid(w / h) = clip((w/h + 1)/2, 0, 1), else -h
    backward: dC/dw := dC/dw_b (straight through; the latent weights are clipped to [-h, h] after
    each update by the layer, which is what bounds them).
    At test time (module in eval mode) the deterministic variant keeps binary weights and the
    stochastic one uses the real-valued weights, as the authors' code does.

    scale: h = 1 (a number: h itself; the authors' later Lasagne code, H = 1), or "glorot": h = W0 =
    sqrt(1.5 / (fan_in + fan_out)) per layer, the paper-era script's binary values +-W0 (github
    MatthieuCourbariaux/BinaryConnect @df2d7d9 layer.py: ``self.W0 = high / 2``, high = sqrt(6 /
    (n_inputs + n_units)); the later code's option H = "Glorot"). The layer config calls
    `for_layer(fan_in, fan_out)` and counts clip_weights and weight_init_range in units of h.
    """

    name = "binaryconnect"
    roles = frozenset({"weight"})

    def __init__(self, stochastic: bool = False, scale: float | str = 1.0, packed: bool = False):
        super().__init__()
        for name, value in (("stochastic", stochastic), ("packed", packed)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if scale not in BINARY_SCALES and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                           or not scale > 0):
            raise ValueError(f"scale must be a positive number or one of {', '.join(BINARY_SCALES)}, got {scale!r}")
        self.stochastic, self.scale, self.packed = stochastic, scale, packed
        self.unit = float(scale) if scale not in BINARY_SCALES else None  # h, once the layer is known

    def for_layer(self, fan_in: int, fan_out: int) -> float:
        """Fix h for a layer of this fan-in and fan-out; returns it."""
        if self.scale in BINARY_SCALES:
            self.unit = BINARY_SCALES[self.scale](fan_in, fan_out)
        return self.unit

    @property
    def bits(self) -> int:
        return 32 if self.stochastic else 1  # stochastic BC infers with the real-valued weights

    def forward(self, w):
        if self.unit is None:
            raise RuntimeError(f"binaryconnect(scale={self.scale!r}): call for_layer(fan_in, fan_out) first")
        h = None if self.unit == 1.0 else self.unit
        args = (w,) if h is None else (w, h)
        if not self.stochastic:
            return self._mark(_binarize_deterministic(*args))
        return self._mark(_binarize_stochastic(*args)) if self.training else w

    def _mark(self, wb):
        """+-h: 1-bit codes c where the layer saves in bits (`packed`), w_b = 2h c - h."""
        return packing.mark(wb, 1, 2.0 * self.unit, -self.unit) if self.packed else wb

    def extra_repr(self) -> str:
        return f"stochastic={self.stochastic}, scale={self.scale!r}, h={self.unit}" + (
            ", packed=True" if self.packed else "")


@register
class BNNSign(nn.Module):
    """BNN's deterministic binarization with the saturating straight-through estimator
    (Hubara, Courbariaux, Soudry, El-Yaniv, Bengio 2016, Eq. 1 and Sec. 1.3 "Propagating
    gradients through discretization"):

    forward:  q = Sign(r) = +1 if r >= 0 else -1                         (sign(0) = +1)
    backward: g_r = g_q * 1_{|r| <= 1}       (the gradient of hard_tanh; cancelled where |r| > 1)

    BNN uses it on the activations (the input quantizer of the next layer); its weights are
    binarized with the same sign but an unmasked straight-through gradient and clipped latent
    weights, which is ``binaryconnect`` (paper, Alg. 1). Used as a weight quantizer it masks the
    weight gradient too.
    """

    name = "bnn_sign"
    roles = frozenset({"weight", "input"})
    bits = 1

    def __init__(self, packed: bool = False):
        super().__init__()
        if not isinstance(packed, bool):
            raise ValueError(f"packed must be true or false, got {packed!r}")
        self.packed = packed  # save the mask and the output in bits (`packing`), not r in float32

    def forward(self, x):
        return sign_ste(x, self.packed)

    def extra_repr(self) -> str:
        return "packed=True" if self.packed else ""
