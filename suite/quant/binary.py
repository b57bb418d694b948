"""Binary quantizers: the sign function and BinaryConnect (deterministic and stochastic)."""

import torch
import torch.nn as nn

from suite.quant.registry import register


def sign_pm1(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, the convention of every paper here (torch.sign(0) is 0).

    The one place in the suite where this convention lives.
    """
    # sign(x) + 0.5 is > 0 for x >= 0 (and -0.0) and < 0 for x < 0; two cheap passes, where a
    # torch.where on a bool mask costs ten times more on the CPU. NaN stays NaN.
    return torch.sign(x).add_(0.5).sign_()


class _BinarizeDeterministic(torch.autograd.Function):
    """w_b = sign(w) forward; gradient and tangent passed straight through (BinaryConnect Alg. 1)."""

    @staticmethod
    def forward(w):
        return sign_pm1(w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad

    @staticmethod
    def jvp(ctx, tangent):
        return tangent


def _uniform_pm1_16bit(like: torch.Tensor) -> torch.Tensor:
    """Uniform noise on the 2^16 midpoints (k + 0.5) / 2^15 - 1 in (-1, 1), shaped like `like`.

    On the CPU, torch's generator costs ~4 ns per float drawn, more than a float training step
    spends per weight; drawing 64 random bits per int64 and splitting them into four int16
    values costs a quarter of that. 16 bits of resolution put P(+1) within 2^-16 of
    hard_sigmoid(w), far below any sampling error a training run can see.
    """
    n = like.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device)
    bits.random_(-(2**63), 2**63 - 1)
    return bits.view(torch.int16)[:n].view(like.shape)


class _BinarizeStochastic(torch.autograd.Function):
    """w_b = +1 with probability hard_sigmoid(w) = clip((w + 1) / 2, 0, 1), else -1.

    Drawn as sign(w - u) with u uniform in (-1, 1): P(u <= w) = hard_sigmoid(w). On the CPU u
    has 16-bit resolution (see `_uniform_pm1_16bit`); elsewhere (CUDA's Philox generator is
    fast) it is a float draw. Gradient and tangent straight through.
    """

    @staticmethod
    def forward(w):
        if w.device.type == "cpu":
            # d = w - (k + 0.5) / 2^15 for the signed int16 draw k, computed in place in the one
            # fresh float buffer (each fresh 12 MB tensor costs page faults on the CPU).
            d = _uniform_pm1_16bit(w).to(w.dtype).mul_(-(2.0**-15)).add_(w).sub_(2.0**-16)
        else:
            d = torch.empty_like(w).uniform_(-1.0, 1.0).neg_().add_(w)
        return d.sign_().add_(0.5).sign_()  # sign_pm1, in place

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad

    @staticmethod
    def jvp(ctx, tangent):
        return tangent


@register
class Identity(nn.Module):
    """Full precision: x -> x (the float baseline; same as passing no quantizer)."""

    name = "identity"
    bits = 32

    def forward(self, x):
        return x


@register
class BinaryConnect(nn.Module):
    """BinaryConnect weight binarization (Courbariaux et al. 2015, Eq. 1 and 2), with H = 1.

    deterministic (Eq. 1): w_b = +1 if w >= 0 else -1                  (sign(0) = +1)
    stochastic    (Eq. 2): w_b = +1 with p = hard_sigmoid(w) = clip((w+1)/2, 0, 1), else -1
    backward: dC/dw := dC/dw_b (straight through; the latent weights are clipped to [-1, 1] after
    each update by the layer, which is what bounds them).
    At test time (module in eval mode) the deterministic variant keeps binary weights and the
    stochastic one uses the real-valued weights, as the authors' code does.
    """

    name = "binaryconnect"

    def __init__(self, stochastic: bool = False):
        super().__init__()
        if not isinstance(stochastic, bool):
            raise ValueError(f"stochastic must be true or false, got {stochastic!r}")
        self.stochastic = stochastic

    @property
    def bits(self) -> int:
        return 32 if self.stochastic else 1  # stochastic BC infers with the real-valued weights

    def forward(self, w):
        if not self.stochastic:
            return _BinarizeDeterministic.apply(w)
        return _BinarizeStochastic.apply(w) if self.training else w

    def extra_repr(self) -> str:
        return f"stochastic={self.stochastic}"
