"""Tensor-train (TT) fully-connected layer (Novikov, Podoprikhin, Osokin, Vetrov, "Tensorizing
Neural Networks", NIPS 2015) and the TT-SVD algorithm (Oseledets, "Tensor-Train Decomposition",
SIAM J. Sci. Comput. 2011; the deck's "Tensor Train Decomposition: just a few SVD's").

A weight matrix W of size M x N, M = m_1 ... m_d and N = n_1 ... n_d, is a d-dimensional array
whose k-th index is the pair (i_k, j_k) (row index i = (i_1, ..., i_d), column j = (j_1, ..., j_d),
both row-major). In the TT-format

    W((i_1, j_1), ..., (i_d, j_d)) = G_1[i_1, j_1] G_2[i_2, j_2] ... G_d[i_d, j_d],

each G_k[i_k, j_k] an r_{k-1} x r_k matrix (r_0 = r_d = 1): the cores G_k have shape
(r_{k-1}, m_k, n_k, r_k) and sum_k r_{k-1} m_k n_k r_k weights in all.

The forward pass y = W x + b never forms W: the input (batch, n_1, ..., n_d) is contracted with
one core at a time, mode k's input index and rank index in, its output index and next rank
out, in O(d r^2 max(m, n) max(M, N)) operations per sample (the paper's Section 4).

TT-SVD: reshape the (m_1 n_1, ..., m_d n_d) array into a matrix of r_{k-1} m_k n_k rows, keep its
best rank-r_k part by truncated SVD, the left factor becoming the core G_k, and go on with
S V^T; with every rank kept in full it is exact, and its error is at most sqrt(sum of the
squared discarded singular values of each step) (Oseledets, Theorem 2.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def tt_ranks(d: int, rank: int | list[int]) -> list[int]:
    """[1, r_1, ..., r_{d-1}, 1] from one rank for every bond or the d - 1 inner ranks."""
    inner = [rank] * (d - 1) if isinstance(rank, int) else list(rank)
    if len(inner) != d - 1 or any(r < 1 for r in inner):
        raise ValueError(f"expected {d - 1} positive inner ranks, got {rank!r}")
    return [1, *inner, 1]


def tt_svd(w: torch.Tensor, out_modes: list[int], in_modes: list[int], max_rank: int | list[int]) -> list[torch.Tensor]:
    """Cores (r_{k-1}, m_k, n_k, r_k) of the TT-matrix nearest to W (M x N) with ranks at most
    max_rank (each clipped to what the reshaped matrix allows), by sequential truncated SVDs."""
    d = len(out_modes)
    if len(in_modes) != d or math.prod(out_modes) != w.shape[0] or math.prod(in_modes) != w.shape[1]:
        raise ValueError(f"modes {out_modes} x {in_modes} do not factor a {tuple(w.shape)} matrix")
    limits = tt_ranks(d, max_rank)
    # (m_1..m_d, n_1..n_d) -> (m_1, n_1, m_2, n_2, ...): one index pair per core
    order = [p for k in range(d) for p in (k, d + k)]
    c = w.detach().double().reshape(*out_modes, *in_modes).permute(*order).contiguous()
    cores, r_prev = [], 1
    for k in range(d - 1):
        mat = c.reshape(r_prev * out_modes[k] * in_modes[k], -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        r = min(limits[k + 1], s.numel())
        cores.append(u[:, :r].reshape(r_prev, out_modes[k], in_modes[k], r))
        c = s[:r, None] * vh[:r]
        r_prev = r
    cores.append(c.reshape(r_prev, out_modes[-1], in_modes[-1], 1))
    return [g.to(w.dtype) for g in cores]


def tt_full(cores: list[torch.Tensor]) -> torch.Tensor:
    """The M x N matrix of a list of cores (for tests and conversions: O(M N) memory)."""
    out_modes = [g.shape[1] for g in cores]
    in_modes = [g.shape[2] for g in cores]
    t = cores[0].reshape(out_modes[0] * in_modes[0], -1)  # rows: (i_1, j_1)
    for g in cores[1:]:
        t = (t @ g.reshape(g.shape[0], -1)).reshape(-1, g.shape[-1])  # rows: (i_1, j_1, ..., i_k, j_k)
    d = len(cores)
    t = t.reshape(*[x for k in range(d) for x in (out_modes[k], in_modes[k])])
    t = t.permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2))
    return t.reshape(math.prod(out_modes), math.prod(in_modes))


def tt_matvec(cores: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """W x for a batch x (B, N) without forming W: (B, N) -> (B, M).

    After step k the running tensor is (B m_1 ... m_k, r_k, n_{k+1} ... n_d): step k contracts
    (r_{k-1}, n_k) with the core G_k seen as an (r_{k-1} n_k) x (m_k r_k) matrix.
    """
    batch = x.shape[0]
    t = x.reshape(batch, 1, -1)  # (P, r_0 = 1, n_1 ... n_d), P = B
    for g in cores:
        r_in, m, n, r_out = g.shape
        p, rest = t.shape[0], t.shape[2] // n
        t = t.reshape(p, r_in * n, rest).transpose(1, 2)  # (P, rest, r_in n)
        core = g.permute(0, 2, 1, 3).reshape(r_in * n, m * r_out)  # rows (r_in, n), columns (m, r_out)
        t = (t @ core).reshape(p, rest, m, r_out).permute(0, 2, 3, 1)  # (P, m, r_out, rest)
        t = t.reshape(p * m, r_out, rest)
    assert t.shape[1] == 1 and t.shape[2] == 1, "the last core's rank is 1 and every input mode is used"
    return t.reshape(batch, -1)


class TTLinear(nn.Module):
    """y = W x + b with W in the TT-format: cores G_k (r_{k-1}, m_k, n_k, r_k), never formed."""

    def __init__(self, in_modes: list[int], out_modes: list[int], ranks: int | list[int], bias: bool = True):
        super().__init__()
        if len(in_modes) != len(out_modes) or not in_modes:
            raise ValueError(f"in_modes and out_modes need the same positive length, got {in_modes}, {out_modes}")
        self.in_modes, self.out_modes = list(in_modes), list(out_modes)
        self.ranks = tt_ranks(len(in_modes), ranks)
        self.in_features, self.out_features = math.prod(in_modes), math.prod(out_modes)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(self.ranks[k], m, n, self.ranks[k + 1]))
            for k, (m, n) in enumerate(zip(self.out_modes, self.in_modes, strict=True)))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian cores whose product has entries of variance 1 / N: an entry of W sums
        prod_k r_k products of d core entries, so each core gets variance (N prod_k r_k)^(-1/d)."""
        d = len(self.cores)
        paths = math.prod(self.ranks[1:-1])
        std = (self.in_features * paths) ** (-1 / (2 * d))
        for g in self.cores:
            nn.init.normal_(g, 0.0, std)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None, in_modes: list[int], out_modes: list[int],
                   ranks: int | list[int]) -> TTLinear:
        cores = tt_svd(weight, out_modes, in_modes, ranks)
        out = cls(in_modes, out_modes, [g.shape[-1] for g in cores[:-1]], bias=bias is not None)
        with torch.no_grad():
            for p, g in zip(out.cores, cores, strict=True):
                p.copy_(g)
            if bias is not None:
                out.bias.copy_(bias)
        return out.to(weight.device)

    def weight_matrix(self) -> torch.Tensor:
        return tt_full(list(self.cores))

    def num_weights(self) -> int:
        return sum(g.numel() for g in self.cores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = tt_matvec(list(self.cores), x.reshape(-1, self.in_features))
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.ranks}"
