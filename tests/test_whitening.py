"""GCN + ZCA whitening (pylearn2's, BinaryConnect's CIFAR-10): hand-computed GCN, the ZCA fit against
an independent numpy implementation of pylearn2's formula (both code paths), its cache, and
`data.preprocessing = "gcn_zca"` through load_splits."""

import numpy as np
import pytest
import torch

from suite.data import load_splits
from suite.data import whitening as wh
from suite.spec import DataSpec


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """Every cache (ZCA, synthetic data) in a fresh folder; no data found on disk."""
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lowbit-suite"


def pylearn2_zca(x: np.ndarray, filter_bias: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """pylearn2.datasets.preprocessing.ZCA.fit, written out in numpy: mean, then P from
    eigh(Xc^T Xc / N + filter_bias I)."""
    mean = x.mean(0)
    xc = x - mean
    eigs, eigv = np.linalg.eigh(xc.T @ xc / len(x) + filter_bias * np.eye(x.shape[1]))
    return mean, (eigv * np.sqrt(1.0 / eigs)) @ eigv.T


def test_gcn_by_hand():
    out = wh.gcn(torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0]]))
    # [1, 3]: centred [-1, 1], norm sqrt(2), divided by sqrt(2) / 55
    assert torch.allclose(out[0], torch.tensor([-55 / 2**0.5, 55 / 2**0.5]))
    assert torch.equal(out[1], torch.zeros(2))  # a constant image: divisor below 1e-8 -> 1, stays 0
    assert torch.allclose(out[2], torch.tensor([-55 / 2**0.5, 55 / 2**0.5]))  # contrast, not level


def test_gcn_gives_zero_mean_and_norm_55_per_image():
    images = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    out = wh.gcn(images)
    assert out.shape == (7, 192) and out.dtype == torch.float32
    assert out.mean(1).abs().max() < 1e-4
    assert torch.allclose(out.norm(dim=1), torch.full((7,), 55.0), atol=1e-3)


@pytest.mark.parametrize("n, d", [(200, 24), (15, 40)])  # the covariance route and the Gram route
def test_zca_matches_pylearn2s_formula(n, d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)) * np.linspace(0.05, 4, d) + rng.normal(size=d)
    mean, p = pylearn2_zca(x)
    zca = wh.fit_zca(torch.from_numpy(x).float())
    assert np.allclose(zca.mean.numpy(), mean, atol=1e-5)
    assert np.allclose(zca.matrix.numpy(), p, atol=2e-4 * np.abs(p).max())
    whitened = zca(torch.from_numpy(x).float()).double().numpy()
    assert np.allclose(whitened, (x - mean) @ p, atol=1e-3)


def test_zca_whitens_the_training_data():
    """Whitened covariance = C (C + 0.1 I)^-1: close to I along high-variance directions."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6)) * 10).float()
    w = wh.fit_zca(x)(x.clone()).double()
    cov = (w - w.mean(0)).T @ (w - w.mean(0)) / len(w)
    c = torch.cov(x.double().T, correction=0)
    assert torch.allclose(cov, c @ torch.linalg.inv(c + 0.1 * torch.eye(6, dtype=torch.float64)), atol=1e-4)
    assert (cov.diagonal() - 1).abs().max() < 0.01


def test_fit_is_cached_and_keyed_by_the_training_images(cache, monkeypatch):
    images = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8)
    first, about = wh.fitted_zca(images)
    assert about["zca_cached"] is False and len(list((cache / "zca").glob("*.pt"))) == 1

    def refit(_):
        raise AssertionError("the cached fit should have been used")

    monkeypatch.setattr(wh, "fit_zca", refit)
    again, about2 = wh.fitted_zca(images)
    assert about2 == {"zca_key": about["zca_key"], "zca_cached": True}
    assert torch.equal(again.matrix, first.matrix) and torch.equal(again.mean, first.mean)
    with pytest.raises(AssertionError, match="cached fit"):  # other images (or another split size): a new fit
        wh.fitted_zca(images[:29])


def test_gcn_zca_through_load_splits_fits_on_the_training_split(cache):
    spec = DataSpec("cifar10", 300, 100, test_size=200, source="synthetic", preprocessing="gcn_zca")
    splits = load_splits(spec, download=False)
    assert splits.train_x.shape == (300, 3, 32, 32) and splits.test_x.shape == (200, 3, 32, 32)
    assert splits.info["whitening"]["zca_key"]
    # fitted on the training split: its whitened features have zero mean, the others' need not
    assert splits.train_x.reshape(300, -1).mean(0).abs().max() < 1e-3
    assert splits.val_x.reshape(100, -1).mean(0).abs().max() > 1e-3
    from suite.data.cifar10 import INFO
    from suite.data.source import locate

    arrays, _ = locate(INFO, "synthetic")
    zca, _ = wh.fitted_zca(arrays["train_images"][:300])  # the same key: from the cache
    assert torch.allclose(splits.test_x, wh.gcn_zca(arrays["test_images"][:200], zca))
