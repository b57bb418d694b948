"""One quantized layer class per op type; what is quantized and how is passed in.

A quantized layer keeps real-valued (latent) weights as its parameter and applies
`weight_quantizer` to them and `input_quantizer` to its input on every forward, and
`gradient_quantizer` to the gradient flowing back into its output (DoReFa-Net's G). An input
quantizer with an `output_scale(x, layer)` method (XNOR-Net's K map) returns a factor the layer
multiplies its output by before the bias: K needs the layer's kernel, stride, padding and dilation,
which the layer hands over by passing itself. `arithmetic` ("packed", the default, or "emulated")
says whether a layer whose inputs and weights are both binary or low-bit runs its product on the
bit-packed kernels (suite/nn/packed.py; same values, same gradients) or in float32 on the quantized
values; after each forward `arithmetic_used` says which ran, and why not packed where it was not.
Two training options of the BinaryConnect family live here as attributes the training loop reads:
`clip_value` (latent weights clipped to [-c, c] after each update) and `lr_scale` (a per-layer
learning-rate multiplier, e.g. Glorot's). How a model builder makes these layers from a spec's
variant is `suite/nn/config.py`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.nn import packed
from suite.quant import packing


class _QuantMixin:
    def _init_quant(self, weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale,
                    arithmetic="packed"):
        if arithmetic not in packed.ARITHMETICS:
            raise ValueError(f"arithmetic must be one of {', '.join(packed.ARITHMETICS)}, got {arithmetic!r}")
        self.arithmetic = arithmetic
        self.arithmetic_used: str | None = None  # set by each forward pass
        if arithmetic == "packed" and weight_quantizer is not None and input_quantizer is not None:
            packed.prepare()  # build the kernels now (once per machine), not in a timed epoch
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
        return q(x), self._input_scale(x)

    def _input_scale(self, x) -> torch.Tensor | None:
        """The input quantizer's factor for the output (XNOR-Net's K), or None."""
        scale = getattr(self.input_quantizer, "output_scale", None)
        return scale(x, self) if scale is not None else None

    def _plan(self, x) -> packed.Plan | None:
        """The packed plan for this forward on input x, or None (emulated); records which ran."""
        p = packed.plan(self, x)
        # a plain attribute, set past nn.Module.__setattr__ (microseconds a call, which batch 1 notices)
        self.__dict__["arithmetic_used"] = p.label if isinstance(p, packed.Plan) else p
        return p if isinstance(p, packed.Plan) else None

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
                 gradient_quantizer=None, clip_value=None, lr_scale=None, arithmetic="packed", device=None,
                 dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale, arithmetic)

    def forward(self, x):
        with self._saving():
            return self._forward(x)

    def _forward(self, x):
        p = self._plan(x)
        cached = packed.cached_weights(self, p) if p is not None else None
        if cached is not None:  # evaluation without gradients: packed from x's bits, no autograd
            k = self._input_scale(x)
            y = packed.linear_from_input(x, self.bias if k is None else None, p, cached)
            return self._output(y if k is None else _scale_output(y, k, None, self.bias, spatial=0))
        xq, k = self._quantized_input(x)
        fused = packed.signed_and_packed_weights(self, p) if p is not None else None
        # scale the output rather than the weights when it has fewer rows than the weights' fan-in
        w, alpha = self._weight_and_scale(x.numel() < self.in_features * self.in_features) if fused is None \
            else (fused[0], None)
        wp = fused[1] if fused is not None else None
        if k is None and alpha is None:
            return self._output(self._linear(xq, w, self.bias, p, wp))
        return self._output(_scale_output(self._linear(xq, w, None, p, wp), k, alpha, self.bias, spatial=0))

    @staticmethod
    def _linear(xq, w, bias, p, wp):
        return F.linear(xq, w, bias) if p is None else packed.linear(xq, w, bias, p, wp)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """nn.Conv2d with quantizers; stride, padding, dilation, groups and padding_mode all kept."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, weight_quantizer=None,
                 input_quantizer=None, gradient_quantizer=None, clip_value=None, lr_scale=None, arithmetic="packed",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)
        self._init_quant(weight_quantizer, input_quantizer, gradient_quantizer, clip_value, lr_scale, arithmetic)

    def forward(self, x):
        with self._saving():
            return self._forward(x)

    def _forward(self, x):
        p = self._plan(x)
        cached = packed.cached_weights(self, p) if p is not None else None
        if cached is not None:  # evaluation without gradients: packed from x's bits, no autograd
            k = self._input_scale(x)
            y = packed.conv2d_from_input(self, x, self.bias if k is None else None, p, cached)
            return self._output(y if k is None else _scale_output(y, k, None, self.bias, spatial=2))
        xq, k = self._quantized_input(x)
        # a convolution's output outnumbers its weights: alpha stays on the weights
        w = self._weight_and_scale(False)[0]
        if k is None:
            return self._output(self._conv(xq, w, self.bias, p))
        return self._output(_scale_output(self._conv(xq, w, None, p), k, None, self.bias, spatial=2))

    def _conv(self, xq, w, bias, p):
        # nn.Conv2d's own _conv_forward handles padding_mode, groups and dilation.
        return self._conv_forward(xq, w, bias) if p is None else packed.conv2d(self, xq, w, bias, p)


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
