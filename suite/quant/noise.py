"""Uniform noise for the stochastic quantizers, drawn from torch's global generator (seeded by the
harness, so runs are reproducible)."""

import torch


def random_int16(like: torch.Tensor) -> torch.Tensor:
    """Uniform int16 values in [-2^15, 2^15 - 1], shaped like `like` (a fresh tensor).

    On the CPU, torch's generator costs ~4 ns per float drawn, more than a float training step
    spends per weight; drawing 64 random bits per int64 and splitting them into four int16
    values costs a quarter of that.
    """
    n = like.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device)
    bits.random_(-(2**63), 2**63 - 1)
    return bits.view(torch.int16)[:n].view(like.shape)


def uniform_centered(like: torch.Tensor) -> torch.Tensor:
    """A fresh float tensor shaped like `like`, uniform in (-1/2, 1/2), with the dtype of `like`.

    On the CPU the values are the 2^16 midpoints (j + 1/2) / 2^16 - 1/2 (see `random_int16`): the
    mean is exactly 0 and a probability P(sigma <= t) is off by at most 2^-17, far below what 10^5
    samples can resolve. Elsewhere (CUDA's Philox generator is fast) it is a float draw.
    """
    if like.device.type == "cpu":
        return random_int16(like).to(like.dtype).mul_(2.0**-16).add_(2.0**-17)
    return torch.rand_like(like).sub_(0.5)
