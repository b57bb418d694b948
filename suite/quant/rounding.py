"""Stochastic rounding to k bits on the tensor's own range (min-max affine quantization)."""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.fast_functions import fast
from suite.quant.noise import uniform_centered
from suite.quant.registry import register
from suite.quant.ste import StraightThrough


def _range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = torch.aminmax(x)
    alpha = hi - lo
    return lo, torch.where(alpha > 0, alpha, 1.0)  # a constant tensor: x~ = 0, Q(X) = X


class _StochasticRound(StraightThrough):

    @staticmethod
    def forward(x, bits):
        n = 2**bits - 1
        beta, alpha = _range(x)
        # floor(n x~ + u), u = sigma + 1/2 uniform in (0, 1): rounds up with probability frac(n x~).
        # x - beta first: exact for the values near beta, whatever the offset of the range
        q = x.sub(beta).mul_(n / alpha).add_(uniform_centered(x)).add_(0.5).floor_()
        # n x~ = n at the max, and float rounding of n + u can give n + 1: keep the 2^k levels
        q.clamp_(0, n)
        return q.mul_(alpha / n).add_(beta)


class _NearestRound(_StochasticRound):
    @staticmethod
    def forward(x, bits):
        n = 2**bits - 1
        beta, alpha = _range(x)
        return x.sub(beta).mul_(n / alpha).round_().mul_(alpha / n).add_(beta)


_stochastic_round, _nearest_round = fast(_StochasticRound), fast(_NearestRound)


@register
class StochasticRound(nn.Module):
    """Stochastic k-bit quantization over the tensor's range, as in the DoReFa authors' slides
    ("Quantization Methods", Zhou 2019; stochastic rounding as in Gupta et al. 2015):

    forward (training):  Q(X) = alpha quantize_k(X~ + xi / (2^k - 1)) + beta,  xi ~ U(-1/2, 1/2)
                         X~ = (X - beta) / alpha,  alpha = max(X) - min(X),  beta = min(X)
             i.e. each value goes to one of its two neighbouring levels beta + j alpha / (2^k - 1),
             the upper one with probability equal to its fractional position: E[Q(X)] = X (unbiased).
             Computed as floor((2^k - 1) X~ + u) with u ~ U(0, 1), the same law.
    forward (eval):      deterministic, alpha quantize_k(X~) + beta (round to nearest).
    backward:            dC/dX = dC/dQ (straight through; alpha, beta constants). Same tangent.
    2^k levels spanning [min(X), max(X)], one range for the whole tensor. Noise from torch's global
    generator, 16-bit resolution on the CPU (see `noise.uniform_centered`).
    """

    name = "stochastic_round"
    roles = frozenset({"weight", "input"})

    def __init__(self, bits: int = 4):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
        self.bits = bits

    def forward(self, x):
        return (_stochastic_round if self.training else _nearest_round)(x, self.bits)

    def stored_scales(self, weight: torch.Tensor) -> int:
        return 2  # alpha and beta

    def extra_repr(self) -> str:
        return f"bits={self.bits}"
