"""Ternary weights, threshold-based: Ternary Weight Networks (Li, Zhang, Liu; arXiv 1605.04711)."""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.fast_functions import fast
from suite.quant.registry import register
from suite.quant.ste import StraightThrough


class _Ternarize(StraightThrough):

    @staticmethod
    def forward(w, threshold):
        a = w.abs()
        delta = a.mean().mul_(threshold)
        keep = a.gt(delta)
        # alpha = mean |W| over the kept weights; max(count, 1): with none kept the output is 0
        alpha = a.mul_(keep).sum().div_(keep.sum().clamp_min(1))
        # torch.sign, not sign_pm1: W = 0 is never kept (0 > delta >= 0 is false), so sign(0)
        # never reaches the output
        return torch.sign(w).mul_(keep).mul_(alpha)


_ternarize = fast(_Ternarize)


@register
class Ternary(nn.Module):
    """TWN's threshold ternarization (Li, Zhang, Liu 2016, with the paper's approximate solution):

    forward:  W_t = alpha * (+1 if W > delta, 0 if |W| <= delta, -1 if W < -delta)
              delta = threshold * E(|W|)          (the paper's delta* ~= 0.7 E(|W|): threshold = 0.7)
              alpha = mean of |W_i| over I_delta = {i : |W_i| > delta}
              both over the whole layer (one delta and one alpha per layer, as TWN).
    backward: dC/dW = dC/dW_t (straight through; delta and alpha are treated as constants, the
              latent weights are updated in full precision as in BinaryConnect).
    Three levels {-alpha, 0, +alpha}, stored in 2 bits (bits = 2) plus alpha.
    """

    name = "ternary"
    roles = frozenset({"weight"})
    bits = 2

    def __init__(self, threshold: float = 0.7):
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1e6:
            raise ValueError(f"threshold must be a non-negative number, got {threshold!r}")
        self.threshold = float(threshold)

    def forward(self, w):
        return _ternarize(w, self.threshold)

    def stored_scales(self, weight: torch.Tensor) -> int:
        return 1  # alpha

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
