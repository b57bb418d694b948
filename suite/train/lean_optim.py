"""Adam for k-bit latent weights inside the backward pass, layer by layer, with 8-bit state.

Training a binary layer holds, at the peak of a step, every layer's gradient (float32, one per
weight) until the optimizer runs after the backward pass, and Adam's two float32 moments per
weight between steps. Here (after Wang, Gao, Zhang, Mo, Zhou, "Enabling Binary Neural Network
Training on the Edge", 2021, which cuts both):

- each layer's latent weights are updated as soon as the backward pass has made their gradient,
  in chunks of `CHUNK` weights (decode the codes, update, re-encode with stochastic rounding), and
  the gradient is freed: one layer's gradient exists at a time, no weight-sized temporaries;
- Adam's moments are kept in 8 bits per weight, per block of `BLOCK` weights (as Dettmers, Lewis,
  Shleifer, Zettlemoyer, "8-bit Optimizers via Block-wise Quantization", ICLR 2022, block-wise):
      m = s_m c_m / 127,                c_m in -127..127 (int8),  s_m = max |m| over the block
      sqrt(v) = s_v 2^((c_v - 255) / 8), c_v in 1..255 (uint8; 0 is v = 0), s_v = max sqrt(v)
  (m linear, v on a logarithmic grid of 9% steps down to 2^-32 s_v, so that a small v never
  rounds to 0 and blows up m / sqrt(v)); both re-quantized every step with stochastic rounding,
  unbiased in the code, so that Adam's small per-step changes (0.1% of v for beta2 = 0.999)
  survive on average.

The update is torch's Adam's (bias corrections, eps, coupled weight decay), applied to the decoded
state; it differs from the float32-state path by the state's quantization only. The moments'
bytes are 2 per weight + 8 per block (`state_bytes`).
"""

from __future__ import annotations

import math

import torch

from suite.nn.latent import LatentStorage, latent_layers
from suite.quant import BinaryConnect, packing
from suite.quant.noise import uniform_centered

BLOCK = 256
CHUNK = 1 << 16  # weights updated at a time (a multiple of BLOCK)


class _LatentWeight(torch.autograd.Function):
    """The layer's binary weights from its codes; backward: the layer's update, then nothing."""

    @staticmethod
    def forward(ctx, anchor, storage, weight, update):
        ctx.storage, ctx.update = storage, update
        return weight

    @staticmethod
    def backward(ctx, grad):
        ctx.update(ctx.storage, grad.reshape(-1), 0)
        return None, None, None, None


class _BinaryLinear(torch.autograd.Function):
    """y = x W_b^T for a linear layer with 8-bit latent codes, by chunks of `ROWS` output rows:
    each chunk's binary weights are made from the codes' top bit when needed and dropped; the
    backward pass computes dL/dx and each chunk's weight gradient, hands the chunk to the
    optimizer (the rows' codes change only after they were used) and drops it. Saves x (in bits
    when it was marked: `packing`)."""

    @staticmethod
    def forward(ctx, x, anchor, storage, update):
        ctx.storage, ctx.update = storage, update
        ctx.save_for_backward(x)
        out = x.new_empty(*x.shape[:-1], storage.shape[0])
        for r in _row_chunks(storage):
            torch.matmul(x, _signs(storage, r).t(), out=out[..., r])
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        storage = ctx.storage
        x2, g2 = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        grad_x = torch.zeros_like(x2) if ctx.needs_input_grad[0] else None
        n_in = storage.shape[1]
        for r in _row_chunks(storage):
            w = _signs(storage, r)
            if grad_x is not None:
                grad_x.addmm_(g2[:, r], w)
            del w
            ctx.update(storage, (g2[:, r].t() @ x2).view(-1), r.start * n_in)
        return (grad_x.view_as(x) if grad_x is not None else None), None, None, None


ROWS = 64  # output rows of a linear layer per chunk (64 x 1024 weights: 256 KiB of float32)


def _row_chunks(storage: LatentStorage) -> list[slice]:
    rows = storage.shape[0]
    return [slice(i, min(i + ROWS, rows)) for i in range(0, rows, ROWS)]


def _signs(storage: LatentStorage, rows: slice) -> torch.Tensor:
    """+-1 (float) of the codes' rows: the top bit (c >= 128 iff the latent weight is >= 0)."""
    return (storage.codes[rows] >= 128).to(storage.scale.dtype).mul_(2.0).sub_(1.0)


class LeanLatentAdam:
    """Adam with 8-bit moments for the k-bit latent layers of `model`, run inside the backward
    pass. The run's torch optimizer keeps the layers' ``latent`` param groups (for the LR schedule
    and the group's lr, betas, eps, weight decay); their post-step hook finds nothing left to do."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.groups = {}
        for group in optimizer.param_groups:
            if group.get("latent"):
                for codes in group["params"]:
                    self.groups[codes] = group
        self.state: dict[LatentStorage, dict] = {}
        for layer in latent_layers(model):
            storage = layer.latent
            if storage.bits != 8:
                raise ValueError("the in-backward 8-bit Adam updates 8-bit latent codes (latent_bits = 8)")
            n = storage.count
            blocks = -(-n // BLOCK)
            # kept in the torch optimizer's own state: its state_dict (checkpoints) and the storage
            # accounting (`suite.nn.storage.optimizer_tensors`) see it
            state = optimizer.state[storage.codes]
            state.update({"step": 0, "m": torch.zeros(n, dtype=torch.int8), "v": torch.zeros(n, dtype=torch.uint8),
                          "m_scale": torch.zeros(blocks), "v_scale": torch.zeros(blocks)})
            self.state[storage] = state
            storage.in_backward = self._attach
            deterministic = isinstance(layer.weight_quantizer, BinaryConnect) and not layer.weight_quantizer.stochastic
            if isinstance(layer, torch.nn.Linear) and deterministic and (ROWS * storage.shape[1]) % BLOCK == 0:
                storage.in_backward_linear = self.linear

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for s in self.state.values() for t in s.values()
                   if isinstance(t, torch.Tensor))

    def _attach(self, storage: LatentStorage, weight: torch.Tensor) -> torch.Tensor:
        """Called by the layer's forward: its weights, whose gradient goes to `_update`."""
        out = _LatentWeight.apply(storage.anchor, storage, weight, self._update)
        hint = packing._hint(weight)
        return packing.mark(out, *hint) if hint is not None else out

    def linear(self, x: torch.Tensor, storage: LatentStorage) -> torch.Tensor:
        """A linear layer's product x W_b^T by row chunks, updated in its backward (`_BinaryLinear`)."""
        return _BinaryLinear.apply(x, storage.anchor, storage, self._update)

    @torch.no_grad()
    def _update(self, storage: LatentStorage, grad: torch.Tensor, offset: int) -> None:
        """Adam on the weights [offset, offset + grad.numel()) of the layer (flat), whose gradient
        is `grad`; the step count advances with the chunk at offset 0 (once per step)."""
        group, st = self.groups[storage.codes], self.state[storage]
        b1, b2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        if offset == 0:
            st["step"] += 1
        t = st["step"]
        step_size = lr / (1 - b1**t)
        root_bc2 = math.sqrt(1 - b2**t)
        codes, last = storage.codes.view(-1), offset + grad.numel()
        for start in range(offset, last, CHUNK):
            end = min(start + CHUNK, last)
            blocks = slice(start // BLOCK, -(-end // BLOCK))
            w = codes[start:end].to(storage.scale.dtype)
            w.mul_(storage.scale * (2.0 / storage.levels)).sub_(storage.scale)  # LatentStorage.decode
            g = grad[start - offset:end - offset]
            if wd:
                g = g.add(w, alpha=wd)
            m = _dequant_m(st["m"][start:end], st["m_scale"][blocks])
            v = _dequant_v(st["v"][start:end], st["v_scale"][blocks])
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = v.sqrt().div_(root_bc2).add_(eps)
            w.addcdiv_(m, denom, value=-step_size)
            _quant_m(m, st["m"][start:end], st["m_scale"][blocks])
            _quant_v(v, st["v"][start:end], st["v_scale"][blocks])
            _encode_chunk(storage, w, codes[start:end])


def _blocked(x: torch.Tensor) -> torch.Tensor:
    """x as (blocks, BLOCK), the last block padded (a copy only when x does not fill it)."""
    pad = -x.numel() % BLOCK
    return torch.nn.functional.pad(x, (0, pad)).view(-1, BLOCK) if pad else x.view(-1, BLOCK)


def _dequant_m(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    n = codes.numel()
    out = _blocked(codes.float()).mul_(scale.view(-1, 1) / 127)
    return out.view(-1)[:n].clone() if out.numel() != n else out.view(-1)


def _dequant_v(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    n = codes.numel()
    c = _blocked(codes.float())
    root = torch.exp2((c - 255) / 8).mul_(scale.view(-1, 1)).mul_(c > 0)
    v = root.square_()
    return v.view(-1)[:n].clone() if v.numel() != n else v.view(-1)


def _stochastic_round_(x: torch.Tensor) -> torch.Tensor:
    return x.add_(uniform_centered(x)).add_(0.5).floor_()  # floor(x + u), u in (0, 1): unbiased


def _quant_m(m: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> None:
    b = _blocked(m)
    s = b.abs().amax(1)
    scale.copy_(s)
    q = _stochastic_round_(b.mul(127 / s.clamp(min=1e-30).view(-1, 1))).clamp_(-127, 127)
    codes.copy_(q.view(-1)[:codes.numel()].to(torch.int8))


def _quant_v(v: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> None:
    root = _blocked(v).sqrt()
    s = root.amax(1)
    scale.copy_(s)
    level = root.div_(s.clamp(min=1e-30).view(-1, 1)).log2_().mul_(8).add_(255)  # -inf where v = 0
    zero = ~torch.isfinite(level)
    q = _stochastic_round_(level.nan_to_num_(0.0, 0.0, 0.0)).clamp_(1, 255).masked_fill_(zero, 0)
    codes.copy_(q.view(-1)[:codes.numel()].to(torch.uint8))


def _encode_chunk(storage: LatentStorage, w: torch.Tensor, codes: torch.Tensor) -> None:
    """LatentStorage.encode_ for a chunk of 8-bit codes (stochastic rounding)."""
    t = w.div_(storage.scale).clamp_(-1.0, 1.0).add_(1.0).mul_(storage.levels / 2)
    t.add_(uniform_centered(t)).add_(0.5).floor_().clamp_(0, storage.levels)
    codes.copy_(t)
