"""One quantized layer class per op type; what is quantized and how is passed in.

A quantized layer keeps real-valued (latent) weights as its parameter and applies
`weight_quantizer` to them and `input_quantizer` to its input on every forward. Two training
options of the BinaryConnect family live here as attributes the training loop reads:
`clip_value` (latent weights clipped to [-c, c] after each update) and `lr_scale` (a per-layer
learning-rate multiplier, e.g. Glorot's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.quant import build_quantizer


def glorot_lr_scale(fan_in: int, fan_out: int) -> float:
    """BinaryConnect's per-layer LR scale, 1 / sqrt(1.5 / (fan_in + fan_out)) (authors' code)."""
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


class _QuantMixin:
    def _init_quant(self, weight_quantizer, input_quantizer, clip_value, lr_scale):
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.clip_value = clip_value
        self.lr_scale = lr_scale

    def quantized_weight(self) -> torch.Tensor:
        w = self.weight
        return self.weight_quantizer(w) if self.weight_quantizer is not None else w

    def _quantized_input(self, x):
        return self.input_quantizer(x) if self.input_quantizer is not None else x


class QuantLinear(_QuantMixin, nn.Linear):
    def __init__(self, in_features, out_features, bias=True, *, weight_quantizer=None,
                 input_quantizer=None, clip_value=None, lr_scale=None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, clip_value, lr_scale)

    def forward(self, x):
        return F.linear(self._quantized_input(x), self.quantized_weight(), self.bias)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """nn.Conv2d with quantizers; stride, padding, dilation, groups and padding_mode all kept."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, weight_quantizer=None,
                 input_quantizer=None, clip_value=None, lr_scale=None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, clip_value, lr_scale)

    def forward(self, x):
        # nn.Conv2d's own _conv_forward handles padding_mode, groups and dilation.
        return self._conv_forward(self._quantized_input(x), self.quantized_weight(), self.bias)


@dataclass(frozen=True)
class QuantConfig:
    """How a model builder makes its layers: quantizer references and the latent-weight options.

    The default (no quantizers, no clip, no LR scale) builds an ordinary float model.
    """

    weight_quantizer: str = "none"
    input_quantizer: str = "none"
    clip_weights: float | None = None
    lr_scale: str = "none"  # none | glorot
    weight_init_range: float | None = None  # U(-r, r) latent weights (BinaryConnect: r = H = 1)

    def _init(self, layer):
        if self.weight_init_range is not None:
            nn.init.uniform_(layer.weight, -self.weight_init_range, self.weight_init_range)
        return layer

    def _options(self, fan_in, fan_out):
        return dict(weight_quantizer=build_quantizer(self.weight_quantizer),
                    input_quantizer=build_quantizer(self.input_quantizer),
                    clip_value=self.clip_weights,
                    lr_scale=glorot_lr_scale(fan_in, fan_out) if self.lr_scale == "glorot" else None)

    def linear(self, in_features, out_features, bias=True) -> QuantLinear:
        return self._init(QuantLinear(in_features, out_features, bias, **self._options(in_features, out_features)))

    def conv2d(self, in_channels, out_channels, kernel_size, **kwargs) -> QuantConv2d:
        k = kernel_size * kernel_size if isinstance(kernel_size, int) else math.prod(kernel_size)
        groups = kwargs.get("groups", 1)
        opts = self._options(k * in_channels // groups, k * out_channels // groups)
        return self._init(QuantConv2d(in_channels, out_channels, kernel_size, **kwargs, **opts))


def latent_clip_targets(model: nn.Module) -> list[tuple[torch.Tensor, float]]:
    """(weight, c) for every layer whose latent weights are clipped; collected once per run."""
    return [(m.weight, m.clip_value) for m in model.modules()
            if isinstance(m, _QuantMixin) and m.clip_value is not None]


@torch.no_grad()
def clip_latent_weights(targets: list[tuple[torch.Tensor, float]]) -> None:
    for w, c in targets:
        w.clamp_(-c, c)
