"""Inference export (suite/nn/inference.py): a trained BNN / XNOR-Net / DoReFa model packed for
inference predicts what the emulated model predicts, and stores its weights as bits."""

import copy
import types

import pytest
import torch
import torch.nn as nn

from suite.data import load_splits
from suite.kernels import Codes, build
from suite.models import bc_cnn, mlp, nin
from suite.nn import QuantConfig
from suite.nn.inference import PackedConv2d, PackedLinear, export, packed_bytes
from suite.nn.packed import arithmetic_summary

PIXELS = Codes(8, 2 / 255, -1.0)  # MNIST with preprocessing "pm1": 2 p / 255 - 1


@pytest.fixture(scope="module", autouse=True)
def _kernels():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")


def _emulated(model):
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if hasattr(m, "arithmetic"):
            m.arithmetic = "emulated"
    return twin.eval()


def _train(model, x, y, steps, lr=1e-3, batch=100):
    opt = torch.optim.Adam(model.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in model.modules():
                if getattr(m, "clip_value", None):
                    m.weight.clamp_(-m.clip_value, m.clip_value)
    return model.eval()


def _mnist(source, data_dir=None, train_size=5000):
    spec = types.SimpleNamespace(dataset="mnist", source=source, train_size=train_size, val_size=0, test_size=None,
                                 preprocessing="pm1", image_size=None, test_set="standard")
    return load_splits(spec, data_dir, download=False)


def _bnn_mlp(hidden):
    torch.manual_seed(0)
    return mlp(num_classes=10, in_shape=(1, 28, 28), hidden=hidden, activation="identity", dropout=0.5,
               input_dropout=0.2, quant=QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign",
                                                     clip_weights=1.0))


def _check_bnn_mlp(splits, hidden, steps):
    model = _train(_bnn_mlp(hidden), splits.train_x, splits.train_y, steps)
    with torch.no_grad():
        want = _emulated(model)(splits.test_x).argmax(1)
        exported = export(model, PIXELS)
        got = exported(splits.test_x).argmax(1)
    assert (want == splits.test_y).float().mean() > 0.6  # a trained model, not a constant one
    assert torch.equal(got, want)
    layers = [m for m in exported.modules() if isinstance(m, PackedLinear)]
    assert len(layers) == len(hidden) + 1  # the first layer (8-bit pixels) and the last one packed too
    assert [m.thr is not None for m in layers] == [True] * len(hidden) + [False]  # BatchNorm + sign folded
    # bytes: one bit a weight, rows padded to 64 bits and to panels of 32 rows; thresholds; the last
    # layer's scale and bias; the output BatchNorm stays float
    widths = [784, *hidden, 10]
    bits = sum(-(-n // 32) * 32 * -(-k // 64) * 8 for k, n in zip(widths[:-1], widths[1:], strict=True))
    folded = sum(8 * n for n in hidden) + 4 * hidden[0]  # thr and flip (int32), the first layer's sum of signs
    assert packed_bytes(exported)["packed_layers"] == bits + folded + 2 * 4 * 10
    float_weights = 4 * sum(k * n for k, n in zip(widths[:-1], widths[1:], strict=True))
    return float_weights / packed_bytes(exported)["packed_layers"]


def test_bnn_mlp_on_the_embedded_mnist_predicts_as_the_emulated_model():
    splits = _mnist("embedded")
    _check_bnn_mlp(splits, [256, 256, 256], steps=60)


@pytest.mark.realdata
def test_bnn_mlp_on_the_mnist_test_set_predicts_as_the_emulated_model(shared_mnist):
    splits = _mnist("full", shared_mnist, train_size=10000)
    assert len(splits.test_x) == 10000
    ratio = _check_bnn_mlp(splits, [1024, 1024, 1024], steps=80)
    assert ratio > 25  # float32 weights over everything the packed layers store


def test_a_negative_batchnorm_scale_flips_the_threshold():
    torch.manual_seed(0)
    model = mlp(num_classes=3, in_shape=(40,), hidden=[16, 16], activation="hardtanh", quant=QuantConfig(
        weight_quantizer="xnor_weight", input_quantizer="bnn_sign"))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(torch.randn_like(m.weight))  # some negative
                m.weight[0] = 0.0  # a constant channel
                m.running_mean.copy_(torch.randn_like(m.running_mean))
    x = torch.randn(500, 40)
    model.eval()
    with torch.no_grad():
        want = _emulated(model)(x)
        exported = export(model)
        folded = [m for m in exported.modules() if isinstance(m, PackedLinear) and m.thr is not None]
        assert len(folded) == 1 and bool((folded[0].flip == 1).any())
        assert torch.allclose(exported(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["xnor", "xnor_no_k", "dorefa_w1a2", "bnn"])
def test_small_conv_models_predict_as_the_emulated_model(variant):
    torch.manual_seed(0)
    x, y = torch.randn(256, 3, 16, 16), torch.randint(0, 10, (256,))
    if variant == "bnn":
        model = bc_cnn(num_classes=10, in_shape=(3, 16, 16), width=0.125, hidden=64, activation="identity",
                       quant=QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign"))
    else:
        wq, iq = {"xnor": ("xnor_weight", "xnor_input"), "xnor_no_k": ("xnor_weight", "bnn_sign"),
                  "dorefa_w1a2": ("dorefa_weight(bits=1)", "dorefa_activation(bits=2)")}[variant]
        model = nin(num_classes=10, in_shape=(3, 16, 16), width=0.25, quant=QuantConfig(
            weight_quantizer=wq, input_quantizer=iq, float_layers=("first", "last")))
    model = _train(model, x, y, steps=5, batch=32)
    with torch.no_grad():
        want = _emulated(model)(x)
        exported = export(model)
        got = exported(x)
        model(x)
    assert arithmetic_summary(model).get(f"packed ({__import__('suite.kernels').kernels.status()})", 0) > 0
    convs = [m for m in exported.modules() if isinstance(m, PackedConv2d)]
    assert len(convs) >= 4
    assert torch.equal(got.argmax(1), want.argmax(1))
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-3)
