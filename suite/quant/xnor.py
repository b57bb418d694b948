"""XNOR-Net (Rastegari, Ordonez, Redmon, Farhadi; ECCV 2016; arXiv 1603.05279): binary weights
scaled per output channel (BWN) and binary inputs scaled by the K map (XNOR-Net).

A BWN layer is ``weight_quantizer="xnor_weight"`` with real inputs; an XNOR-Net layer adds
``input_quantizer="xnor_input"``. The quantized layers ask the input quantizer for its scale
(`XNORInput.output_scale`) and multiply their output by it, since K depends on the layer's
kernel, stride, padding, dilation and groups:

    I * W  ~=  (sign(I) (*) sign(W)) . K alpha          (the paper's binary convolution, Sec. 3.2)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.fast_functions import fast
from suite.quant import fused
from suite.quant.binary import pass_where_pm1, sign_pm1, sign_ste
from suite.quant.registry import register


def _fused(w: torch.Tensor) -> bool:
    return w.dim() >= 1 and w.shape[0] > 0 and fused.serves(w) and fused.kernels() is not None


def _owned_gradient(grad: torch.Tensor, w: torch.Tensor) -> bool:
    """A plain dense gradient laid out like W (not a functorch-wrapped or batched one)."""
    return (type(grad) is torch.Tensor and grad.shape == w.shape and grad.dtype == w.dtype
            and grad.is_contiguous() and not torch._C._functorch.is_functorch_wrapped_tensor(grad))


class _SignAndScale(torch.autograd.Function):
    """(B, alpha) = (sign(W), mean |W| per output channel), both differentiable, W~ = alpha B.

    backward: dC/dW = 1_{|W| <= 1} dC/dB + sign(W) dC/dalpha / n    (sign's STE; d|W|/dW = sign(W))
    forward mode: (1_{|W| <= 1} t, mean_n(sign(W) t)) for a tangent t.
    With dC/dB = alpha dC/dW~ and dC/dalpha = sum_n sign(W) dC/dW~ this is the exact derivative of
    alpha sign(W) under the STE, whether the product alpha B is formed on the weights or alpha
    multiplies the layer's output.
    """

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(w):
        o, n = w.shape[0], w[0].numel()
        b = sign_pm1(w)
        # ||W||_1 per channel as the dot product sign(W) . W: one read of B and W, where |W| then a
        # sum would write and read a weight-sized temporary too
        alpha = torch.bmm(b.reshape(o, 1, n), w.reshape(o, n, 1)).view(o).div_(n)
        return b, alpha

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output[0])
        ctx.save_for_forward(inputs[0], output[0])

    @staticmethod
    def backward(ctx, grad_b, grad_alpha):
        w, b = ctx.saved_tensors
        c = (grad_alpha / w[0].numel()).view(-1, *(1,) * (w.dim() - 1))
        if _owned_gradient(grad_b, w):
            # dC/dB was made for B alone (see `XNORWeight.factors`) and is dead after this call:
            # writing dC/dW over it spares a weight-sized allocation (and its page faults) a step
            bound = 1.0 + torch.finfo(w.dtype).eps
            torch.ops.aten.hardtanh_backward.grad_input(grad_b, w, -bound, bound, grad_input=grad_b)
            return grad_b.addcmul_(b, c)
        return torch.addcmul(pass_where_pm1(grad_b, w), b, c)  # out of place: batched under vmap

    @staticmethod
    def jvp(ctx, tangent):
        w, b = ctx.saved_tensors
        o = w.shape[0]
        # mean_n(sign(W) t) per channel: a batched dot product, no temporary of W's size
        t_alpha = torch.bmm(b.reshape(o, 1, -1), tangent.reshape(o, -1, 1)).view(o).div_(w[0].numel())
        return pass_where_pm1(tangent, w), t_alpha


_sign_and_scale = fast(_SignAndScale)


class _ScaledSignFused(torch.autograd.Function):
    """W~ = alpha sign(W) by the fused CPU kernels (`suite.quant.fused`): one pass over W forward,
    one over the gradient backward, and the layer's own matrix product (bias fused) in between.
    Same values and derivatives as `_SignAndScale` with the product alpha B formed on the weights:

    backward: dC/dW = alpha 1_{|W| <= 1} g + sign(W) mean_n(sign(W) g),   g = dC/dW~
    forward mode: the same map applied to the tangent (its Jacobian is symmetric per channel).
    Only for tensors the kernels serve; torch.func's wrapped tensors take `_SignAndScale`.
    `reuse_grad`: g is fresh and dead after the backward (W~ fed one op whose backward made it,
    as in the quantized layers), so dC/dW is written over it, sparing an allocation a step.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(w, reuse_grad: bool):
        return fused.kernels().scaled_sign_rows(w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[1])
        ctx.save_for_forward(inputs[0], output[1])
        ctx.reuse_grad = inputs[1]

    @staticmethod
    def backward(ctx, grad, _grad_alpha):
        w, alpha = ctx.saved_tensors
        if _owned_gradient(grad, w) and fused.serves(grad) and fused.kernels() is not None:
            out = grad if ctx.reuse_grad else torch.empty_like(grad)
            return fused.kernels().bwn_weight_grad(grad, w, alpha, out), None
        return _bwn_jacobian(grad, w, alpha), None

    @staticmethod
    def jvp(ctx, tangent, _):
        w, alpha = ctx.saved_tensors
        return _bwn_jacobian(tangent, w, alpha), None


_scaled_sign_fused = fast(_ScaledSignFused)


def _bwn_jacobian(t: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha 1_{|W| <= 1} t + sign(W) mean_n(sign(W) t) per output channel, with torch ops."""
    b = sign_pm1(w)
    view = (-1,) + (1,) * (w.dim() - 1)
    per_channel = tuple(range(1, w.dim()))
    return torch.addcmul(pass_where_pm1(t, w) * alpha.view(view), b, (b * t).mean(per_channel, keepdim=True))


@torch.no_grad()
def project_latent_weights(w: torch.Tensor) -> None:
    """Mean-centre each filter over its input channels, then clamp to [-1, 1], in place: what both
    reference codes do to the latent weights before every binarization (github allenai/XNOR-Net
    @4006d59 train.lua, meancenterConvParms and clampConvParms; github jiecaoyu/XNOR-Net-PyTorch
    @ebccb50 util.py, BinOp.binarization). For W of shape (out, c_in, kh, kw):

        W[o, :, i, j] -= mean_c W[o, c, i, j];   W = clip(W, -1, 1)

    (a linear layer's (out, in) weights: the mean over its `in` inputs, as jiecaoyu's BinOp does).
    The clamp keeps every weight inside the |W| <= 1 window of the straight-through gradient: a
    weight past 1 would otherwise lose its own gradient for good.
    """
    if torch._C._functorch.is_functorch_wrapped_tensor(w):
        raise RuntimeError("xnor_weight(project=true) changes the layer's latent weights in place; it cannot act on "
                           "a torch.func-wrapped weight (forward gradients): use project=false there")
    w.sub_(w.mean(1, keepdim=True)).clamp_(-1.0, 1.0)


@register
class XNORWeight(nn.Module):
    """XNOR-Net's binary weights with a scaling factor per output channel (BWN, Sec. 3.1):

    forward  (W ~ alpha B, solved by B* = sign(W), alpha* = ||W||_l1 / n):
             W~ = alpha B,  B = sign(W)  (sign(0) = +1),  alpha = (1/n) ||W||_l1
             over each output channel (filter) of n = c_in/groups * kh * kw weights (n = in_features
             for a linear layer).
    backward (Sec. 3.2, "Training"): the paper prints dC/dW_i = dC/dW~_i (1/n + dsign/dW_i alpha)
             with dsign/dW = 1_{|W| <= 1}; the exact derivative of alpha sign(W) under that STE,
             which the authors' PyTorch code (BinOp.updateBinaryGradWeight) computes, is
                 dC/dW = alpha 1_{|W| <= 1} dC/dW~ + sign(W) mean_n(sign(W) dC/dW~)
             and is what this quantizer returns (the printed 1/n term is the j = i term of
             sign(W_i) sum_j sign(W_j) dC/dW~_j / n). The code then multiplies the gradient by
             n (1 - 1/c_in), an LR rescaling left to the optimizer settings here.
    Forward mode: the same Jacobian applied to the tangent.

    project=true: before each binarization the latent weights are mean-centred over each filter's
    input channels and clamped to [-1, 1] in place (`project_latent_weights`), as both reference
    codes do; the gradient is then that of the projected weights (theirs too).

    `factors(W)` returns (B, alpha) for a layer that multiplies its output by alpha instead (the
    paper's (sign(I) (*) sign(W)) . K alpha): same values and gradients, fewer torch passes over W.
    On the CPU the fused kernels make alpha B in one pass instead (`_ScaledSignFused`).
    """

    name = "xnor_weight"
    roles = frozenset({"weight"})
    bits = 1

    def __init__(self, project: bool = False):
        super().__init__()
        if not isinstance(project, bool):
            raise ValueError(f"project must be true or false, got {project!r}")
        self.project = project

    def factors(self, w: torch.Tensor, scale_output: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For the quantized layers: (B, alpha) with B = sign(W) shaped like W and alpha of shape
        (out_channels,), for a layer that multiplies its output by alpha (scale_output, and torch
        ops); otherwise (alpha B, None). The fused CPU kernels make alpha B in one pass, which costs
        less than scaling the output.

        The weights returned must feed one op whose backward makes a fresh gradient for them (the
        layer's matrix product), because the backward writes dC/dW over that gradient.
        """
        if self.project:
            project_latent_weights(w)
        if _fused(w):
            return _scaled_sign_fused(w, True)[0], None
        b, alpha = _sign_and_scale(w)
        if scale_output:
            return b, alpha
        return b * alpha.view(-1, *(1,) * (w.dim() - 1)), None

    def forward(self, w):
        if self.project:
            project_latent_weights(w)
        if _fused(w):
            return _scaled_sign_fused(w, False)[0]
        b, alpha = _sign_and_scale(w)
        return b * alpha.view(-1, *(1,) * (w.dim() - 1))

    def stored_scales(self, weight: torch.Tensor) -> int:
        """alpha: one float per output channel, kept beside the binary weights at inference."""
        return weight.shape[0]

    def extra_repr(self) -> str:
        return f"project={self.project}"


@register
class XNORInput(nn.Module):
    """XNOR-Net's binary input with its scaling map K (Sec. 3.2, "Binary Convolution"):

    forward:  I~ = sign(I) (sign(0) = +1); the layer's output is multiplied by
              K = A * k,  A = sum_c |I_c| / c  (mean over input channels), k = 1/(kh kw) on a kh x kw box,
              i.e. K is the mean of |I| over each output position's receptive field: computed with
              the layer's own kernel size, stride, padding, dilation (and per group of a grouped
              convolution, whose outputs see only their group's channels). For a linear layer K is
              one value per sample, the mean of |x| over the features (the paper's beta).
    backward: dsign/dI = 1_{|I| <= 1} (the BNN straight-through estimator the paper adopts); the
              gradient also flows through K, which is a differentiable function of I.
    scale=false drops K (the paper's "removing beta" ablation, Sec. 4.3): a BNN-style binary input.
    """

    name = "xnor_input"
    roles = frozenset({"input"})
    bits = 1

    def __init__(self, scale: bool = True, packed: bool = False):
        super().__init__()
        for name, value in (("scale", scale), ("packed", packed)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        self.scale, self.packed = scale, packed  # packed: sign(I) and its mask saved in 1 bit each

    def forward(self, x):
        return sign_ste(x, self.packed)

    def output_scale(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor | None:
        """K for `layer`'s output given its real input x: (..., 1) for a linear layer; for a
        convolution (N, G, H', W') for G groups (the layer broadcasts it over each group's
        output channels); None when scale=false."""
        if not self.scale:
            return None
        if isinstance(layer, nn.Conv2d):
            return _k_map(x, layer)
        return x.abs().mean(-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"scale={self.scale}" + (", packed=True" if self.packed else "")


def _k_map(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    n, c, h, w = x.shape
    g = conv.groups
    # A: channel mean of |I| (per group); abs + mean run faster than vector_norm's L1 kernel
    a = x.abs().reshape(n, g, c // g, h, w).mean(2)
    kh, kw = conv.kernel_size
    box = a.new_full((g, 1, kh, kw), 1.0 / (kh * kw))
    padding = conv.padding
    if conv.padding_mode != "zeros":  # the layer pads I itself; pad A the same way
        a = F.pad(a, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    k = F.conv2d(a, box, None, conv.stride, padding, conv.dilation, g)
    return k.squeeze(0) if unbatched else k
