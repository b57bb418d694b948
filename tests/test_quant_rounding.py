"""Stochastic rounding to k bits over the tensor's range: unbiased, 2^k levels."""

import pytest
import torch
import torch.func

from suite.quant import StochasticRound, build_quantizer

ROW = [0.0, 0.25, 1.5, 2.9, 1.0 / 3, 3.0]  # min 0, max 3: with 2 bits the levels are 0, 1, 2, 3


def test_values_go_to_a_neighbouring_level():
    x = torch.tensor(ROW).repeat(1000)
    out = StochasticRound(bits=2).train()(x).view(1000, -1)
    assert set(out.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert out[:, 0].eq(0).all() and out[:, -1].eq(3).all()  # the range ends are levels
    assert set(out[:, 1].unique().tolist()) <= {0.0, 1.0} and set(out[:, 3].unique().tolist()) <= {2.0, 3.0}


def test_unbiased_mean_of_1e5_draws_within_4_standard_errors():
    n = 100_000
    x = torch.tensor(ROW).repeat(n)
    out = StochasticRound(bits=2).train()(x).view(n, -1).double()
    row = torch.tensor(ROW, dtype=torch.float64)
    frac = row - row.floor()  # position between levels 1 apart
    se = torch.sqrt(frac * (1 - frac) / n)
    err = (out.mean(0) - row).abs()
    assert bool((err <= 4 * se + 2.0**-15).all()), (err, se)


def test_eval_rounds_to_nearest():
    out = StochasticRound(bits=2).eval()(torch.tensor(ROW))
    assert out.tolist() == [0.0, 0.0, 2.0, 3.0, 0.0, 3.0]  # 1.5 is a tie: to even


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_exactly_2_to_the_k_levels_spanning_the_range(bits):
    x = torch.linspace(-1.3, 2.1, 3001)
    for mode in (True, False):
        levels = StochasticRound(bits=bits).train(mode)(x).unique()
        n = 2**bits - 1
        assert len(levels) == 2**bits
        assert torch.allclose(levels, torch.tensor([-1.3 + 3.4 * j / n for j in range(n + 1)]), atol=1e-5)


def test_draws_follow_the_seed():
    x = torch.rand(1000)
    q = StochasticRound(bits=3).train()
    torch.manual_seed(2)
    a, b = q(x), q(x)
    torch.manual_seed(2)
    assert not torch.equal(a, b) and torch.equal(q(x), a)


def test_straight_through_gradient_and_tangent():
    x = torch.tensor([0.1, 0.7, -2.0], requires_grad=True)
    StochasticRound(bits=2)(x).backward(torch.tensor([1.0, 2.0, 3.0]))
    assert x.grad.tolist() == [1.0, 2.0, 3.0]
    _, t = torch.func.jvp(StochasticRound(bits=2), (x.detach(),), (torch.tensor([4.0, 5.0, 6.0]),))
    assert t.tolist() == [4.0, 5.0, 6.0]


def test_constant_tensor_is_kept():
    assert StochasticRound(bits=2)(torch.full((3,), 2.5)).tolist() == [2.5] * 3


def test_reference_and_bits():
    q = build_quantizer("stochastic_round(bits=4)", "input")
    assert q.bits == 4 and q.stored_scales(torch.zeros(2, 2)) == 2
