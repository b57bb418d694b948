"""Quantized layers, latent-weight clipping, the Glorot LR scale and the weight-memory summary."""

import math

import pytest
import torch
import torch.nn.functional as F

from suite.models.mlp import mlp
from suite.nn import QuantConfig, QuantConv2d, QuantLinear, clip_latent_weights, latent_clip_targets, weight_memory
from suite.nn.layers import glorot_lr_scale
from suite.quant import BinaryConnect, sign_pm1
from suite.train.optim import param_groups

BC = QuantConfig(weight_quantizer="binaryconnect", clip_weights=1.0, lr_scale="glorot")


def test_quant_linear_uses_binary_weights():
    layer = QuantLinear(4, 3, weight_quantizer=BinaryConnect())
    x = torch.randn(5, 4)
    assert torch.equal(layer(x), F.linear(x, sign_pm1(layer.weight), layer.bias))


@pytest.mark.parametrize("groups,dilation", [(1, 1), (2, 1), (1, 2), (4, 2)])
def test_quant_conv_keeps_groups_and_dilation(groups, dilation):
    conv = QuantConv2d(4, 8, 3, padding=2, dilation=dilation, groups=groups, weight_quantizer=BinaryConnect())
    x = torch.randn(2, 4, 9, 9)
    expected = F.conv2d(x, sign_pm1(conv.weight), conv.bias, padding=2, dilation=dilation, groups=groups)
    assert torch.allclose(conv(x), expected)


def test_glorot_lr_scale_matches_the_authors_formula():
    assert glorot_lr_scale(784, 1024) == pytest.approx(1 / math.sqrt(1.5 / (784 + 1024)))
    layer = BC.linear(784, 1024)
    assert layer.lr_scale == pytest.approx(34.71, abs=0.01)
    conv = BC.conv2d(128, 256, 3)  # fan_in = 9 * 128, fan_out = 9 * 256
    assert conv.lr_scale == pytest.approx(1 / math.sqrt(1.5 / (9 * 128 + 9 * 256)))


def test_param_groups_scale_only_binarized_weights():
    model = mlp(num_classes=10, in_shape=(1, 28, 28), quant=BC, hidden=[32])
    groups = param_groups(model, lr=0.01)
    scaled = {id(p): g["lr"] for g in groups for p in g["params"]}
    first = model[1]
    assert scaled[id(first.weight)] == pytest.approx(0.01 * glorot_lr_scale(784, 32))
    assert scaled[id(first.bias)] == 0.01  # biases and BatchNorm stay real-valued, unscaled


def test_clipping_bounds_latent_weights_after_a_step():
    model = mlp(num_classes=10, in_shape=(1, 28, 28), quant=BC, hidden=[32])
    targets = latent_clip_targets(model)
    assert len(targets) == 2
    with torch.no_grad():
        model[1].weight.mul_(1000)
        model[1].bias.fill_(5.0)
    clip_latent_weights(targets)
    assert model[1].weight.abs().max().item() == 1.0
    assert model[1].bias.max().item() == 5.0  # biases are never clipped


def test_float_model_has_no_clip_or_scale():
    model = mlp(num_classes=10, in_shape=(1, 28, 28), hidden=[16])
    assert latent_clip_targets(model) == []
    assert len(param_groups(model, 0.1)) == 1


def test_weight_init_range():
    layer = QuantConfig(weight_init_range=1.0).linear(784, 1024)
    assert 0.95 < layer.weight.abs().max().item() <= 1.0
    assert layer.weight.abs().mean().item() == pytest.approx(0.5, abs=0.01)


def test_binaryconnect_mlp_weights_take_32x_less_memory():
    model = mlp(num_classes=10, in_shape=(1, 28, 28), quant=BC)
    mem = weight_memory(model)
    linear = [r for r in mem["layers"] if r["param"] == "weight" and r["bits"] == 1]
    assert len(linear) == 4
    binary_weights = sum(r["count"] for r in linear)
    assert binary_weights == 784 * 1024 + 2 * 1024 * 1024 + 1024 * 10
    assert sum(r["count"] * 32 for r in linear) / sum(r["count"] * r["bits"] for r in linear) == 32
    assert mem["quantized_saving"] == 32
    # biases and BatchNorm stay float, so the whole model saves a little less than 32x
    assert 28 < mem["saving"] < 32
