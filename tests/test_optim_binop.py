"""XNOR-Net-PyTorch's effective update ("adam_binop"): binarized layers' weight gradients times
n (1 - 1/c_in) before Adam adds weight_decay * W; a small case by hand."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from suite.nn import QuantConv2d
from suite.quant import XNORWeight
from suite.train.optim import GradientScale, binop_gradient_scale, make_optimizer


def _model():
    # a binarized 3 -> 1 convolution with a 2 x 2 kernel (n = 12, c_in = 3: factor 12 (1 - 1/3) = 8)
    # and a float layer beside it, whose gradient the option leaves alone
    binary = QuantConv2d(3, 1, 2, weight_quantizer=XNORWeight())
    model = nn.Sequential(binary, nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    return model


def _train(optimizer):
    return SimpleNamespace(optimizer=optimizer, lr_start=0.1, momentum=0.0, weight_decay=0.1)


def test_factor_is_n_times_one_minus_one_over_c_in():
    assert binop_gradient_scale(torch.zeros(1, 3, 2, 2)) == 8.0
    assert binop_gradient_scale(torch.zeros(160, 192, 1, 1)) == pytest.approx(191.0)  # NIN's 1x1 layers
    assert binop_gradient_scale(torch.zeros(192, 96, 5, 5)) == pytest.approx(2375.0)  # NIN's 5x5 layer
    assert binop_gradient_scale(torch.zeros(10, 4)) == 3.0  # linear: n = in_features = c_in


def test_hook_scales_binarized_weight_gradients_only():
    model = _model()
    for p in model.parameters():
        p.grad = torch.full_like(p, -0.01)
    GradientScale(model, binop_gradient_scale)(None, (), {})
    assert torch.allclose(model[0].weight.grad, torch.full((1, 3, 2, 2), -0.08))
    assert model[0].bias.grad.item() == pytest.approx(-0.01) and model[1].weight.grad.item() == pytest.approx(-0.01)


@pytest.mark.parametrize("name, expected", [
    # Adam's first step is lr g' / (|g'| + eps) with g' = gradient + wd W (bias-corrected moments):
    # adam_binop: g' = 8 (-0.01) + 0.1 * 0.5 = -0.03 -> W = 0.5 + 0.1 = 0.6
    # adam:       g' =    -0.01  + 0.1 * 0.5 = +0.04 -> W = 0.5 - 0.1 = 0.4 (the opposite direction)
    ("adam_binop", 0.6),
    ("adam", 0.4),
])
def test_adam_step_by_hand(name, expected):
    model = _model()
    opt = make_optimizer(_train(name), model)
    for p in model.parameters():
        p.grad = torch.full_like(p, -0.01)
    opt.step()
    assert torch.allclose(model[0].weight, torch.full((1, 3, 2, 2), expected), atol=1e-6)
    # unscaled parameters: g' = -0.01 + 0.05 = 0.04 > 0 in both cases -> 0.5 - 0.1
    assert model[0].bias.item() == pytest.approx(0.4) and model[1].weight.item() == pytest.approx(0.4)


def test_xnor_paper_step_schedule():
    """x0.01 every 4 epochs from 0.1 (XNOR-Net Sec. 4.1): epochs 1-4 at 0.1, 5-8 at 1e-3, 9-12 at 1e-5."""
    from suite.train.optim import make_scheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(SimpleNamespace(lr_schedule="x0.01_every_4_epochs", lr_start=0.1, lr_end=None,
                                           epochs=16), opt)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 4 + [1e-3] * 4 + [1e-5] * 4)
