"""TWN's threshold ternarization, pinned by a hand-computed case."""

import pytest
import torch
import torch.func

from suite.errors import UserError
from suite.quant import Ternary, build_quantizer

W = torch.tensor([0.05, -0.9, 0.3, -0.2, 1.5, 0.0, 0.4])
# E|W| = 3.35 / 7 = 0.478571; delta = 0.7 E|W| = 0.335; kept |W| > delta: -0.9, 1.5, 0.4
# alpha = (0.9 + 1.5 + 0.4) / 3 = 0.933333
ALPHA = 2.8 / 3
EXPECTED = [0.0, -ALPHA, 0.0, 0.0, ALPHA, 0.0, ALPHA]


def test_forward_by_hand():
    assert torch.allclose(Ternary()(W), torch.tensor(EXPECTED))


def test_threshold_parameter():
    # threshold 0.5: delta = 0.239; 0.3 is kept too: alpha = (0.9 + 0.3 + 1.5 + 0.4) / 4 = 0.775
    out = build_quantizer("ternary(threshold=0.5)")(W)
    assert torch.allclose(out, torch.tensor([0.0, -0.775, 0.775, 0.0, 0.775, 0.0, 0.775]))
    with pytest.raises(UserError, match="threshold"):
        build_quantizer("ternary(threshold=-1)")


def test_three_levels():
    out = Ternary()(torch.linspace(-2, 2, 1001))
    levels = out.unique()
    assert len(levels) == 3 and levels[1].item() == 0.0 and levels[0].item() == -levels[2].item()


def test_straight_through_gradient_and_tangent():
    w = W.clone().requires_grad_()
    Ternary()(w).backward(torch.arange(7.0))
    assert w.grad.tolist() == list(range(7))
    _, t = torch.func.jvp(Ternary(), (W,), (torch.arange(7.0),))
    assert t.tolist() == list(range(7))


def test_all_zero_weights_stay_zero():
    assert Ternary()(torch.zeros(4)).tolist() == [0.0] * 4


def test_bits_and_stored_scale():
    q = build_quantizer("ternary", "weight")
    assert q.bits == 2 and q.stored_scales(W) == 1
