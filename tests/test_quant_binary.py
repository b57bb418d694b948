"""BinaryConnect's binarization, pinned by hand-computed cases."""

import math

import pytest
import torch

from suite.errors import UserError
from suite.quant import BinaryConnect, build_quantizer, parse_quantizer, sign_pm1


def test_sign_pm1_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0])
    assert sign_pm1(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert torch.sign(torch.tensor(0.0)).item() == 0.0  # why sign_pm1 exists


def test_sign_pm1_keeps_dtype():
    assert sign_pm1(torch.zeros(3, dtype=torch.float64)).dtype == torch.float64


def test_deterministic_forward_and_straight_through_backward():
    q = BinaryConnect()
    w = torch.tensor([-0.7, 0.0, 0.2, 1.5], requires_grad=True)
    wb = q(w)
    assert wb.tolist() == [-1.0, 1.0, 1.0, 1.0]
    wb.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # dC/dw := dC/dw_b, no mask (BinaryConnect bounds w by clipping, not by the gradient)
    assert w.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_deterministic_is_binary_in_eval_too():
    q = BinaryConnect().eval()
    assert q(torch.tensor([0.3, -0.3])).tolist() == [1.0, -1.0]


def test_stochastic_eval_uses_real_weights():
    q = BinaryConnect(stochastic=True).eval()
    w = torch.tensor([0.3, -0.3])
    assert q(w) is w


@pytest.mark.parametrize("w", [-1.0, -0.6, -0.1, 0.0, 0.25, 0.9, 1.0, 2.0, -3.0])
def test_stochastic_is_unbiased(w):
    """E[w_b] = 2 * hard_sigmoid(w) - 1 = clip(w, -1, 1): mean of 1e5 draws within 4 standard errors."""
    q = BinaryConnect(stochastic=True).train()
    n = 100_000
    wb = q(torch.full((n,), w))
    assert set(wb.unique().tolist()) <= {-1.0, 1.0}
    p = min(max((w + 1) / 2, 0.0), 1.0)
    expected = 2 * p - 1
    se = 2 * math.sqrt(p * (1 - p) / n)
    assert abs(wb.mean().item() - expected) <= 4 * se + 2 * 2.0**-16  # + the 16-bit resolution bound


def test_stochastic_draws_differ_between_calls_and_follow_the_seed():
    q = BinaryConnect(stochastic=True).train()
    w = torch.zeros(1000)
    torch.manual_seed(1)
    a = q(w)
    b = q(w)
    torch.manual_seed(1)
    assert not torch.equal(a, b)
    assert torch.equal(q(w), a)


def test_stochastic_gradient_straight_through():
    w = torch.tensor([0.5, -0.5], requires_grad=True)
    BinaryConnect(stochastic=True).train()(w).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_forward_mode_tangent_passes_through():
    import torch.func

    q = BinaryConnect()
    w = torch.tensor([0.3, -0.2])
    out, tangent = torch.func.jvp(q, (w,), (torch.tensor([2.0, 5.0]),))
    assert out.tolist() == [1.0, -1.0] and tangent.tolist() == [2.0, 5.0]


def test_bits_at_inference():
    assert BinaryConnect().bits == 1
    assert BinaryConnect(stochastic=True).bits == 32  # real-valued weights at test time


def test_registry_parses_references():
    assert parse_quantizer("binaryconnect(stochastic=true)") == ("binaryconnect", {"stochastic": True})
    assert build_quantizer("none") is None
    assert isinstance(build_quantizer("binaryconnect"), BinaryConnect)
    with pytest.raises(UserError, match="did you mean 'binaryconnect'"):
        parse_quantizer("binaryconect")
    with pytest.raises(UserError, match="no argument 'bits'"):
        parse_quantizer("binaryconnect(bits=2)")
    with pytest.raises(UserError, match="stochastic"):
        build_quantizer("binaryconnect(stochastic=3)")
