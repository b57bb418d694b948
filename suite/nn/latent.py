"""k-bit storage of a binary-weight layer's latent weights (the "softweight" of the project notes
"Something about softweight").

BinaryConnect trains real-valued latent weights w in [-s, s] and computes with sign(w). With
``latent_bits = k`` (1..8) a layer keeps w not as a float32 parameter but as k-bit codes c:

    w = s (2 c / n - 1),   c in {0, ..., n},  n = 2^k - 1,   s the layer's scale (a float32 buffer)

2^k levels spanning [-s, s], none at 0 (so sign(w) is never ambiguous). The optimizer step
(`suite/train/latent_optim.py`) decodes w, adds the step and re-encodes with stochastic rounding,
c = floor(n (w / s + 1) / 2 + u), u ~ U(0, 1): E[decoded] = w for w in [-s, s] (unbiased, to the
2^-17 resolution of `noise.uniform_centered`); values beyond are clipped, so BinaryConnect's clip
to [-H, H] is the code range: s = the layer's clip value (else max |w| at initialisation).

Storage (buffer ``latent.codes``, saved by ``state_dict``): k = 8, one uint8 per weight; k < 8,
packed as k bit planes of 8 weights per byte (k bits per weight, plus the padding to a multiple of 8
weights). No float copy of the latent weights lives between steps. Transient float32 tensors: the
forward pass's binary weights (deterministic BinaryConnect reads the codes' top bits; the
stochastic one decodes the latent weights, freed at once), made an autograd leaf, get the gradient,
which is the latent weights' one under BinaryConnect's straight-through estimator (hence only
``binaryconnect`` weight quantizers); the optimizer step decodes the latent weights, updates them,
re-encodes them and drops that leaf and its gradient.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.nn.layers import QuantConv2d, QuantLinear, _QuantMixin, _scale_output
from suite.quant import BinaryConnect
from suite.quant.noise import uniform_centered
from suite.quant.packing import pack_codes, unpack_codes

LATENT_BITS = range(1, 9)  # codes fit one uint8; 32 (float32 parameters) is the default elsewhere


class LatentStorage(nn.Module):
    """One layer's latent weights as k-bit codes and a scale; `decode` and `encode_` convert."""

    def __init__(self, weight: torch.Tensor, bits: int, scale: torch.Tensor):
        super().__init__()
        if isinstance(bits, bool) or bits not in LATENT_BITS:
            raise ValueError(f"latent_bits must be 32 (float32) or 1 to 8, got {bits!r}")
        self.bits, self.shape, self.count = bits, tuple(weight.shape), weight.numel()
        self.levels = 2**bits - 1
        stored = self.shape if bits == 8 else (bits, -(-self.count // 8))
        self.register_buffer("scale", scale.detach().to(weight.dtype).reshape(()).clone())
        self.register_buffer("codes", torch.zeros(stored, dtype=torch.uint8, device=weight.device))
        self.leaf: torch.Tensor | None = None  # this step's binary weights, whose .grad the optimizer reads
        # An optimizer that updates the codes inside the backward pass (`suite/train/lean_optim.py`) sets
        # this: the layer's weights then carry no leaf, their gradient goes to the optimizer at once.
        self.in_backward = None
        self.in_backward_linear = None  # and, for a linear layer, its product by row chunks
        self.anchor = torch.zeros(0, device=weight.device, requires_grad=True)  # ties the weights to autograd
        self.encode_(weight.detach().clone(), stochastic=False)  # encode_ overwrites its argument

    def decode(self) -> torch.Tensor:
        """The latent weights as a fresh float tensor of the layer's weight shape."""
        c = self.codes if self.bits == 8 else unpack_codes(self.codes, self.bits, self.count).view(self.shape)
        return c.to(self.scale.dtype).mul_(self.scale * (2.0 / self.levels)).sub_(self.scale)

    def signs(self) -> torch.Tensor:
        """sign(decoded latent weights) as a fresh float tensor of +-1: the top bit of each code
        (c >= 2^(k-1) iff w >= 0, and no level is 0); one bit plane read instead of k."""
        if self.bits == 8:
            top = self.codes >= 128
        else:
            top = unpack_codes(self.codes[-1:], 1, self.count).view(self.shape)
        return top.to(self.scale.dtype).mul_(2.0).sub_(1.0)

    @torch.no_grad()
    def encode_(self, w: torch.Tensor, stochastic: bool = True) -> None:
        """Store w (clipped to [-s, s]) in the codes, in place: stochastic rounding (unbiased) or
        to the nearest level. `w` is overwritten (it is the caller's transient)."""
        t = w.div_(self.scale).clamp_(-1.0, 1.0).add_(1.0).mul_(self.levels / 2)
        if stochastic:
            t.add_(uniform_centered(t)).add_(0.5).floor_()  # floor(t + u), u in (0, 1)
        else:
            t.round_()
        t.clamp_(0, self.levels)  # n + u can round up to n + 1 in float
        if self.bits == 8:
            self.codes.copy_(t)
        else:
            self.codes.copy_(pack_codes(t.to(torch.uint8).view(-1), self.bits))

    def weight_for_step(self, quantizer: nn.Module) -> torch.Tensor:
        """The weights the layer computes with, quantizer(decoded latent) (deterministic
        BinaryConnect: `signs`, the same values); with autograd on, an autograd leaf kept in
        `self.leaf` until the optimizer step reads its gradient."""
        with torch.no_grad():
            deterministic = isinstance(quantizer, BinaryConnect) and not quantizer.stochastic
            w = quantizer._mark(self.signs()) if deterministic else quantizer(self.decode())
        if torch.is_grad_enabled():
            if self.in_backward is not None:
                return self.in_backward(self, w)
            self.leaf = w.requires_grad_()
        return w

    def extra_repr(self) -> str:
        packing = "one uint8 per weight" if self.bits == 8 else f"{self.bits} bit planes, 8 weights per byte"
        return f"bits={self.bits}, shape={self.shape}, {packing}"


class _LatentMixin:
    """A quantized layer whose latent weights live in `self.latent` (a LatentStorage), not in a
    float `weight` parameter (the layer has none)."""

    def quantized_weight(self) -> torch.Tensor:
        with torch.no_grad():
            return self.weight_quantizer(self.latent.decode())

    def _weight_and_scale(self, scale_output: bool) -> tuple[torch.Tensor, None]:
        return self.latent.weight_for_step(self.weight_quantizer), None


class LatentQuantLinear(_LatentMixin, QuantLinear):
    """QuantLinear with k-bit latent weights (built by `store_latent`)."""

    def _forward(self, x):
        product = self.latent.in_backward_linear
        if product is None or not torch.is_grad_enabled():
            return super()._forward(x)
        xq, k = self._quantized_input(x)
        y = product(xq, self.latent)  # the codes are updated inside its backward pass
        if k is not None:
            return self._output(_scale_output(y, k, None, self.bias, spatial=0))
        return self._output(y if self.bias is None else y + self.bias)


class LatentQuantConv2d(_LatentMixin, QuantConv2d):
    """QuantConv2d with k-bit latent weights (built by `store_latent`)."""


_LATENT_CLASS = {QuantLinear: LatentQuantLinear, QuantConv2d: LatentQuantConv2d}


def store_latent(layer: QuantLinear | QuantConv2d, bits: int) -> QuantLinear | QuantConv2d:
    """Move a BinaryConnect layer's latent weights into k-bit codes (its `weight` parameter is
    removed); scale s = its clip value, else max |w|. Returns the same module, now of the latent
    class (a class swap, as torch.nn.utils.parametrize does, so every other attribute is kept)."""
    if type(layer) not in _LATENT_CLASS or not isinstance(layer.weight_quantizer, BinaryConnect):
        raise ValueError(f"latent_bits < 32 needs layers with weight_quantizer 'binaryconnect' (whose straight-"
                         f"through gradient is the latent weights'), got {layer.weight_quantizer!r}")
    w = layer.weight.detach()
    scale = (torch.full((), float(layer.clip_value), device=w.device) if layer.clip_value is not None
             else w.abs().amax().clamp(min=torch.finfo(w.dtype).tiny))
    latent = LatentStorage(w, bits, scale)
    del layer.weight
    layer.__class__ = _LATENT_CLASS[type(layer)]
    layer.latent = latent
    layer.clip_value = None  # the codes cannot leave [-s, s]
    return layer


def latent_layers(model: nn.Module) -> list[_QuantMixin]:
    """The layers of `model` that keep k-bit latent weights."""
    return [m for m in model.modules() if isinstance(m, _LatentMixin)]
