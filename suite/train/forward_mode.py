"""Forward-mode differentiation of a model, one layer at a time, holding one layer's activations
and tangents: the forward gradient's pass (`forward_gradient.py`).

A pass carries each activation x with its tangent x_t (the directional derivative of x along the
step's direction v) through the model's layers in order, and ends with the loss and its
directional derivative grad f . v. Nothing is kept for later: a layer's input and its tangent are
freed (or overwritten) once its output exists, so a pass holds at most one layer's input and
output with their tangents, plus small temporaries.

How a layer is passed: by a rule of `RULES` for the layers a plain network is made of (Conv2d,
Linear, BatchNorm, ReLU, Hardtanh, MaxPool2d, Flatten, Identity, Dropout), written for time and
memory; any other layer (a quantized layer, a layer with hooks, a custom block) by
torch.autograd.forward_ad's dual tensors over the layer's own forward (`_dual`), which uses each
op's forward-mode formula and the quantizers' ``jvp`` rules. A model that is not a plain
nn.Sequential is passed as one such layer.

The rules, with y = layer(x) and tangents W_t, b_t of the layer's parameters (views of the
direction: no copies):
- convolution / linear:  y_t = layer(x_t; W) + layer(x; W_t) + b_t     (one primal and two tangent
  products, as backprop's one forward and two backward products);
- batch norm (training):  with xhat = (x - mu) rstd, a = mean_c(x_t), b = mean_c(xhat x_t) per channel,
  y_t = gamma rstd (x_t - a - xhat b) + gamma_t xhat + beta_t   (d mu = a, d rstd = -rstd b);
- ReLU, Hardtanh: y_t = x_t where the function's slope is 1, else 0;
- max-pool: y_t = x_t at each window's argmax (the indices of the primal pass).
Where the pass owns x (it made it), a layer whose output is shaped like its input writes y and y_t
over x and x_t (a convolution chunk by chunk of samples: chunk i's output is written once chunk i's
input has been read), and BatchNorm, ReLU and Hardtanh work in place. Products run on chunks of
the batch of at most `CHUNK_BYTES` of output, so their temporaries stay a fraction of a layer.

k directions together (``k`` set): every tangent has a leading axis of k; the primal pass is
computed once (the cost of k directions is one primal and 2k tangent products).

BatchNorm running statistics are updated by the pass with ``update_stats`` only (once per step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

CHUNK_BYTES = 4 << 20  # the output of a product on one chunk of samples: at most this much

Tangent = torch.Tensor | None  # None: zero (the input, and layers before the first parameter)


@dataclass
class Pass:
    """One forward pass: the parameters' tangents, k (None: one direction, no leading axis),
    and whether BatchNorm running statistics are updated by it."""

    tangent: Callable[[torch.Tensor], Tangent]
    k: int | None = None
    update_stats: bool = True
    scratch: dict = field(default_factory=dict)  # (module id) -> BatchNorm buffers not to update


# --- helpers -------------------------------------------------------------------------------

def _rows(t: Tangent, s: slice, k: int | None) -> Tangent:
    """Samples s of an activation (k is None) or of a tangent with a leading direction axis."""
    if t is None:
        return None
    return t[:, s] if k is not None else t[s]


def _chunks(n: int, out_bytes: int) -> list[slice]:
    """Slices of the batch with at most CHUNK_BYTES of output each."""
    parts = max(1, min(n, math.ceil(out_bytes / CHUNK_BYTES)))
    size = math.ceil(n / parts)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _channel_view(v: torch.Tensor, x: torch.Tensor, k: int | None) -> torch.Tensor:
    """A per-channel vector (C,) or (k, C) shaped to broadcast over x's (N, C, *S) [(k, N, C, *S)]."""
    spatial = (1,) * (x.dim() - 2)
    return v.view(-1, 1, v.shape[-1], *spatial) if v.dim() == 2 else v.view(v.shape[-1], *spatial)


def _output_shape(f, x: torch.Tensor, *args) -> torch.Size:
    """One sample's output shape of f(x, *args), from meta tensors (no data, no work)."""
    meta = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in (x[:1], *args)]
    return f(*meta).shape[1:]


def _conv_shape(m: nn.Conv2d, x: torch.Tensor) -> torch.Size:
    """A convolution's output shape per sample (the formula of nn.Conv2d's documentation)."""
    if isinstance(m.padding, str) or m.padding_mode != "zeros" or x.dim() != 4:
        return _output_shape(m._conv_forward, x, m.weight, m.bias)
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
            zip(x.shape[2:], m.padding, m.dilation, m.kernel_size, m.stride, strict=True)]
    return torch.Size((m.out_channels, *size))


def _plain(m: nn.Module) -> bool:
    """A layer with no quantizer, no k-bit latent weights and no hooks: its own rule applies."""
    quantized = any(getattr(m, q, None) is not None for q in ("weight_quantizer", "input_quantizer",
                                                                "gradient_quantizer"))
    hooked = m._forward_hooks or m._forward_pre_hooks
    return not (quantized or hooked or hasattr(m, "latent"))


# --- rules: (module, x, x_t, owned, pass) -> (y, y_t, owned) or None (use dual tensors) ----------

def _product(m, x, xt, owned, p: Pass, f, accumulate, shape):
    """A convolution or linear layer f(input, weight, bias): y = f(x; W, b), y_t = f(x_t; W) +
    f(x; W_t, b_t), chunk by chunk of samples; written over (x, x_t) when shaped alike and owned."""
    if not _plain(m):
        return None
    w, b = m.weight, m.bias
    wt = p.tangent(w)
    bt = p.tangent(b) if b is not None else None
    n, k = x.shape[0], p.k
    tangent = wt is not None or xt is not None
    parts = _chunks(n, n * math.prod(shape) * x.element_size() * (1 + (k or 1)))
    in_place = owned and xt is not None and shape == x.shape[1:]
    if len(parts) == 1 and not in_place:
        return f(x, w, b), (_product_tangent(f, accumulate, x, xt, w, wt, bt, k) if tangent else None), True
    if in_place:
        y, yt = x, xt
    else:
        y = x.new_empty((n, *shape))
        yt = x.new_empty(((k,) if k is not None else ()) + tuple(y.shape)) if tangent else None
    for s in parts:
        xs, xts = x[s], _rows(xt, s, k)
        ys = f(xs, w, b)  # computed before y[s] (which may be x[s]) is written
        yts = _product_tangent(f, accumulate, xs, xts, w, wt, bt, k) if tangent else None
        y[s].copy_(ys)
        if yts is not None:
            _rows(yt, s, k).copy_(yts)
    return y, yt, True


def _product_tangent(f, accumulate, xs, xts, w, wt, bt, k):
    if k is None:
        out = f(xs, wt, bt) if wt is not None else None
        if xts is not None:
            out = f(xts, w, None) if out is None else accumulate(out, xts, w)
        return out
    out = f(xts.flatten(0, 1), w, None).unflatten(0, (k, xts.shape[1])) if xts is not None else None
    if wt is None:
        return out
    fresh = out is None
    for j in range(k):  # the k weight tangents, one product each (same work as one stacked product)
        term = f(xs, wt[j], bt[j] if bt is not None else None)
        if fresh:
            out = xs.new_empty((k, *term.shape)) if out is None else out
            out[j].copy_(term)
        else:
            out[j].add_(term)
    return out


def conv2d(m, x, xt, owned, p):
    f = m._conv_forward

    def accumulate(out, xts, w):
        return out.add_(f(xts, w, None))

    return _product(m, x, xt, owned, p, f, accumulate, _conv_shape(m, x))


def linear(m, x, xt, owned, p):
    def accumulate(out, xts, w):
        if out.dim() == 2:
            return out.addmm_(xts, w.t())  # no temporary
        return out.add_(F.linear(xts, w))

    return _product(m, x, xt, owned, p, F.linear, accumulate, torch.Size((*x.shape[1:-1], m.out_features)))


def batchnorm(m, x, xt, owned, p):
    """Training-mode BatchNorm (batch statistics) in place on x and x_t where owned."""
    if not (m.training and _plain(m)) or x.dim() < 2:
        return None
    k = p.k
    update = p.update_stats and m.track_running_stats
    momentum = 0.0
    if update:
        m.num_batches_tracked.add_(1)
        momentum = m.momentum if m.momentum is not None else 1.0 / float(m.num_batches_tracked)
    c = x.shape[1]
    mean, rstd = x.new_empty(c), x.new_empty(c)
    xhat = x if owned and x.device.type == "cpu" else torch.empty_like(x)
    # torch's own kernel: the running statistics are those of nn.BatchNorm, bit for bit
    torch.ops.aten.native_batch_norm.out(x, None, None, m.running_mean if update else None,
                                         m.running_var if update else None, True, momentum, m.eps,
                                         out=xhat, save_mean=mean, save_invstd=rstd)
    gamma, beta = m.weight, m.bias
    gt = p.tangent(gamma) if gamma is not None else None
    bt = p.tangent(beta) if beta is not None else None
    scale = rstd * gamma if gamma is not None else rstd
    yt = None
    if xt is not None:
        dims = [d + (k is not None) for d in [0, *range(2, x.dim())]]
        a = xt.mean(dims)                                   # mean_c(x_t): (C,) or (k, C)
        b = _channel_mean_product(xhat, xt, k)              # mean_c(xhat x_t)
        yt = xt if owned else xt.clone()
        yt.mul_(_channel_view(scale, x, None))
        shift = -scale * a + (bt if bt is not None else 0)
        yt.add_(_channel_view(shift, x, k))
        coef = -scale * b + (gt if gt is not None else 0)
        yt.addcmul_(xhat, _channel_view(coef, x, k))
    elif gt is not None or bt is not None:
        yt = xhat.new_zeros(((k,) if k is not None else ()) + tuple(x.shape))
        if gt is not None:
            yt.addcmul_(xhat, _channel_view(gt, x, k))
        if bt is not None:
            yt.add_(_channel_view(bt, x, k))
    y = xhat
    if gamma is not None:
        y.mul_(_channel_view(gamma, x, None))
    if beta is not None:
        y.add_(_channel_view(beta, x, None))
    return y, yt, True


def _channel_mean_product(xhat: torch.Tensor, xt: torch.Tensor, k: int | None) -> torch.Tensor:
    """mean over samples and positions of xhat * x_t per channel, without a tensor of x's size:
    one dot product per (sample, channel) row (a batched matrix product)."""
    n, c = xhat.shape[0], xhat.shape[1]
    count = xhat.numel() // c
    rows = xhat.reshape(n * c, 1, -1)
    out = []
    for t in (xt.unbind(0) if k is not None else [xt]):
        dots = torch.bmm(rows, t.reshape(n * c, -1, 1)) if xhat.dim() > 2 else (xhat * t).unsqueeze(-1)
        out.append(dots.view(n, c).sum(0).div_(count))
    return torch.stack(out) if k is not None else out[0]


def relu(m, x, xt, owned, p):
    if not _plain(m):
        return None
    y = x.relu_() if owned else torch.relu(x)
    if xt is None:
        return y, None, True
    if owned:  # x_t where y > 0, else 0, written over x_t
        return y, torch.ops.aten.threshold_backward.grad_input(xt, y, 0, grad_input=xt), True
    return y, torch.ops.aten.threshold_backward(xt, y, 0), True


def hardtanh(m, x, xt, owned, p):
    if not _plain(m):
        return None
    lo, hi = m.min_val, m.max_val
    y = x.clamp_(lo, hi) if owned else x.clamp(lo, hi)
    if xt is None:
        return y, None, True
    # slope 1 strictly inside (lo, hi): the same test on the clamped output
    if owned:
        return y, torch.ops.aten.hardtanh_backward.grad_input(xt, y, lo, hi, grad_input=xt), True
    return y, torch.ops.aten.hardtanh_backward(xt, y, lo, hi), True


def maxpool2d(m, x, xt, owned, p):
    if not _plain(m) or x.dim() != 4:
        return None
    k = p.k
    opts = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                ceil_mode=m.ceil_mode)
    n = x.shape[0]
    y = x.new_empty((n, *_output_shape(lambda t: F.max_pool2d(t, **opts), x)))
    yt = x.new_empty((k, *y.shape) if k is not None else y.shape) if xt is not None else None
    for s in _chunks(n, x[:1].numel() * x.element_size() * n):  # the indices: int64, input-sized chunks
        ys, idx = F.max_pool2d(x[s], return_indices=True, **opts)
        y[s].copy_(ys)
        if xt is not None:
            xts, flat_idx = _rows(xt, s, k).flatten(-2), idx.flatten(-2)
            if k is not None:
                flat_idx = flat_idx.expand(k, *flat_idx.shape)
            _rows(yt, s, k).copy_(torch.gather(xts, -1, flat_idx).view(_rows(yt, s, k).shape))
    return y, yt, True


def flatten(m, x, xt, owned, p):
    shift = p.k is not None
    end = m.end_dim if m.end_dim < 0 else m.end_dim + shift
    return x.flatten(m.start_dim, m.end_dim), (xt.flatten(m.start_dim + shift, end) if xt is not None else None), owned


def identity(m, x, xt, owned, p):
    return x, xt, owned


def dropout(m, x, xt, owned, p):
    if m.training and m.p > 0:
        return None  # random masks: the dual-tensor path draws one and applies it to both
    return x, xt, owned


RULES: dict[type, Callable] = {
    nn.Conv2d: conv2d, nn.Linear: linear, nn.BatchNorm1d: batchnorm, nn.BatchNorm2d: batchnorm,
    nn.ReLU: relu, nn.Hardtanh: hardtanh, nn.MaxPool2d: maxpool2d, nn.Flatten: flatten,
    nn.Identity: identity, nn.Dropout: dropout,
}


_RULE_OF_TYPE: dict[type, Callable | None] = {}


def rule_for(m: nn.Module) -> Callable | None:
    """The rule of the nearest registered class (QuantConv2d is a Conv2d); None: dual tensors."""
    cls = type(m)
    if cls not in _RULE_OF_TYPE:
        _RULE_OF_TYPE[cls] = next((RULES[c] for c in cls.__mro__ if c in RULES), None)
    return _RULE_OF_TYPE[cls]


# --- any other layer: forward-mode AD's dual tensors ---------------------------------------

def _dual(m, x, xt, owned, p):
    """The layer's own forward on dual tensors (torch.autograd.forward_ad; k directions: torch.func
    jvp under vmap). Parameter tangents that are views into the direction are copied by make_dual
    (it needs a tangent laid out like its primal): transient, one layer's parameters."""
    params = {n: q for n, q in m.named_parameters() if p.tangent(q) is not None}
    if p.k is not None:
        return _dual_batched(m, x, xt, params, p)
    with fwAD.dual_level():
        swapped = {n: fwAD.make_dual(q, p.tangent(q)) for n, q in params.items()}
        if not p.update_stats:
            swapped.update(_scratch_buffers(m, p))
        out = functional_call(m, swapped, (fwAD.make_dual(x, xt) if xt is not None else x,), strict=False)
        y, yt = fwAD.unpack_dual(out)
    return y, yt, y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def _scratch_buffers(m: nn.Module, p: Pass) -> dict:
    """Copies of the module's BatchNorm statistics for passes that must not update them (made
    once per module, kept by the method between steps)."""
    key = id(m)
    if key not in p.scratch:
        p.scratch[key] = {n: b.clone() for n, b in m.named_buffers()
                          if n.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}
    return p.scratch[key]


def _dual_batched(m, x, xt, params, p):
    from torch.func import jvp, vmap

    buffers = dict(m.named_buffers())

    def f(prm, inp):
        bufs = {n: b.clone() for n, b in buffers.items()}  # vmap may not mutate captured tensors
        return functional_call(m, (prm, bufs), (inp,)), bufs

    tangents = {n: p.tangent(q) for n, q in params.items()}

    def one(t, inp_t):
        if inp_t is None:
            return jvp(lambda prm: f(prm, x), (params,), (t,), has_aux=True)
        return jvp(f, (params, x), (t, inp_t), has_aux=True)

    out, out_t, bufs = vmap(one, in_dims=(0, 0 if xt is not None else None), randomness="same")(tangents, xt)
    if p.update_stats:
        for n, value in bufs.items():
            buffers[n].copy_(value[0])
    return out[0].clone(), out_t, True


# --- the pass ------------------------------------------------------------------------------

def layers_of(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order: a plain nn.Sequential (its forward not overridden) is opened,
    recursively; any other module is one layer."""
    if isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward:
        return [leaf for child in model for leaf in layers_of(child)]
    return [model]


@torch.no_grad()  # no autograd graph (forward mode is not affected by no_grad)
def run(layers: list[nn.Module], x: torch.Tensor, p: Pass) -> tuple[torch.Tensor, Tangent]:
    """The output of the layers on x and its tangent(s). x is never written to."""
    xt, owned = None, False
    for m in layers:
        rule = rule_for(m)
        out = rule(m, x, xt, owned, p) if rule is not None else None
        if out is None:
            out = _dual(m, x, xt, owned, p)
        x, xt, owned = out
    return x, xt


def loss_derivatives(loss_fn, z: torch.Tensor, zt: Tangent, y: torch.Tensor,
                     k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss at the output z and its directional derivative(s) along z_t (forward mode on the
    small output), as (loss, derivatives of shape (k,) or (1,))."""
    if zt is None:
        return loss_fn(z, y), z.new_zeros(k or 1)
    losses, derivs = [], []
    with fwAD.dual_level():
        for t in (zt.unbind(0) if k is not None else [zt]):
            primal, tangent = fwAD.unpack_dual(loss_fn(fwAD.make_dual(z, t), y))
            losses.append(primal)
            derivs.append(tangent if tangent is not None else z.new_zeros(()))
    return losses[0], torch.stack(derivs)
