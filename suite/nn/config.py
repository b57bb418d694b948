"""How a model builder makes its layers from a spec's variant: `QuantConfig` (quantizer
references, latent-weight options, which layers stay float) and the registries of its options."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from suite.nn.latent import store_latent
from suite.nn.layers import QuantConv2d, QuantLinear
from suite.quant import build_quantizer


def glorot_lr_scale(fan_in: int, fan_out: int) -> float:
    """BinaryConnect's per-layer LR scale, 1 / sqrt(1.5 / (fan_in + fan_out)) (authors' code)."""
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


# lr_scale name -> per-layer LR multiplier from (fan_in, fan_out); "none": the optimizer's LR
LR_SCALES = {"none": None, "glorot": glorot_lr_scale}
# The positions builders tag: the network's first quantizable layer and its classifier.
LAYER_POSITIONS = ("first", "last")


def _unit(layer) -> float:
    """The unit of a layer's latent weights: its weight quantizer's h (BinaryConnect's scale), else 1."""
    unit = getattr(getattr(layer, "weight_quantizer", None), "unit", None)
    return 1.0 if unit is None else unit


@dataclass(frozen=True)
class QuantConfig:
    """How a model builder makes its layers: quantizer references and the latent-weight options.

    The default (no quantizers, no clip, no LR scale) builds an ordinary float model. Builders tag
    the network's first quantizable layer ``position="first"`` and its classifier
    ``position="last"``: the first layer never quantizes its input (that is the data, as in every
    paper here), and `float_layers` names positions built as plain float layers (XNOR-Net and
    DoReFa-Net keep the first and last layers in full precision).
    """

    weight_quantizer: str = "none"
    input_quantizer: str = "none"
    gradient_quantizer: str = "none"  # applied to the gradient flowing back into each layer's output
    clip_weights: float | None = None  # in units of the weight quantizer's h where it has one (else absolute)
    lr_scale: str = "none"  # none | glorot
    weight_init_range: float | None = None  # U(-r, r) latent weights (BinaryConnect: r = H = 1); units as clip
    float_layers: tuple[str, ...] = ()  # positions ("first", "last") kept in full precision
    latent_bits: int = 32  # 32: float32 latent weights; 1..8: k-bit codes (suite/nn/latent.py)
    arithmetic: str = "packed"  # packed | emulated: binary/low-bit products on the bit-packed kernels or in float

    def _init(self, layer, position):
        if self.weight_init_range is not None and position not in self.float_layers:
            r = self.weight_init_range * _unit(layer)
            nn.init.uniform_(layer.weight, -r, r)
        if self.latent_bits != 32 and position not in self.float_layers:
            return store_latent(layer, self.latent_bits)
        return layer

    def _options(self, fan_in, fan_out, position):
        if position is not None and position not in LAYER_POSITIONS:
            raise ValueError(f"position must be None or one of {LAYER_POSITIONS}, got {position!r}")
        if position in self.float_layers:
            return {}
        weights = build_quantizer(self.weight_quantizer, "weight")
        # a quantizer with a per-layer scale h (BinaryConnect's +-W0): clip and init count in units of h
        unit = weights.for_layer(fan_in, fan_out) if hasattr(weights, "for_layer") else 1.0
        return dict(weight_quantizer=weights,
                    input_quantizer=None if position == "first" else build_quantizer(self.input_quantizer, "input"),
                    gradient_quantizer=build_quantizer(self.gradient_quantizer, "gradient"),
                    clip_value=None if self.clip_weights is None else self.clip_weights * unit,
                    lr_scale=LR_SCALES[self.lr_scale](fan_in, fan_out) if LR_SCALES[self.lr_scale] else None,
                    arithmetic=self.arithmetic)

    def linear(self, in_features, out_features, bias=True, position=None) -> QuantLinear:
        opts = self._options(in_features, out_features, position)
        return self._init(QuantLinear(in_features, out_features, bias, **opts), position)

    def conv2d(self, in_channels, out_channels, kernel_size, position=None, **kwargs) -> QuantConv2d:
        k = kernel_size * kernel_size if isinstance(kernel_size, int) else math.prod(kernel_size)
        groups = kwargs.get("groups", 1)
        opts = self._options(k * in_channels // groups, k * out_channels // groups, position)
        return self._init(QuantConv2d(in_channels, out_channels, kernel_size, **kwargs, **opts), position)
