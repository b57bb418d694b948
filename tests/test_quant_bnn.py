"""BNN's sign with the saturating straight-through estimator, pinned by hand-computed cases."""

import pytest
import torch
import torch.func

from suite.quant import BNNSign, build_quantizer, sign_pm1
from suite.quant.binary import inside, pass_where_pm1


def test_forward_is_sign_with_zero_to_plus_one():
    x = torch.tensor([-1.5, -1.0, -0.3, -0.0, 0.0, 0.7, 1.0, 2.0])
    assert BNNSign()(x).tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_backward_cancels_the_gradient_where_abs_x_exceeds_one():
    x = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 2.0], requires_grad=True)
    BNNSign()(x).backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    # g_r = g_q 1_{|r| <= 1}: the bounds +-1 pass, -1.5 and 2.0 do not
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_tangent_gets_the_same_mask():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0])
    out, t = torch.func.jvp(BNNSign(), (x,), (torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]),))
    assert out.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert t.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_fused_mask_is_the_closed_interval(dtype):
    """pass_where_pm1 uses hardtanh's open bounds at the floats next to +-1: exactly |x| <= 1."""
    eps = torch.finfo(dtype).eps
    x = torch.tensor([-1 - eps, -1.0, -1 + eps, 0.0, 1 - eps / 2, 1.0, 1 + eps, 3.0], dtype=dtype)
    expected = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert pass_where_pm1(torch.ones_like(x), x).tolist() == expected
    assert inside(x, -1.0, 1.0).tolist() == expected


def test_sign_pm1_scale_and_out():
    x = torch.tensor([-2.0, -0.0, 0.0, 3.0])
    assert sign_pm1(x, torch.tensor(0.5)).tolist() == [-0.5, 0.5, 0.5, 0.5]
    rows = torch.stack([x, -x])  # one scale per row, broadcast like XNOR-Net's alpha
    assert sign_pm1(rows, torch.tensor([[1.0], [3.0]])).tolist() == [[-1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, -3.0]]
    buf = torch.empty(4)
    assert sign_pm1(x, out=buf) is buf and buf.tolist() == [-1.0, 1.0, 1.0, 1.0]


def test_sign_pm1_edge_values():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([-tiny / 8, tiny / 8, float("-inf"), float("inf"), float("nan"), -float("nan")])
    # subnormals keep their sign; NaN goes by its sign bit (stated in sign_pm1, not relied upon)
    assert sign_pm1(x).tolist() == [-1.0, 1.0, -1.0, 1.0, 1.0, -1.0]
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert sign_pm1(torch.tensor([-0.0, 0.0, -2.0], dtype=dtype)).tolist() == [1.0, 1.0, -1.0]


def test_sign_pm1_has_no_gradient_and_keeps_its_input():
    w = torch.tensor([0.5, -0.5, -0.0], requires_grad=True)
    s = sign_pm1(w)
    assert not s.requires_grad and s.tolist() == [1.0, -1.0, 1.0]
    assert w.tolist() == [0.5, -0.5, 0.0] and str(w[2].item()) == "-0.0"


def test_bnn_sign_is_one_bit_in_both_roles():
    q = build_quantizer("bnn_sign", "input")
    assert isinstance(q, BNNSign) and q.bits == 1
    assert isinstance(build_quantizer("bnn_sign", "weight"), BNNSign)
