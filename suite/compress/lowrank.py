"""Low-rank approximation of a trained layer by truncated SVD (the deck's "Low rank Approximation").

For a weight matrix A (m x n) with SVD A = U S V^T (singular values in descending order), the
truncated SVD keeps the first k of them:

    A_k = U_k S_k V_k^T,

the best rank-k approximation in the Frobenius (and spectral) norm (Eckart-Young). A Linear layer
y = A x + b of rank k is then two layers, x -> (S_k^1/2 V_k^T) x -> (U_k S_k^1/2) (.) + b, with
k (m + n) weights instead of m n: fewer when k < m n / (m + n).

A convolution's weight W (K, C, H, W) is the matrix (K, C H W) (the Frobenius norm does not depend
on the reshape), and A_k becomes the deck's "Factorization into H x W followed by 1 x 1": an
H x W convolution from C to k channels (same stride, padding, dilation) and a 1 x 1 convolution
from k to K channels carrying the bias.

The singular values are split evenly (S_k^1/2 on each factor), a choice: the product is the same
either way, but fine-tuning moves balanced factors at comparable speeds.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def truncated_svd(a: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with left @ right = A_k = U_k S_k V_k^T; left = U_k S_k^1/2 (m x k), right =
    S_k^1/2 V_k^T (k x n). Computed in float64, returned in A's dtype."""
    if a.dim() != 2:
        raise ValueError(f"expected a matrix, got shape {tuple(a.shape)}")
    if not 1 <= rank <= min(a.shape):
        raise ValueError(f"rank must be in 1..{min(a.shape)}, got {rank}")
    u, s, vh = torch.linalg.svd(a.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(a.dtype), (root[:, None] * vh[:rank]).to(a.dtype)


def max_useful_rank(m: int, n: int) -> int:
    """The largest k whose factors k (m + n) hold fewer weights than the m x n matrix."""
    return max(0, (m * n - 1) // (m + n))


class LowRankLinear(nn.Module):
    """y = U_k S_k^1/2 (S_k^1/2 V_k^T x) + b: two Linear layers, the first without bias."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.rank = rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int) -> LowRankLinear:
        left, right = truncated_svd(layer.weight, rank)
        out = cls(layer.in_features, layer.out_features, rank, bias=layer.bias is not None)
        out = out.to(device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            out.first.weight.copy_(right)
            out.second.weight.copy_(left)
            if layer.bias is not None:
                out.second.bias.copy_(layer.bias)
        return out

    def forward(self, x):
        return self.second(self.first(x))

    def weight_matrix(self) -> torch.Tensor:
        return self.second.weight @ self.first.weight


class LowRankConv2d(nn.Module):
    """An H x W convolution to `rank` channels, then a 1 x 1 convolution to the outputs (with bias)."""

    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        if conv.groups != 1:
            raise ValueError("grouped convolutions are not factorized here (groups must be 1)")
        self.rank = rank
        k, c, h, w = conv.weight.shape
        self.first = nn.Conv2d(c, rank, (h, w), stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                               bias=False, padding_mode=conv.padding_mode)
        self.second = nn.Conv2d(rank, k, 1, bias=conv.bias is not None)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int) -> LowRankConv2d:
        k, c, h, w = conv.weight.shape
        left, right = truncated_svd(conv.weight.reshape(k, c * h * w), rank)
        out = cls(conv, rank).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            out.first.weight.copy_(right.reshape(rank, c, h, w))
            out.second.weight.copy_(left.reshape(k, rank, 1, 1))
            if conv.bias is not None:
                out.second.bias.copy_(conv.bias)
        return out

    def forward(self, x):
        return self.second(self.first(x))

    def weight_matrix(self) -> torch.Tensor:
        """The (K, C H W) matrix the two convolutions apply: U_k S_k V_k^T."""
        return self.second.weight.flatten(1) @ self.first.weight.flatten(1)


def factorize(layer: nn.Module, rank: int) -> nn.Module:
    """The rank-k two-layer replacement of a trained Linear or Conv2d."""
    if isinstance(layer, nn.Linear):
        return LowRankLinear.from_linear(layer, rank)
    if isinstance(layer, nn.Conv2d):
        return LowRankConv2d.from_conv(layer, rank)
    raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")


def relative_error(a: torch.Tensor, rank: int) -> float:
    """||A - A_k||_F / ||A||_F from the singular values: sqrt(sum_{i>k} s_i^2 / sum_i s_i^2)."""
    s = torch.linalg.svdvals(a.detach().double())
    return float((s[rank:].square().sum() / s.square().sum()).sqrt())


def linear_forward(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """x through a dense or factorized linear layer (for timing without module overhead)."""
    if isinstance(layer, LowRankLinear):
        h = F.linear(x, layer.first.weight)
        return F.linear(h, layer.second.weight, layer.second.bias)
    return F.linear(x, layer.weight, layer.bias)
