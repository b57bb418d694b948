"""Quantized layers that save their backward pass's tensors in bits (`packed` quantizers,
suite/quant/packing.py) give the float-saved path's gradients bit for bit, and keep fewer bytes."""

import copy

import pytest
import torch
import torch.nn as nn

from suite import tensor_memory
from suite.models.mlp import mlp
from suite.nn import QuantConfig
from suite.quant import packing


def _bnn(packed: bool, dropout=0.5, latent_bits=32):
    opt = "(packed=true)" if packed else ""
    quant = QuantConfig(weight_quantizer="binaryconnect" + opt, input_quantizer="bnn_sign" + opt,
                        clip_weights=1.0, latent_bits=latent_bits)
    torch.manual_seed(0)
    return mlp(num_classes=10, in_shape=(64,), quant=quant, hidden=[256, 256], activation="identity",
               dropout=dropout, input_dropout=0.2)


def _grads(model, x, y):
    torch.manual_seed(1)  # the same dropout masks
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n, m in model.named_modules():  # k-bit latent layers: the gradient of their binary weights
        if getattr(m, "latent", None) is not None:
            grads[n + ".latent"] = m.latent.leaf.grad.clone()
    return loss.detach(), grads


@pytest.mark.parametrize("latent_bits", [32, 8])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_bnn_gradients_are_bit_for_bit_those_of_the_float_saved_path(dropout, latent_bits):
    x, y = torch.randn(100, 64) * 2, torch.randint(0, 10, (100,))
    loss_f, float_saved = _grads(_bnn(False, dropout, latent_bits), x, y)
    loss_b, bit_saved = _grads(_bnn(True, dropout, latent_bits), x, y)
    assert torch.equal(loss_f, loss_b)
    assert float_saved.keys() == bit_saved.keys()
    for name in float_saved:
        assert torch.equal(float_saved[name], bit_saved[name]), name


@pytest.mark.parametrize("ref", ["xnor_input(packed=true)", "dorefa_activation(bits=2, packed=true)",
                                 "dorefa_activation(bits=5, packed=true)"])
def test_conv_layers_with_packed_inputs_give_the_same_gradients(ref):
    from suite.nn import QuantConv2d
    from suite.quant import build_quantizer

    x = torch.rand(4, 3, 9, 9) * 3 - 1
    outs = []
    for r in (ref.replace("packed=true", "packed=false"), ref):
        torch.manual_seed(0)
        layer = QuantConv2d(3, 5, 3, padding=1, weight_quantizer=build_quantizer("binaryconnect", "weight"),
                            input_quantizer=build_quantizer(r, "input"))
        xi = x.clone().requires_grad_()
        layer(xi).square().sum().backward()
        outs.append((xi.grad, layer.weight.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_marked_tensors_round_trip_exactly():
    t = torch.randint(0, 3, (1000,)).float().mul_(2.0).sub_(2.0)  # {-2, 0, 2}: codes 0, 1, 2
    packing.mark(t, 2, 2.0, -2.0)
    packed = packing._pack(t)
    assert isinstance(packed, packing.Packed) and packed.planes.numel() == 2 * 125  # 2 bits each
    assert torch.equal(packing._unpack(packed), t)
    mask = torch.rand(1001) > 0.5
    assert torch.equal(packing._unpack(packing._pack(mask)), mask)
    plain = torch.randn(100)
    assert packing._pack(plain) is plain  # not marked: kept as is


@pytest.mark.skipif(tensor_memory.install() is not None, reason="counting allocator unavailable")
def test_the_saved_bytes_fall():
    """After the forward pass (the graph alive) a packed BNN holds fewer bytes than the float-saved one."""
    x, y = torch.randn(200, 64), torch.randint(0, 10, (200,))
    held = {}
    for packed in (False, True):
        model = _bnn(packed)
        before = tensor_memory.counts()["current"]
        loss = nn.functional.cross_entropy(model(x), y)
        held[packed] = tensor_memory.counts()["current"] - before
        del loss
    # float-saved: per hidden layer its binary weights, inputs, STE inputs and dropout noise in float32;
    # packed: those in 1-2 bits, while BatchNorm's inputs (the products' outputs) stay float32
    assert held[True] < held[False] / 2, held


def test_packed_is_a_quantizer_option():
    from suite.quant import build_quantizer

    assert build_quantizer("bnn_sign(packed=true)", "input").packed
    assert not build_quantizer("bnn_sign", "input").packed
    model = copy.deepcopy(_bnn(True))
    assert "packed=True" in repr(model)
