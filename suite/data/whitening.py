"""Global contrast normalisation and ZCA whitening, as pylearn2 made BinaryConnect's CIFAR-10.

BinaryConnect's cifar10.py (github MatthieuCourbariaux/BinaryConnect) loads pylearn2's
``pylearn2_gcn_whitened`` set, which ``pylearn2/scripts/datasets/make_cifar10_gcn_whitened.py``
builds as ``CIFAR10(gcn=55.)`` followed by ``preprocessing.ZCA()``:

- GCN (``pylearn2/expr/preprocessing.py: global_contrast_normalize(X, scale=55.)``, defaults
  subtract_mean=True, use_std=False, sqrt_bias=0, min_divisor=1e-8): each image's 3072 values
  minus their mean, divided by (their L2 norm / 55), so that every image has norm 55; a divisor
  below 1e-8 (a constant image) is replaced by 1.
- ZCA (``pylearn2/datasets/preprocessing.py: ZCA``, filter_bias=0.1): the per-feature mean m of
  the training images, C = Xc^T Xc / N of the centred ones, and P = V diag(1 / sqrt(l + 0.1)) V^T
  from the eigendecomposition C + 0.1 I = V diag(l + 0.1) V^T; every image x -> (x - m) P.

One difference: pylearn2 fitted the ZCA on all 50000 training images, the 5000 that
BinaryConnect then uses for validation included; here it is fitted on the training split only.
BNN's Theano code (BinaryNet cifar10.py, svhn.py) uses no GCN or ZCA: pixels scaled to [-1, 1]
("pm1"); BinaryConnect's SVHN used GCN + local contrast normalisation (not implemented here).

The fitted (m, P) is cached under the user cache dir, keyed by a hash of the training images'
bytes (so by data source and split size), and reused: computed once per training set.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data.source import cache_folder

GCN_SCALE = 55.0  # pylearn2 CIFAR10(gcn=55.)
MIN_DIVISOR = 1e-8  # pylearn2 global_contrast_normalize's default
FILTER_BIAS = 0.1  # pylearn2 ZCA's default
_CHUNK = 5000  # images per matrix product: bounds the float copies' memory
CACHE_VERSION = 1  # part of the cache key: bump when the fit changes


def gcn(images: torch.Tensor, scale: float = GCN_SCALE) -> torch.Tensor:
    """uint8 (or float) N x ... -> float32 N x D (D = values per image): per image, subtract the
    mean and divide by (L2 norm / scale); a divisor below 1e-8 becomes 1 (pylearn2's rule)."""
    flat = images.reshape(len(images), -1)
    out = torch.empty(flat.shape, dtype=torch.float32)
    for i in range(0, len(flat), _CHUNK):
        x = flat[i:i + _CHUNK].double()
        x -= x.mean(1, keepdim=True)
        divisor = x.norm(dim=1, keepdim=True) / scale
        divisor[divisor < MIN_DIVISOR] = 1.0
        out[i:i + _CHUNK] = x / divisor
    return out


@dataclass(frozen=True)
class ZCA:
    """A fitted whitening: x -> (x - mean) @ matrix (matrix symmetric, D x D)."""

    mean: torch.Tensor  # float32, D
    matrix: torch.Tensor  # float32, D x D

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float32 N x D -> whitened float32 N x D (in place of x, chunk by chunk)."""
        for i in range(0, len(x), _CHUNK):
            x[i:i + _CHUNK] = (x[i:i + _CHUNK] - self.mean) @ self.matrix
        return x


def fit_zca(x: torch.Tensor, filter_bias: float = FILTER_BIAS) -> ZCA:
    """pylearn2's ZCA fit on the rows of x (float, N x D), in float64.

    With N >= D it diagonalises C = Xc^T Xc / N (D x D). With fewer images than features C has
    rank < N, and the N x N Gram matrix Xc Xc^T / N = U diag(l) U^T gives the same result exactly
    and much faster: C's eigenvectors with nonzero l are Xc^T U diag(l N)^-1/2, and on their
    orthogonal complement (l = 0) P scales by 1 / sqrt(filter_bias)."""
    n, d = x.shape
    mean = x.double().mean(0)
    if n >= d:
        cov = torch.zeros(d, d, dtype=torch.float64)
        for i in range(0, n, _CHUNK):
            c = (x[i:i + _CHUNK].double() - mean).float()  # the product in float32, summed in float64
            cov += (c.T @ c).double()
        eigenvalues, vectors = torch.linalg.eigh(cov / n)
        scales = (eigenvalues.clamp_min(0) + filter_bias).rsqrt()
        matrix = (vectors * scales) @ vectors.T
    else:
        xc = x.double() - mean
        eigenvalues, u = torch.linalg.eigh(xc @ xc.T / n)
        keep = eigenvalues > eigenvalues.max() * n * torch.finfo(torch.float64).eps  # the nonzero spectrum
        lam, u = eigenvalues[keep], u[:, keep]
        vectors = xc.T @ u / (lam * n).sqrt()  # D x r, orthonormal columns
        bias_scale = filter_bias ** -0.5
        # P = V diag(s) V^T + b^-1/2 (I - V V^T) = b^-1/2 I + V diag(s - b^-1/2) V^T
        matrix = (vectors * ((lam + filter_bias).rsqrt() - bias_scale)) @ vectors.T
        matrix.diagonal().add_(bias_scale)
    return ZCA(mean.float(), matrix.float())


def cache_dir() -> Path:
    return cache_folder("zca")


def _key(train_images: torch.Tensor) -> str:
    """Hash of the training images' bytes and shape (the data source and the split size), and of
    the fit's constants."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((CACHE_VERSION, GCN_SCALE, FILTER_BIAS, tuple(train_images.shape), str(train_images.dtype))).encode())
    h.update(train_images.contiguous().numpy().tobytes())
    return h.hexdigest()


def fitted_zca(train_images: torch.Tensor) -> tuple[ZCA, dict]:
    """The ZCA of the GCN'd training images: from the cache, else fitted and cached. Returns it and
    a description for the record (key, whether it was cached)."""
    key = _key(train_images)
    path = cache_dir() / f"gcn{GCN_SCALE:g}-zca{FILTER_BIAS:g}-{key}.pt"
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            return ZCA(saved["mean"], saved["matrix"]), {"zca_key": key, "zca_cached": True}
        except (OSError, RuntimeError, KeyError, EOFError):
            pass  # a corrupt cache file is refitted and replaced
    zca = fit_zca(gcn(train_images))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".zca-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"mean": zca.mean, "matrix": zca.matrix}, tmp)
        os.replace(tmp, path)  # concurrent runs never read a half-written file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return zca, {"zca_key": key, "zca_cached": False}


def gcn_zca(images: torch.Tensor, zca: ZCA) -> torch.Tensor:
    """uint8 N x C x H x W -> float32 N x C x H x W: GCN (scale 55), then the fitted whitening."""
    return zca(gcn(images)).reshape(images.shape)
