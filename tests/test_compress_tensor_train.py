"""TT-matrix layers and TT-SVD (suite/compress/tensor_train.py) against hand-made cases."""

import pytest
import torch

from suite.compress import tensor_train as tt


def test_rank_one_cores_are_a_kronecker_product():
    """With every rank 1, W(i, j) = G_1[i_1, j_1] G_2[i_2, j_2]: the Kronecker product of the cores."""
    p, q = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 5.0, 1.0]])
    cores = [p.view(1, 2, 2, 1), q.view(1, 1, 3, 1)]
    torch.testing.assert_close(tt.tt_full(cores), torch.kron(p, q))
    x = torch.randn(4, 6)
    torch.testing.assert_close(tt.tt_matvec(cores, x), x @ torch.kron(p, q).T)


def test_tt_svd_is_exact_at_full_rank_and_finds_a_kronecker_product_at_rank_one():
    w = torch.randn(24, 30, dtype=torch.float64)
    cores = tt.tt_svd(w, [2, 3, 4], [5, 3, 2], max_rank=1000)
    torch.testing.assert_close(tt.tt_full(cores), w)
    p, q = torch.randn(4, 5, dtype=torch.float64), torch.randn(6, 6, dtype=torch.float64)
    cores = tt.tt_svd(torch.kron(p, q), [4, 6], [5, 6], max_rank=1)
    assert [g.shape[-1] for g in cores] == [1, 1]
    torch.testing.assert_close(tt.tt_full(cores), torch.kron(p, q))


def test_layer_forward_never_forms_the_matrix_and_equals_it():
    layer = tt.TTLinear([2, 3, 5], [4, 4, 4], ranks=3)
    x = torch.randn(7, 30)
    torch.testing.assert_close(layer(x), x @ layer.weight_matrix().T + layer.bias, atol=1e-5, rtol=1e-5)
    dense = torch.nn.Linear(30, 64)
    back = tt.TTLinear.from_dense(dense.weight, dense.bias, [2, 3, 5], [4, 4, 4], ranks=1000)
    torch.testing.assert_close(back(x), dense(x), atol=1e-5, rtol=1e-5)


def test_the_papers_25088_by_4096_layer_has_2016_weights():
    """Table 3's layer with all TT-ranks 4 and modes 2x7x8x8x7x4 -> 4^6: 32 + 448 + 512 + 512 + 448 + 64."""
    layer = tt.TTLinear([2, 7, 8, 8, 7, 4], [4] * 6, ranks=4, bias=False)
    assert layer.in_features == 25088 and layer.out_features == 4096
    assert layer.num_weights() == 2016


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="do not factor"):
        tt.tt_svd(torch.randn(6, 6), [2, 3], [2, 2], 2)
