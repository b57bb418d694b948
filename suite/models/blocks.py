"""Pieces several model families share: the activation choice and dropout on a quantized input."""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.kernels.forms import Codes, MaskedSigns, Signs
from suite.nn import packed
from suite.quant import packing

# BNN binarizes activations with the next layer's sign input quantizer, so it needs a symmetric
# nonlinearity before it (hardtanh, or none): sign(ReLU(x)) would be +1 everywhere.
ACTIVATIONS = {"relu": nn.ReLU, "hardtanh": nn.Hardtanh, "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class QuantizedThenDropped(nn.Module):
    """A layer's input quantizer followed by dropout, as the reference code orders them (BinaryNet:
    DropoutLayer after binary_tanh_unit; XNOR-Net-PyTorch: dropout after BinActive; tensorpack's
    DoReFa-Net: dropout after the activation quantizer): a dropped unit is 0, not the quantizer's
    image of 0 (sign(0) = +1), and the kept ones are scaled by 1 / (1 - p) after quantization."""

    def __init__(self, quantizer: nn.Module, p: float):
        super().__init__()
        self.quantizer, self.dropout = quantizer, nn.Dropout(p)

    @property
    def bits(self) -> int:  # read by the bit accounting
        return getattr(self.quantizer, "bits", 32)

    def forward(self, x):
        q = self.quantizer(x)
        p = self.dropout.p
        if not (getattr(self.quantizer, "packed", False) and self.training and 0 < p < 1):
            return self.dropout(q)
        out = _DropoutSavingMask.apply(q, p)
        if getattr(self.quantizer, "bits", 32) == 1:  # +-1 dropped and rescaled: 0 or +-s, codes 0, 1, 2
            s = torch.ones(()).div_(1 - p).item()  # the float32 factor the mask carries
            packing.mark(out, 2, s, -s)
        return out

    def output_scale(self, x, layer):
        """The quantizer's output factor (XNOR-Net's K, from the undropped input), if it has one."""
        scale = getattr(self.quantizer, "output_scale", None)
        return scale(x, layer) if scale is not None else None


class _DropoutSavingMask(torch.autograd.Function):
    """torch's CPU dropout, op for op (noise = bernoulli(1 - p) / (1 - p), out = x * noise: the same
    random draws and values), saving the mask as bool (1 bit under `packing.saving_in_bits`) where
    torch saves the float noise; the backward rebuilds the noise from it, bit for bit."""

    @staticmethod
    def forward(ctx, x, p):
        noise = torch.empty_like(x).bernoulli_(1 - p)
        ctx.p = p
        ctx.save_for_backward(noise.bool())
        return x * noise.div_(1 - p)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype).div_(1 - ctx.p), None


def dropout_before(layer: nn.Module, p: float) -> list[nn.Module]:
    """Dropout on `layer`'s input, after its input quantizer when it has one (which is then wrapped
    in place). Returns the modules to put before the layer: [] or [nn.Dropout(p)]."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}")
    if not p:
        return []
    if getattr(layer, "input_quantizer", None) is not None:
        layer.input_quantizer = QuantizedThenDropped(layer.input_quantizer, p)
        return []
    return [nn.Dropout(p)]


def positive_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _dropped_form(q: QuantizedThenDropped, training: bool):
    """The packed form of a quantizer followed by dropout: the quantizer's in evaluation; while
    training, dropped inputs are 0 and kept ones scaled by s = 1 / (1 - p): signs become masked signs
    (s sign or 0), codes stay codes of step s times theirs (a dropped one is code 0)."""
    form = packed.input_form(q.quantizer, training)
    if not (training and q.dropout.p > 0) or form is None:
        return form
    scale = float(torch.ones(()).div_(1 - q.dropout.p))  # as dropout computes it: 1 / (1 - p) in float32
    if isinstance(form, Signs):
        return MaskedSigns(scale)
    return Codes(form.bits, form.step * scale, form.offset) if not form.offset else None


packed.INPUT_FORMS[QuantizedThenDropped] = _dropped_form
