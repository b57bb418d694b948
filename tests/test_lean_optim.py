"""Adam with 8-bit moments inside the backward pass (suite/train/lean_optim.py): the chunked binary
product equals the whole one, the update runs during backward and leaves no gradient behind, the
moments round-trip within their grids, and a small problem trains."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.models.mlp import mlp
from suite.nn import QuantConfig
from suite.spec import TrainSpec
from suite.train import lean_optim
from suite.train.lean_optim import LeanLatentAdam
from suite.train.optim import make_optimizer


def _bnn(hidden=(256, 256), packed=True):
    opt = "(packed=true)" if packed else ""
    torch.manual_seed(0)
    quant = QuantConfig(weight_quantizer="binaryconnect" + opt, input_quantizer="bnn_sign" + opt, clip_weights=1.0,
                        latent_bits=8)
    return mlp(num_classes=10, in_shape=(64,), quant=quant, hidden=list(hidden), activation="identity")


def _lean(model, lr=1e-3):
    opt = make_optimizer(TrainSpec(epochs=1, batch_size=32, lr_start=lr), model)
    return opt, LeanLatentAdam(model, opt)


def test_chunked_binary_product_and_its_gradients_equal_the_whole_layers():
    model = _bnn()
    layer = model[4]  # a hidden 256 -> 256 layer
    captured = {}

    def capture(storage, grad, offset):
        captured[offset] = grad.clone()

    x = torch.randn(32, 256).sign().requires_grad_()
    y = lean_optim._BinaryLinear.apply(x, layer.latent.anchor, layer.latent, capture)
    w = layer.latent.signs()
    assert torch.equal(y, x.detach() @ w.t())
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad, g @ w, atol=1e-5)
    flat = torch.cat([captured[k] for k in sorted(captured)])
    assert torch.allclose(flat.view(256, 256), g.t() @ x.detach(), atol=1e-5)
    assert len(captured) == 256 // lean_optim.ROWS  # one update per chunk of rows


def test_update_runs_inside_backward_and_leaves_no_weight_gradient():
    model = _bnn()
    opt, lean = _lean(model)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    before = [m.latent.codes.clone() for m in model if hasattr(m, "latent")]
    F.cross_entropy(model(x), y).backward()
    after = [m.latent.codes for m in model if hasattr(m, "latent")]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # updated during backward
    assert all(m.latent.leaf is None for m in model if hasattr(m, "latent"))  # no leaf, no weight-sized grad
    assert all(s["step"] == 1 for s in lean.state.values())
    n = sum(m.latent.count for m in model if hasattr(m, "latent"))
    assert lean.state_bytes() <= 2 * n + 8 * (n // lean_optim.BLOCK + 4 * len(lean.state))  # 2 bytes a weight


def test_moments_round_trip_within_their_grids():
    torch.manual_seed(0)
    m = torch.randn(3 * lean_optim.BLOCK + 17) * torch.logspace(-3, 0, 3 * lean_optim.BLOCK + 17)
    codes, scale = torch.empty(len(m), dtype=torch.int8), torch.empty(4)
    lean_optim._quant_m(m.clone(), codes, scale)
    back = lean_optim._dequant_m(codes, scale)
    assert (back - m).abs().max() <= scale.max() / 127 * 1.01  # one step of the block's grid
    v = m.square()
    vcodes = torch.empty(len(v), dtype=torch.uint8)
    lean_optim._quant_v(v.clone(), vcodes, scale)
    vback = lean_optim._dequant_v(vcodes, scale)
    ratio = (vback.sqrt() / v.sqrt())
    assert ratio.min() > 2 ** -(1 / 8) * 0.999 and ratio.max() < 2 ** (1 / 8) * 1.001  # one 9% step
    mean = torch.stack([lean_optim._dequant_m(*_q(m)) for _ in range(200)]).mean(0)
    assert (mean - m).abs().max() < scale.max() / 127 * 0.3  # stochastic rounding: unbiased on average


def _q(m):
    codes, scale = torch.empty(len(m), dtype=torch.int8), torch.empty(4)
    lean_optim._quant_m(m.clone(), codes, scale)
    return codes, scale


def test_a_small_problem_trains():
    torch.manual_seed(0)
    x = torch.randn(512, 64)
    y = x[:, :10].argmax(1)
    model = _bnn(hidden=(128,))
    opt, _ = _lean(model, lr=3e-3)
    losses = []
    for _ in range(15):
        total = 0.0
        for idx in torch.arange(512).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total / 8)
    assert losses[-1] < 0.7 * losses[0]


def test_needs_8_bit_codes():
    torch.manual_seed(0)
    model = mlp(num_classes=10, in_shape=(8,), hidden=[16], quant=QuantConfig(weight_quantizer="binaryconnect",
                                                                               clip_weights=1.0, latent_bits=6))
    opt = make_optimizer(TrainSpec(epochs=1, batch_size=4, lr_start=1e-3), model)
    with pytest.raises(ValueError, match="8-bit latent codes"):
        LeanLatentAdam(model, opt)
    assert isinstance(model[1], nn.Linear)
