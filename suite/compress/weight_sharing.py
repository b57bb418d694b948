"""Trained quantization by weight sharing (stage 2 of Deep Compression: Han, Mao, Dally, ICLR 2016,
Section 3).

The weights of one layer are partitioned into k clusters by one-dimensional k-means, minimizing
the within-cluster sum of squares (the paper's equation 2)

    argmin_C sum_{i=1..k} sum_{w in c_i} |w - c_i|^2,

with the centroids initialised linearly between the smallest and the largest weight (the
paper's "linear initialization", its best). Every weight then stores only its cluster index and
the layer a table of shared values, which are trained: the gradient of a centroid is the sum of
the gradients of the weights that share it (equation 3),

    dL/dC_k = sum_{i,j} dL/dW_ij 1(I_ij = k),

which is what autograd computes for W = C[I] (the backward of an index is a scatter-add).

A pruned layer's zeros are not clustered: following the authors' decoder (songhan/Deep-Compression-
AlexNet, decode.py), code 0 of a b-bit index is the value 0 (pruned weights, and the filler entries
of the relative index), so a b-bit layer shares 2^b - 1 trained values.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def kmeans_1d(values: torch.Tensor, k: int, iterations: int = 100, init: str = "linear") -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """(centroids (k,) ascending, assignment per value) of Lloyd's k-means in one dimension.

    init "linear": k points evenly spaced over [min, max]; "density": the quantiles (the paper's
    density-based initialization). In 1-D the nearest centroid is found exactly by comparing with
    the midpoints between sorted centroids. Empty clusters keep their previous centroid."""
    x = values.detach().double().flatten()
    if x.numel() == 0 or k < 1:
        raise ValueError(f"need values and k >= 1, got {x.numel()} values and k = {k}")
    if init == "linear":
        c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    elif init == "density":
        c = torch.quantile(x, torch.linspace(0, 1, k, dtype=torch.float64))
    else:
        raise ValueError(f"init must be 'linear' or 'density', got {init!r}")
    assign = torch.zeros_like(x, dtype=torch.long)
    for _ in range(iterations):
        c, _ = torch.sort(c)
        assign = torch.bucketize(x, (c[1:] + c[:-1]) / 2)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).double()
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        if torch.equal(new, c):
            break
        c = new
    c, _ = torch.sort(c)
    assign = torch.bucketize(x, (c[1:] + c[:-1]) / 2)
    return c.to(values.dtype), assign


class SharedWeights(nn.Module):
    """A layer's weight as codebook[codes]: `centroids` (2^bits - 1 trained values) after a fixed 0.

    Attached to a Linear or Conv2d by `share_weights`, it replaces the layer's `weight` parameter:
    a forward pre-hook sets layer.weight = cat([0], centroids)[codes] before every forward (the
    pattern of torch.nn.utils.prune), so the layer's own forward is unchanged.
    """

    def __init__(self, centroids: torch.Tensor, codes: torch.Tensor, shape: torch.Size):
        super().__init__()
        self.centroids = nn.Parameter(centroids.detach().clone())
        self.register_buffer("codes", codes.to(torch.int16 if centroids.numel() >= 255 else torch.uint8))
        self.shape = tuple(shape)

    def codebook(self) -> torch.Tensor:
        return torch.cat([self.centroids.new_zeros(1), self.centroids])

    def weight(self) -> torch.Tensor:
        return self.codebook()[self.codes.long()].view(self.shape)


def share_weights(layer: nn.Module, bits: int, iterations: int = 100, init: str = "linear") -> SharedWeights:
    """Cluster the layer's nonzero weights into 2^bits - 1 shared values (code 0 = the zeros), and
    make the layer compute with them; returns the attached SharedWeights (its centroids train)."""
    if not 1 <= bits <= 15:
        raise ValueError(f"bits must be in 1..15, got {bits}")
    w = layer.weight.detach()
    nonzero = w != 0
    k = min(2**bits - 1, int(nonzero.sum()))
    centroids, assign = kmeans_1d(w[nonzero], k, iterations, init)
    codes = torch.zeros(w.shape, dtype=torch.long, device=w.device)
    codes[nonzero] = assign + 1
    shared = SharedWeights(centroids, codes, w.shape)
    del layer.weight  # the parameter; the pre-hook sets a plain tensor attribute of the same name
    layer.shared = shared  # a submodule: its centroids are the layer's parameters now
    layer.weight = shared.weight()
    layer.register_forward_pre_hook(_set_weight)
    return shared


def _set_weight(layer: nn.Module, _inputs) -> None:
    layer.weight = layer.shared.weight()
