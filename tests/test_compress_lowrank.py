"""Truncated SVD layers (suite/compress/lowrank.py), on matrices whose SVD is known by hand."""

import math

import pytest
import torch

from suite.compress import lowrank


def _rotated_diag():
    """A = Q diag(3, 2, 1) Q^T for a fixed rotation Q: singular values 3, 2, 1 by construction."""
    c, s = math.cos(0.3), math.sin(0.3)
    q = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return q @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) @ q.T, q


def test_rank_one_keeps_the_largest_singular_triplet():
    a, q = _rotated_diag()
    left, right = lowrank.truncated_svd(a, 1)
    expected = 3.0 * torch.outer(q[:, 0], q[:, 0])  # s_1 u_1 v_1^T
    torch.testing.assert_close(left @ right, expected)
    # ||A - A_1||_F / ||A||_F = sqrt((2^2 + 1^2) / (3^2 + 2^2 + 1^2))
    assert lowrank.relative_error(a, 1) == pytest.approx(math.sqrt(5 / 14))
    assert lowrank.relative_error(a, 3) == pytest.approx(0.0, abs=1e-12)


def test_linear_of_full_rank_is_the_layer_and_rank_k_has_k_m_plus_n_weights():
    layer = torch.nn.Linear(6, 4)
    x = torch.randn(5, 6)
    full = lowrank.LowRankLinear.from_linear(layer, 4)
    torch.testing.assert_close(full(x), layer(x), atol=1e-5, rtol=1e-5)
    low = lowrank.LowRankLinear.from_linear(layer, 2)
    assert sum(p.numel() for p in low.parameters()) == 2 * (6 + 4) + 4  # two factors + the bias
    assert lowrank.max_useful_rank(300, 784) == 216  # 216 * 1084 < 235200 <= 217 * 1084


def test_conv_of_a_rank_one_weight_is_exact_at_rank_one():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=2)
    u, v = torch.randn(5), torch.randn(3 * 3 * 3)
    with torch.no_grad():
        conv.weight.copy_(torch.outer(u, v).reshape(5, 3, 3, 3))
    x = torch.randn(2, 3, 8, 8)
    fact = lowrank.LowRankConv2d.from_conv(conv, 1)
    assert fact.first.weight.shape == (1, 3, 3, 3) and fact.second.weight.shape == (5, 1, 1, 1)
    torch.testing.assert_close(fact(x), conv(x), atol=1e-5, rtol=1e-4)


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="rank must be in 1..3"):
        lowrank.truncated_svd(torch.eye(3), 4)
