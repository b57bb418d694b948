"""Packed arithmetic for the quantized layers: where a layer's weights and inputs are both binary
(BNN, XNOR-Net, DoReFa W1A1) or low-bit (DoReFa WkAm), its matrix product or convolution runs on the
bit-packed kernels (suite/kernels) instead of float32 GEMMs over +-1 values.

A layer's `arithmetic` is "packed" (the default) or "emulated". Packed applies when every condition
holds, else the layer emulates, as before, and says why (`layer.arithmetic_used`):

- both quantizers have a packed form (`WEIGHT_FORMS`, `INPUT_FORMS`: registries keyed by quantizer
  class): signs, or unsigned codes of at most 8 bits; the first layer's real input has none;
- plain float32 CPU tensors (not CUDA, not torch.func's wrapped tensors: the forward-gradient
  method's jvp and vmap take the float path; not torch.compile's fake tensors), the kernels built,
  and for a convolution zero padding given as numbers (padding_mode "zeros").

What is computed is the emulated op's value: F.linear(xq, wq, b) and conv2d(xq, wq, b) on the
quantizers' outputs xq and wq, whose bits the kernels read (sign bits, or codes c = round((v -
offset) / step)) with the per-output-channel magnitude |wq[o, 0]| (1, XNOR-Net's alpha, DoReFa's E)
as a float scale. The integer part is exact; one float multiplication and addition follow, so the
outputs equal the emulated layer's to float rounding (the emulated GEMM rounds its sums too).

The backward pass is the emulated one, op for op: the gradients of F.linear (mm of the output
gradient with wq, and with xq) and of conv2d (aten.convolution_backward) on the same saved xq and
wq, so gradients are identical (bitwise) and flow on through the quantizers' straight-through
estimators unchanged. Forward mode (jvp of dual tensors) uses the float products.

In evaluation without gradients the packed weights are cached per layer and reused while the weight
tensor is unchanged (its version counter), so inference packs them once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.fast_functions import fast
from suite.kernels import dispatch
from suite.kernels import matmul as kmatmul
from suite.kernels.conv import conv2d as kconv2d
from suite.kernels.conv import pack_weights as pack_conv_weights
from suite.kernels.forms import Codes, MaskedSigns, Signs
from suite.kernels.packing import Packed, as_panels, pack_codes, pack_masked_signs, pack_signs, sign_and_pack
from suite.quant import BinaryConnect, BNNSign, DoReFaActivation, DoReFaWeight, XNORInput, XNORWeight

ARITHMETICS = ("packed", "emulated")
MAX_BITS = 8  # codes wider than this stay emulated (the bit-serial cost grows as bits_x x bits_w)


def _dorefa_weight(q, training):
    if q.bits == 1:
        return Signs()
    return Codes(q.bits, 2.0 / (2**q.bits - 1), -1.0) if q.bits <= MAX_BITS else None


def _dorefa_activation(q, training):
    return Codes(q.bits, 1.0 / (2**q.bits - 1)) if q.bits <= MAX_BITS else None


# quantizer class -> (quantizer, training) -> the form of its output, or None (not packable). Other
# modules register theirs (suite/models/blocks.py: dropout after an input quantizer).
WEIGHT_FORMS = {
    BinaryConnect: lambda q, training: Signs() if (not q.stochastic or training) else None,  # eval: real weights
    BNNSign: lambda q, training: Signs(),
    XNORWeight: lambda q, training: Signs(),  # alpha sign(W): alpha is read as the row's magnitude
    DoReFaWeight: _dorefa_weight,
}
INPUT_FORMS = {
    BNNSign: lambda q, training: Signs(),
    XNORInput: lambda q, training: Signs(),  # K multiplies the layer's output, as emulated
    DoReFaActivation: _dorefa_activation,
}


def prepare() -> None:
    """Build (first time on this machine) or load the kernels, and read the CPU's features."""
    from suite.kernels import build

    if build.load() is not None:
        dispatch.supported()


def weight_form(q, training: bool):
    f = WEIGHT_FORMS.get(type(q))
    return f(q, training) if f is not None else None


def input_form(q, training: bool):
    f = INPUT_FORMS.get(type(q))
    return f(q, training) if f is not None else None


_PLAIN = (torch.Tensor, nn.Parameter)
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _plain(x, bias) -> bool:
    """Plain dense float32 CPU tensors: not CUDA, not torch.func's wrapped ones, not subclasses."""
    for t in (x, bias):
        if t is not None and (type(t) not in _PLAIN or t.dtype != torch.float32 or t.device.type != "cpu"
                              or _is_wrapped(t)):
            return False
    return True


@dataclass(frozen=True)
class Plan:
    """How a layer's forward runs packed: the forms of its quantized input and weights."""

    x_form: Signs | Codes
    w_form: Signs | Codes

    @property
    def label(self) -> str:
        return _LABELS.get(dispatch.chosen()) or f"packed ({dispatch.chosen()})"


_LABELS = {name: f"packed ({name})" for name in dispatch.ISAS}


def _forms(layer) -> Plan | str:
    """The layer's Plan from its quantizers and mode alone, or why it has none (cached per layer: the
    checks cost microseconds, which a batch-1 forward pass notices)."""
    modules = layer._modules  # not nn.Module.__getattr__: this runs on every forward pass
    iq, wq = modules.get("input_quantizer"), modules.get("weight_quantizer")
    key = (layer.training, layer.arithmetic, id(iq), id(wq), iq.training if iq is not None else None,
           layer.__dict__.get("padding_mode"))
    cached = layer.__dict__.get("_forms_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    if layer.weight_quantizer is None and layer.input_quantizer is None:
        out = "float"
    elif layer.arithmetic != "packed":
        out = "emulated (arithmetic = emulated)"
    elif layer.input_quantizer is None:
        out = "emulated (real-valued input)"
    else:
        xf = input_form(layer.input_quantizer, layer.training)
        wf = weight_form(layer.weight_quantizer, layer.training) if layer.weight_quantizer is not None else None
        if xf is None or wf is None:
            out = "emulated (no packed form for these quantizers in this mode)"
        elif isinstance(xf, Signs | MaskedSigns) and not isinstance(wf, Signs):
            out = "emulated (binary inputs with k-bit weights)"
        elif isinstance(layer, nn.Conv2d) and (layer.padding_mode != "zeros" or isinstance(layer.padding, str)):
            out = "emulated (padding mode or 'same'/'valid' padding)"
        else:
            out = Plan(xf, wf)
    layer.__dict__["_forms_cache"] = (key, out)
    return out


def plan(layer, x: torch.Tensor) -> Plan | str:
    """A Plan where the layer's forward can run packed on input x, else the reason it is emulated
    (for `layer.arithmetic_used`)."""
    p = _forms(layer)
    if not isinstance(p, Plan):
        return p
    if not _plain(x, layer.bias):
        return "emulated (not plain float32 CPU tensors)"
    if dispatch.chosen() is None:
        return f"emulated (kernels {dispatch.status()})"
    return p


def _pack_input(xq, form):
    if isinstance(form, Signs):
        return pack_signs(xq)
    if isinstance(form, MaskedSigns):
        return pack_masked_signs(xq)
    return pack_codes(xq, form.bits, 1.0 / form.step)


def _row_magnitudes(wq: torch.Tensor) -> torch.Tensor:
    """|wq[o, 0...]| per output channel: the scale of alpha sign(W) (every entry of a row has it)."""
    return wq.detach().reshape(wq.shape[0], -1)[:, 0].abs()


def pack_linear_weight(wq, form):
    if isinstance(form, Signs):
        return pack_signs(wq, "panels"), _row_magnitudes(wq)
    return pack_codes(wq, form.bits, 1.0 / form.step, -form.offset / form.step, "panels"), 1.0


def pack_conv_weight(wq, form):
    return pack_conv_weights(wq, form), (_row_magnitudes(wq) if isinstance(form, Signs) else 1.0)


class _PackedLinear(torch.autograd.Function):
    """y = F.linear(xq, wq, bias) on the kernels; F.linear's own backward (mm with wq and xq)."""

    @staticmethod
    def forward(xq, wq, bias, xf, wf, packed_w):
        wp, scale = packed_w if packed_w is not None else pack_linear_weight(wq, wf)
        return kmatmul.linear(_pack_input(xq, xf), xf, wp, wf, bias, scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        xq, wq, bias = inputs[:3]
        ctx.save_for_backward(xq, wq)
        ctx.save_for_forward(xq, wq)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, g):
        xq, wq = ctx.saved_tensors
        # as autograd's addmm/mm backward for F.linear: grad.mm(W), and (grad^T xq) for W
        gx = g.mm(wq) if ctx.needs_input_grad[0] else None
        gw = g.t().mm(xq) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        xq, wq = ctx.saved_tensors
        out = None
        for t in (F.linear(tx, wq) if tx is not None else None, F.linear(xq, tw) if tw is not None else None, tb):
            if t is not None:
                out = t if out is None else out + t
        return out


class _PackedConv(torch.autograd.Function):
    """y = conv2d(xq, wq, bias) on the kernels; conv2d's own backward (aten.convolution_backward)."""

    @staticmethod
    def forward(xq, wq, bias, xf, wf, stride, padding, dilation, groups):
        cw, scale = pack_conv_weight(wq, wf)
        return kconv2d(xq, xf, cw, bias, scale, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        xq, wq, bias = inputs[:3]
        ctx.save_for_backward(xq, wq)
        ctx.save_for_forward(xq, wq)
        ctx.geometry = inputs[5:9]
        ctx.bias_sizes = [wq.shape[0]] if bias is not None else None

    @staticmethod
    def backward(ctx, g):
        xq, wq = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        need = ctx.needs_input_grad
        mask = [need[0], need[1], ctx.bias_sizes is not None and need[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(g, xq, wq, ctx.bias_sizes, stride, padding, dilation, False,
                                                         [0, 0], groups, mask)
        return gx, gw, gb, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        xq, wq = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        out = None
        for t in (F.conv2d(tx, wq, None, stride, padding, dilation, groups) if tx is not None else None,
                  F.conv2d(xq, tw, None, stride, padding, dilation, groups) if tw is not None else None,
                  tb.view(-1, 1, 1) if tb is not None else None):
            if t is not None:
                out = t if out is None else out + t
        return out


_packed_linear, _packed_conv = fast(_PackedLinear), fast(_PackedConv)


def cached_weights(layer, p: Plan):
    """In evaluation without gradients: the layer's packed weights, made from its quantized weights
    once and reused while the weight tensor is unchanged (its version counter); otherwise None (the
    forward packs this step's quantized weights)."""
    w = getattr(layer, "weight", None)
    if layer.training or torch.is_grad_enabled() or not isinstance(w, torch.Tensor):
        if getattr(layer, "_packed_cache", None) is not None:
            layer._packed_cache = None
        return None
    key = (w.data_ptr(), w._version, p.w_form, dispatch.index())
    cache = getattr(layer, "_packed_cache", None)
    if cache is None or cache[0] != key:
        pack = pack_conv_weight if isinstance(layer, nn.Conv2d) else pack_linear_weight
        with torch.no_grad():
            wq, _ = layer._weight_and_scale(False)  # alpha on the weights: read back as row magnitudes
            cache = (key, pack(wq, p.w_form))
        layer._packed_cache = cache
    return cache[1]


def linear(xq: torch.Tensor, wq: torch.Tensor, bias, p: Plan, packed_w=None) -> torch.Tensor:
    """F.linear(xq, wq, bias), packed, with F.linear's gradients (packed_w: wq already packed, with
    its scale)."""
    if xq.dim() != 2:
        lead = xq.shape[:-1]
        return _packed_linear(xq.reshape(-1, xq.shape[-1]), wq, bias, p.x_form, p.w_form, packed_w).view(
            *lead, -1)
    return _packed_linear(xq, wq, bias, p.x_form, p.w_form, packed_w)


class _SignAndPack(torch.autograd.Function):
    """BinaryConnect's w_b = sign(w) with its straight-through gradient (as `_BinarizeDeterministic`),
    and w_b's packed bits from the same pass over w (not differentiable)."""

    @staticmethod
    def forward(w):
        signs, bits = sign_and_pack(w)
        return signs, bits.words

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad, _):
        return grad

    @staticmethod
    def jvp(ctx, tangent):
        return tangent, None


_sign_and_pack = fast(_SignAndPack)


# weight quantizers whose forward is sign(w) (values +-1) with a straight-through gradient: their sign
# and its packing in one pass while training (a linear layer's weights: one read of W instead of two)
SIGN_STE_WEIGHTS = {BinaryConnect: lambda q: not q.stochastic and q.unit == 1.0}


def signed_and_packed_weights(layer, p: Plan):
    """(sign(W) as the quantizer gives it, (its packed panels, scale 1)) for a linear layer whose weight
    quantizer is a sign with a straight-through gradient, else None."""
    q, w = layer._modules.get("weight_quantizer"), layer._parameters.get("weight")
    fits = SIGN_STE_WEIGHTS.get(type(q))
    if fits is None or not fits(q) or w is None or w.dim() != 2 or not _plain(w, None) or not w.is_contiguous():
        return None
    signs, words = _sign_and_pack(w)
    return signs, (as_panels(Packed(words, w.shape[1])), 1.0)


def conv2d(layer, xq: torch.Tensor, wq: torch.Tensor, bias, p: Plan) -> torch.Tensor:
    """conv2d(xq, wq, bias) with the layer's stride, padding, dilation and groups, packed."""
    unbatched = xq.dim() == 3
    if unbatched:
        xq = xq.unsqueeze(0)
    y = _packed_conv(xq.contiguous(), wq, bias, p.x_form, p.w_form, list(layer.stride), list(layer.padding),
                     list(layer.dilation), layer.groups)
    return y.squeeze(0) if unbatched else y


def linear_from_input(x: torch.Tensor, bias, p: Plan, packed_w) -> torch.Tensor:
    """Without gradients: F.linear(q(x), wq, bias) from the raw input x, whose bits are those of its
    quantized value (sign bits; DoReFa's codes round(clip(x, 0, 1) n) = clamp(round(x n), 0, n)), and
    the cached packed weights; no autograd Function (whose call costs tens of microseconds)."""
    wp, scale = packed_w
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    y = kmatmul.linear(_pack_input(x2, p.x_form), p.x_form, wp, p.w_form, bias, scale)
    return y if x.dim() == 2 else y.view(*x.shape[:-1], -1)


def conv2d_from_input(layer, x: torch.Tensor, bias, p: Plan, packed_w) -> torch.Tensor:
    """Without gradients: conv2d(q(x), wq, bias) from the raw input's bits (as `linear_from_input`)."""
    cw, scale = packed_w
    unbatched = x.dim() == 3
    y = kconv2d(x.unsqueeze(0) if unbatched else x, p.x_form, cw, bias, scale, layer.stride, layer.padding,
                layer.dilation, layer.groups)
    return y.squeeze(0) if unbatched else y


def arithmetic_summary(model: nn.Module) -> dict[str, int]:
    """How many quantized layers ran which arithmetic in their last forward pass (for run records),
    e.g. {"packed (avx512_vpopcntdq)": 4, "emulated (real-valued input)": 1, "float": 2}."""
    counts: dict[str, int] = {}
    for m in model.modules():
        used = getattr(m, "arithmetic_used", None)
        if used is not None:
            counts[used] = counts.get(used, 0) + 1
    return counts
