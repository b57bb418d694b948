"""Inference export: a trained quantized model with its binary and low-bit layers packed (weights as
bits plus float scales), to run and to measure (bytes) what deployment would.

`export(model, input_codes=None)` copies an nn.Sequential model (the MLP, the CIFAR ConvNet, NIN,
AlexNet) and replaces every quantized layer that has a packed form (suite/nn/packed.py) by an
inference module holding only its packed weights, its per-output-channel scale, its bias:

- `PackedLinear`: the product by the kernels (suite/kernels/matmul.py); the next layer's signs are
  produced directly, as bits, when the layer is followed by BatchNorm1d, an activation and a layer
  whose input quantizer is a sign (BNN's and XNOR-Net's hidden layers): BatchNorm, activation and sign
  are monotone in the layer's integer output I, so sign(act(BN(s I + b))) = -1 exactly where I is
  below an integer threshold (or above it, for a negative BatchNorm scale), found once per output
  channel by bisection on the same float ops (BNN inference's usual "thresholding": Umuroglu et al.,
  "FINN", FPGA 2017, Sec. 4.2.2). No float activation is written between such layers.
- `PackedConv2d`: the packed convolution (float output; the rest of the network runs as before).
- A first layer with binary weights whose input is data (no input quantizer) is packed too when the
  data are codes: `input_codes = Codes(8, 2/255, -1)` says that the inputs are 8-bit pixels mapped to
  [-1, 1] (MNIST with preprocessing "pm1"); the layer then takes the bit-serial kernel, 8 x 1 bit.

Values: each packed layer computes the emulated layer's value to float rounding (integer parts
exactly); a threshold reproduces the packed layer followed by BatchNorm and sign exactly. So the
exported model's predictions equal the emulated model's, except where float rounding of the emulated
GEMM moves a BatchNorm output across 0 (the tests check the MNIST test set: none did).
`packed_bytes(model)` counts what an exported model stores.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn as nn

from suite.kernels import matmul as kmatmul
from suite.kernels.conv import conv2d as kconv2d
from suite.kernels.forms import Codes, Signs
from suite.kernels.packing import Packed, pack_codes, pack_signs
from suite.nn import packed
from suite.nn.layers import QuantConv2d, QuantLinear, _QuantMixin
from suite.quant import sign_pm1

MONOTONE = (nn.Identity, nn.Hardtanh, nn.ReLU)  # activations allowed between a layer and the next one's sign
_INT32_MIN = -(2**31)


def _pack_rows(x: torch.Tensor, form: Signs | Codes) -> Packed:
    """An input's bits: the sign bits of x (those of its sign) or its codes c = (x - offset) / step."""
    if isinstance(form, Signs):
        return pack_signs(x)
    return pack_codes(x, form.bits, 1.0 / form.step, -form.offset / form.step)


class PackedLinear(nn.Module):
    """A quantized linear layer for inference: packed weights, scale per output, bias; output float
    (s I + b, times XNOR-Net's K when the input quantizer has one), or the next layer's signs as
    bits when a threshold is set (`fold_sign`)."""

    def __init__(self, layer: QuantLinear, input_form: Signs | Codes):
        super().__init__()
        with torch.no_grad():
            wq, alpha = layer._weight_and_scale(False)
        self.x_form, self.w_form = input_form, packed.weight_form(layer.weight_quantizer, False)
        wp, scale = packed.pack_linear_weight(wq.detach(), self.w_form)
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.register_buffer("words", wp.words)
        self.register_buffer("scale", scale if isinstance(scale, torch.Tensor) else torch.full((1,), float(scale)))
        self.register_buffer("bias", layer.bias.detach().clone() if layer.bias is not None else None)
        self.register_buffer("signs_sum", None)
        if isinstance(self.x_form, Codes) and self.x_form.offset:  # sum_k sign(w_jk) for the input's offset
            self.signs_sum = kmatmul.signs_sum(pack_signs(wq.detach()))
        q = layer.input_quantizer
        self.k_scale = q if q is not None and getattr(q, "output_scale", None) is not None else None
        self.thr = self.flip = None

    def _weights(self) -> Packed:
        return Packed(self.words, self.in_features, self.w_form.bits if isinstance(self.w_form, Codes) else 0,
                      "panels", self.out_features)

    def _scale(self):
        return self.scale if self.scale.numel() > 1 else float(self.scale)

    def forward(self, x):
        xp = x if isinstance(x, Packed) else _pack_rows(x.reshape(-1, self.in_features), self.x_form)
        if self.thr is not None:
            return kmatmul.linear_signs(xp, self.x_form, self._weights(), self.w_form, self.thr, self.flip,
                                        self.signs_sum)
        k = self.k_scale.output_scale(x, self) if self.k_scale is not None else None
        if k is None:
            return kmatmul.linear(xp, self.x_form, self._weights(), self.w_form, self.bias, self._scale(),
                                  self.signs_sum)
        y = kmatmul.linear(xp, self.x_form, self._weights(), self.w_form, None, self._scale(), self.signs_sum)
        return y * k if self.bias is None else torch.addcmul(self.bias, y, k)

    def fold_sign(self, after: list[nn.Module]) -> None:
        """Fold `after` (BatchNorm1d, a monotone activation) and the next layer's sign into one
        integer threshold per output: bit j = 1 (sign -1) where (I < thr_j) xor flip_j."""
        t = kmatmul.terms(self.x_form, self.w_form, self.in_features)
        lo = torch.full((self.out_features,), -t.bound - 1, dtype=torch.int64)
        hi = torch.full((self.out_features,), t.bound + 1, dtype=torch.int64)

        def positive(v: torch.Tensor) -> torch.Tensor:  # sign(act(BN(y(v)))) = +1, as the float path computes
            y = (v.float() * (t.factor * (1.0 if self.scale.numel() > 1 else float(self.scale))))
            if self.scale.numel() > 1:
                y = y * self.scale
            if self.bias is not None:
                y = y + self.bias
            with torch.no_grad():
                for m in after:
                    y = m(y.unsqueeze(0)).squeeze(0)
            return sign_pm1(y) > 0

        at_lo, at_hi = positive(lo), positive(hi)
        rising = ~at_lo & at_hi  # +1 from some I on
        falling = at_lo & ~at_hi  # +1 up to some I
        a, b = lo.clone(), hi.clone()  # invariant: the predicate differs at a and b
        for _ in range(40):
            mid = (a + b) // 2
            pm = positive(mid)
            move_a = torch.where(rising, ~pm, pm)
            a = torch.where(move_a & (b - a > 1), mid, a)
            b = torch.where(~move_a & (b - a > 1), mid, b)
        # rising: -1 where I < b; falling: +1 where I <= a, i.e. -1 where not (I < a + 1)
        thr = torch.where(rising, b, torch.where(falling, a + 1, torch.full_like(a, _INT32_MIN)))
        flip = torch.where(falling | (~rising & ~at_lo), 1, 0)  # constant -1: flip of "never below MIN"
        check = torch.where(rising | falling, positive(thr) != positive(thr - 1), torch.ones_like(rising))
        if not bool(check.all()):
            raise ValueError("the layer's BatchNorm and activation are not monotone in its output")
        self.thr, self.flip = thr.int(), flip.int()
        self.scale = None  # folded into the thresholds, as is the bias: not stored
        self.bias = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.words, self.scale, self.bias, self.signs_sum,
                                                          self.thr, self.flip) if t is not None)

    def extra_repr(self) -> str:
        out = "signs (threshold)" if self.thr is not None else "float"
        return f"{self.in_features} -> {self.out_features}, input {self.x_form}, weights {self.w_form}, out {out}"


class PackedConv2d(nn.Module):
    """A quantized convolution for inference: packed weights (with the padding correction's tap
    sums), scale per output channel, bias; float output (times K for XNOR-Net's input)."""

    def __init__(self, layer: QuantConv2d, input_form: Signs | Codes):
        super().__init__()
        with torch.no_grad():
            wq, _ = layer._weight_and_scale(False)
        self.x_form, self.w_form = input_form, packed.weight_form(layer.weight_quantizer, False)
        cw, scale = packed.pack_conv_weight(wq.detach(), self.w_form)
        self.weights = cw
        self.register_buffer("words", cw.words)
        self.register_buffer("tap_sums", cw.tap_sums)
        self.register_buffer("scale", scale if isinstance(scale, torch.Tensor) else torch.full((1,), float(scale)))
        self.register_buffer("bias", layer.bias.detach().clone() if layer.bias is not None else None)
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        self.groups = layer.groups
        q = layer.input_quantizer
        self.k_scale = q if getattr(q, "output_scale", None) is not None else None
        # XNOR-Net's K map needs the convolution's geometry: a weightless twin, not registered (no bytes)
        self.__dict__["_geometry"] = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                               layer.padding, layer.dilation, layer.groups, False, layer.padding_mode,
                                               device="meta")

    def forward(self, x):
        scale = self.scale if self.scale.numel() > 1 else float(self.scale)
        k = self.k_scale.output_scale(x, self._geometry) if self.k_scale is not None else None
        bias = self.bias if k is None else None
        y = kconv2d(x, self.x_form, self.weights, bias, scale, self.stride, self.padding, self.dilation, self.groups)
        if k is None:
            return y
        from suite.nn.layers import _scale_output

        return _scale_output(y, k, None, self.bias, spatial=2)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.words, self.tap_sums, self.scale, self.bias)
                   if t is not None)


def _input_form(layer, input_codes):
    q = layer.input_quantizer
    if q is None:
        return input_codes if input_codes is not None and isinstance(layer, QuantLinear) else None
    return packed.input_form(q, False)


def _packable(layer, input_codes) -> Signs | Codes | None:
    if not isinstance(layer, QuantLinear | QuantConv2d) or layer.weight_quantizer is None:
        return None
    if getattr(layer, "weight", None) is None or layer.weight.dtype != torch.float32:
        return None
    xf, wf = _input_form(layer, input_codes), packed.weight_form(layer.weight_quantizer, False)
    if xf is None or wf is None or (isinstance(xf, Signs) and not isinstance(wf, Signs)):
        return None
    if isinstance(xf, Codes) and xf.offset and not isinstance(wf, Signs):
        return None
    if isinstance(layer, QuantConv2d) and (layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
        return None
    return xf


def _needs_k(q) -> bool:
    inner = getattr(q, "quantizer", q)
    return bool(getattr(inner, "scale", False)) and getattr(inner, "output_scale", None) is not None


def export(model: nn.Sequential, input_codes: Codes | None = None) -> nn.Sequential:
    """A copy of `model` (in eval mode) for inference, its packable layers packed (module docstring)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"export handles nn.Sequential models, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        mods = list(model)
        out: list[nn.Module] = []
        first = True
        i = 0
        while i < len(mods):
            m = mods[i]
            xf = _packable(m, input_codes if first else None)
            if isinstance(m, _QuantMixin):
                first = False
            if xf is None:
                out.append(copy.deepcopy(m))
                i += 1
                continue
            if isinstance(m, QuantConv2d):
                out.append(PackedConv2d(m, xf))
                i += 1
                continue
            p = PackedLinear(m, xf)
            j = i + 1
            after = []
            while j < len(mods) and isinstance(mods[j], (nn.BatchNorm1d, *MONOTONE, nn.Dropout)):
                if not isinstance(mods[j], nn.Dropout):
                    after.append(mods[j])
                j += 1
            nxt = mods[j] if j < len(mods) else None
            if (after and isinstance(after[0], nn.BatchNorm1d) and nxt is not None and _packable(nxt, None) is not None
                    and isinstance(_input_form(nxt, None), Signs) and isinstance(nxt, QuantLinear)
                    and not _needs_k(nxt.input_quantizer)):
                p.fold_sign(after)
                out.append(p)
                i = j  # the BatchNorm and activation live in the threshold now
                continue
            out.append(p)
            i += 1
        exported = copy.copy(model)
        exported._modules = OrderedDict((str(k), m) for k, m in enumerate(out))
        exported.eval()
        return exported
    finally:
        model.train(was_training)


def packed_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes an exported model stores: its packed layers (bits, scales, biases, thresholds) and
    everything else (float layers' parameters and buffers, BatchNorm statistics)."""
    packed_layers = [m for m in model.modules() if isinstance(m, PackedLinear | PackedConv2d)]
    inside = {id(t) for m in packed_layers for t in m.buffers()}
    rest = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
               if id(t) not in inside)
    return {"packed_layers": sum(m.nbytes() for m in packed_layers), "other": rest}
