"""Quantized layers, latent-weight clipping, the Glorot LR scale and the weight-memory summary."""

import math

import pytest
import torch
import torch.nn.functional as F

from suite.models.mlp import mlp
from suite.nn import (
    QuantConfig,
    QuantConv2d,
    QuantLinear,
    clip_latent_weights,
    glorot_lr_scale,
    latent_clip_targets,
    weight_memory,
)
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


# --- issue 3: gradient quantizer, roles, XNOR/DoReFa layers, bit accounting -------------------

def test_gradient_quantizer_quantizes_the_error_reaching_the_layer():
    """Every gradient of the layer (weights, bias, input) is computed from f_g(dC/dy)."""
    from suite.quant import quantize_gradient

    layer = QuantConfig(gradient_quantizer="dorefa_gradient(bits=2)").linear(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    g = torch.randn(4, 3)
    torch.manual_seed(11)
    gq = quantize_gradient(g, 2)
    assert not torch.allclose(gq, g)
    torch.manual_seed(11)
    y = layer(x)
    assert torch.allclose(y, F.linear(x, layer.weight, layer.bias))  # identity forward
    y.backward(g)
    assert torch.allclose(layer.weight.grad, gq.t() @ x)
    assert torch.allclose(layer.bias.grad, gq.sum(0))
    assert torch.allclose(x.grad, gq @ layer.weight)


def test_gradient_quantizer_allows_in_place_ops_after_the_layer():
    conv = QuantConfig(gradient_quantizer="dorefa_gradient(bits=4)").conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    conv(x).relu_().sum().backward()  # nn.ReLU(inplace=True) after a quantized layer
    assert x.grad is not None


def test_quant_config_checks_each_quantizer_role():
    from suite.errors import UserError

    with pytest.raises(UserError, match="not as weight quantizer"):
        QuantConfig(weight_quantizer="dorefa_gradient(bits=6)").linear(4, 4)
    with pytest.raises(UserError, match="not as input quantizer"):
        QuantConfig(input_quantizer="xnor_weight").linear(4, 4)
    with pytest.raises(UserError, match="not as gradient quantizer"):
        QuantConfig(gradient_quantizer="dorefa_activation(bits=2)").linear(4, 4)


@pytest.mark.parametrize("wq,iq", [("xnor_weight", "xnor_input"),
                                   ("dorefa_weight(bits=1)", "dorefa_activation(bits=2)"),
                                   ("ternary", "stochastic_round(bits=3)"), ("bnn_sign", "bnn_sign")])
@pytest.mark.parametrize("groups,dilation", [(2, 1), (1, 2), (4, 2)])
def test_quantized_grouped_and_dilated_convs_train(wq, iq, groups, dilation):
    cfg = QuantConfig(weight_quantizer=wq, input_quantizer=iq, gradient_quantizer="dorefa_gradient(bits=6)")
    conv = cfg.conv2d(4, 8, 3, padding=dilation, dilation=dilation, groups=groups).eval()  # eval: deterministic
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    y = conv(x)
    assert y.shape == (2, 8, 9, 9)
    if not wq.startswith("xnor"):  # XNOR's K is checked against its own reference in test_quant_xnor
        expected = F.conv2d(conv.input_quantizer(x), conv.quantized_weight(), conv.bias, padding=dilation,
                            dilation=dilation, groups=groups)
        assert torch.allclose(y, expected, atol=1e-5)
    y.sum().backward()
    assert conv.weight.grad.shape == conv.weight.shape and torch.isfinite(x.grad).all()


def test_summary_of_binaryconnect_mlp_reports_32x_less_weight_memory():
    from suite.nn import format_summary, model_summary

    model = mlp(num_classes=10, in_shape=(1, 28, 28), quant=BC)
    s = model_summary(model, (1, 28, 28))
    rows = s["layers"]
    assert [r["weight_bits"] for r in rows] == [1, 1, 1, 1]
    for r in rows:  # the binarized layers' weights: 32x less than float32
        assert r["float32_weight_bytes"] / r["weight_bytes"] == 32
    assert s["totals"]["quantized_saving"] == 32
    # 784*1024 + 2*1024*1024 + 1024*10 MACs per sample, all with binary weights and real inputs
    assert s["totals"]["macs"] == 784 * 1024 + 2 * 1024 * 1024 + 1024 * 10
    assert s["totals"]["macs_by_kind"]["binary-weight"] == s["totals"]["macs"]
    assert s["totals"]["binary_mac_share"] == 0.0 and s["totals"]["binary_weight_mac_share"] == 1.0
    text = format_summary(s)
    assert "| 1 " in text and "32.0x" in text and "binary-weight" in text
    assert model.training  # the dummy forward restores the mode


def test_summary_counts_macs_by_precision():
    import torch.nn as nn

    from suite.nn import model_summary

    xnor = QuantConfig(weight_quantizer="xnor_weight", input_quantizer="xnor_input")
    dorefa = QuantConfig(weight_quantizer="dorefa_weight(bits=2)", input_quantizer="dorefa_activation(bits=3)")
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),                               # float: 8*32*32 outputs x 27
        xnor.conv2d(8, 16, 3, padding=1, stride=2, groups=2),        # binary: 16*16*16 x (4*9)
        dorefa.conv2d(16, 16, 1),                                    # k-bit: 16*16*16 x 16
        nn.Flatten(), BC.linear(16 * 16 * 16, 10))                   # binary-weight: 10 x 4096
    s = model_summary(model, (3, 32, 32))
    kinds = {r["layer"]: (r["mac_kind"], r["macs"], r["precision"]) for r in s["layers"]}
    assert kinds == {"0": ("float", 8 * 32 * 32 * 27, "W32A32"), "1": ("binary", 16 * 16 * 16 * 36, "W1A1"),
                     "2": ("k-bit", 16 * 16 * 16 * 16, "W2A3"), "4": ("binary-weight", 10 * 4096, "W1A32")}
    total = sum(m for _, m, _ in kinds.values())
    assert s["totals"]["binary_mac_share"] == pytest.approx(16 * 16 * 16 * 36 / total)
    # XNOR keeps alpha (16 floats) beside its 16*4*9 binary weights
    xnor_row = next(r for r in s["layers"] if r["layer"] == "1")
    assert xnor_row["weight_bytes"] == (16 * 4 * 9 + 16 * 32) / 8


def test_weight_memory_counts_the_scales_quantizers_keep():
    layer = QuantConfig(weight_quantizer="xnor_weight").linear(64, 32)
    mem = weight_memory(layer)
    scales = [r for r in mem["layers"] if r["param"] == "weight.scales"]
    assert scales == [{"layer": "", "param": "weight.scales", "count": 32, "bits": 32, "quantized": False,
                       "derived": True}]
    assert mem["float32_bytes"] == (64 * 32 + 32) * 4  # the float model has no scales
    assert mem["quantized_saving"] == pytest.approx(64 * 32 * 32 / (64 * 32 + 32 * 32))


@pytest.mark.parametrize("cfg", [
    QuantConfig(weight_quantizer="xnor_weight", input_quantizer="xnor_input"),
    QuantConfig(weight_quantizer="dorefa_weight(bits=1)", input_quantizer="dorefa_activation(bits=2)",
                gradient_quantizer="dorefa_gradient(bits=6)"),
    QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign")])
def test_forward_mode_through_quantized_layers_batched_or_not(cfg):
    """The forward-gradient method's jvp over functional_call, one direction at a time or vmapped,
    gives the directional derivative that reverse mode gives (the same STEs)."""
    import torch.nn as nn
    from torch.func import functional_call, jvp, vmap

    model = nn.Sequential(cfg.conv2d(2, 4, 3, padding=1), nn.Flatten(), cfg.linear(4 * 5 * 5, 3))
    x = torch.randn(3, 2, 5, 5)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p):
        return functional_call(model, p, (x,)).square().sum()

    tangents = {k: torch.randn(4, *v.shape) for k, v in params.items()}
    batched = vmap(lambda t: jvp(f, (params,), (t,))[1], randomness="same")(tangents)
    one = torch.stack([jvp(f, (params,), ({k: v[i] for k, v in tangents.items()},))[1] for i in range(4)])
    assert torch.allclose(batched, one, rtol=1e-4, atol=1e-4)
    loss = f(dict(model.named_parameters()))
    grads = torch.autograd.grad(loss, list(model.parameters()))  # the gradient quantizer only adds noise
    if cfg.gradient_quantizer == "none":
        reverse = torch.stack([sum((g * tangents[k][i]).sum() for (k, _), g in zip(model.named_parameters(), grads,
                                                                                  strict=True)) for i in range(4)])
        assert torch.allclose(one, reverse, rtol=1e-4, atol=1e-3)
