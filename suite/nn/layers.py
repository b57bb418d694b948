"""One quantized layer class per op type; what is quantized and how is passed in.

A quantized layer keeps real-valued (latent) weights as its parameter and applies
`weight_quantizer` to them and `input_quantizer` to its input on every forward, and
`gradient_quantizer` to the gradient flowing back into its output (DoReFa-Net's G). An input
quantizer with an `output_scale(x, layer)` method (XNOR-Net's K map) returns a factor the layer
multiplies its output by before the bias: K needs the layer's kernel, stride, padding and dilation,
which the layer hands over by passing itself. Two training options of the BinaryConnect family live
here as attributes the training loop reads: `clip_value` (latent weights clipped to [-c, c] after
each update) and `lr_scale` (a per-layer learning-rate multiplier, e.g. Glorot's). How a model
builder makes these layers from a spec's variant is `suite/nn/config.py`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.quant import packing


class _QuantMixin:
    def _init_quant(self, weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale):
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.gradient_quantizer = gradient_quantizer
        self.clip_value = clip_value
        self.lr_scale = lr_scale

    def quantized_weight(self) -> torch.Tensor:
        w = self.weight
        return self.weight_quantizer(w) if self.weight_quantizer is not None else w

    def _weight_and_scale(self, scale_output: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weights the op uses, and a per-output-channel factor for its output or None.

        A weight quantizer with `factors(w, scale_output) -> (B, alpha)` (XNOR-Net's alpha B) can
        have alpha applied to the output instead of the weights (same values and gradients):
        cheaper when the output is smaller than the weight tensor, as in a linear layer on a small
        batch. It returns (weights, None) where it folds alpha into the weights itself.
        """
        q = self.weight_quantizer
        if q is None:
            return self.weight, None
        factors = getattr(q, "factors", None)
        if factors is not None:
            return factors(self.weight, scale_output)
        return q(self.weight), None

    def _quantized_input(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The quantized input, and the factor the output is multiplied by (XNOR-Net's K) or None."""
        q = self.input_quantizer
        if q is None:
            return x, None
        scale = getattr(q, "output_scale", None)
        return q(x), (scale(x, self) if scale is not None else None)

    def _saving(self):
        """The context of the forward pass: saved tensors in bits where a quantizer asks for it
        (`packed`: its outputs and masks take few values; `suite.quant.packing`)."""
        if any(getattr(q, "packed", False) for q in (self.weight_quantizer, self.input_quantizer,
                                                       getattr(self.input_quantizer, "quantizer", None))):
            return packing.saving_in_bits()
        return packing.nothing()

    def _output(self, y):
        """The gradient quantizer acts on the gradient flowing back into the layer's output (bias
        included, so that every parameter and the input see the quantized error)."""
        return self.gradient_quantizer(y) if self.gradient_quantizer is not None else y


class QuantLinear(_QuantMixin, nn.Linear):
    """nn.Linear with a weight, an input and a gradient quantizer (each None = full precision)."""

    def __init__(self, in_features, out_features, bias=True, *, weight_quantizer=None, input_quantizer=None,
                 gradient_quantizer=None, clip_value=None, lr_scale=None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale)

    def forward(self, x):
        with self._saving():
            return self._forward(x)

    def _forward(self, x):
        xq, k = self._quantized_input(x)
        # scale the output rather than the weights when it has fewer rows than the weights' fan-in
        w, alpha = self._weight_and_scale(x.numel() < self.in_features * self.in_features)
        if k is None and alpha is None:
            return self._output(F.linear(xq, w, self.bias))
        return self._output(_scale_output(F.linear(xq, w), k, alpha, self.bias, spatial=0))


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """nn.Conv2d with quantizers; stride, padding, dilation, groups and padding_mode all kept."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, weight_quantizer=None,
                 input_quantizer=None, gradient_quantizer=None, clip_value=None, lr_scale=None, device=None,
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale)

    def forward(self, x):
        with self._saving():
            return self._forward(x)

    def _forward(self, x):
        xq, k = self._quantized_input(x)
        # a convolution's output outnumbers its weights: alpha stays on the weights
        w, _ = self._weight_and_scale(False)
        # nn.Conv2d's own _conv_forward handles padding_mode, groups and dilation.
        if k is None:
            return self._output(self._conv_forward(xq, w, self.bias))
        return self._output(_scale_output(self._conv_forward(xq, w, None), k, None, self.bias, spatial=2))


def _scale_output(y, k, alpha, bias, spatial: int):
    """y * k * alpha + bias without copies beyond the results.

    y (..., C, *S) with `spatial` = len(S) trailing axes; k: (..., 1) for a linear layer, or
    (..., G, *S) for a convolution of G groups (group g's factor scales its C/G output channels);
    alpha: (C,), one factor per output channel. Either may be None.
    """
    view = (-1,) + (1,) * spatial
    if k is not None and spatial and k.shape[-spatial - 1] > 1:  # a grouped K map
        c, g = y.shape[-spatial - 1], k.shape[-spatial - 1]
        y = (y.unflatten(-spatial - 1, (g, c // g)) * k.unsqueeze(-spatial - 1)).flatten(-spatial - 2, -spatial - 1)
        k = None
    factors = [f for f in (k, alpha.view(view) if alpha is not None else None) if f is not None]
    if len(factors) == 2:
        y = y * factors.pop(0)
    if not factors:
        return y if bias is None else y + bias.view(view)
    return y * factors[0] if bias is None else torch.addcmul(bias.view(view), y, factors[0])


def latent_clip_targets(model: nn.Module) -> list[tuple[torch.Tensor, float]]:
    """(weight, c) for every layer whose latent weights are clipped; collected once per run."""
    return [(m.weight, m.clip_value) for m in model.modules()
            if isinstance(m, _QuantMixin) and m.clip_value is not None]


@torch.no_grad()
def clip_latent_weights(targets: list[tuple[torch.Tensor, float]]) -> None:
    for w, c in targets:
        w.clamp_(-c, c)
