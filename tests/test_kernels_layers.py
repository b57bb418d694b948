"""Packed layers (suite/nn/packed.py) equal the emulated ones: forward values (integer parts exactly,
scaled results to float rounding) and gradients (bitwise: the backward pass is the emulated one),
in training and in evaluation, on every build of the kernels."""

import copy

import pytest
import torch
from torch.func import jvp, vmap

import suite.kernels as K
from suite.kernels import build, dispatch
from suite.nn import QuantConfig, QuantConv2d, QuantLinear
from suite.nn.packed import arithmetic_summary
from suite.quant import build_quantizer

METHODS = {  # name -> (weight quantizer, input quantizer)
    "bnn": ("binaryconnect", "bnn_sign"),
    "bnn_h": ("binaryconnect(scale=0.5)", "bnn_sign"),  # binary values +-h, h != 1
    "xnor": ("xnor_weight", "xnor_input"),            # alpha per channel and the K map
    "xnor_no_k": ("xnor_weight", "bnn_sign"),         # the NIN reimplementation's variant
    "dorefa_w1a1": ("dorefa_weight(bits=1)", "dorefa_activation(bits=1)"),
    "dorefa_w1a2": ("dorefa_weight(bits=1)", "dorefa_activation(bits=2)"),
    "dorefa_w2a2": ("dorefa_weight(bits=2)", "dorefa_activation(bits=2)"),
    "dorefa_w1a4": ("dorefa_weight(bits=1)", "dorefa_activation(bits=4)"),
}


@pytest.fixture(scope="module", autouse=True)
def _kernels():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")


@pytest.fixture(params=K.ISAS)
def isa(request):
    if request.param not in K.supported():
        pytest.skip(f"{request.param}: {dispatch.why_unsupported(request.param)}")
    with K.forced(request.param):
        yield request.param


def _quant(method):
    wq, iq = METHODS[method]
    return dict(weight_quantizer=build_quantizer(wq, "weight"), input_quantizer=build_quantizer(iq, "input"))


def _twins(make):
    """A packed layer and an emulated copy with the same weights."""
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.weight.copy_(torch.randn_like(layer.weight) * 0.8)  # some |W| > 1: the STE masks act
    emulated = copy.deepcopy(layer)
    emulated.arithmetic = "emulated"
    return layer, emulated


def _step(layer, x, g):
    layer.zero_grad()
    x = x.detach().clone().requires_grad_()
    y = layer(x)
    y.backward(g)
    return y.detach(), x.grad, layer.weight.grad.clone(), (layer.bias.grad.clone() if layer.bias is not None else None)


def _input(shape, method):
    x = torch.randn(shape) * 0.8
    if method.startswith("dorefa"):
        x = x * 0.6 + 0.5  # mostly inside DoReFa's [0, 1] clip, some values outside
    x.view(-1)[::11] = 0.0  # sign(0) = +1, code 0
    return x


def _compare(layer, emulated, x, exact: bool, method: str):
    torch.manual_seed(1)
    g = torch.randn_like(emulated(x))
    got, want = _step(layer, x, g), _step(emulated, x, g)
    assert layer.arithmetic_used.startswith("packed") and emulated.arithmetic_used.startswith("emulated")
    if exact:
        assert torch.equal(got[0], want[0])
    else:
        assert torch.allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
    # gradients: the same ops on the same tensors, bitwise; except that XNOR-Net's K map is a function
    # of the input whose gradient takes the product's output, which is equal to float rounding only
    gx, want_gx = got[1], want[1]
    assert torch.equal(gx, want_gx) or (method == "xnor" and torch.allclose(gx, want_gx, rtol=1e-5, atol=1e-5))
    for a, b in zip(got[2:], want[2:], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("method", list(METHODS))
def test_packed_linear_equals_the_emulated_layer(isa, method):
    layer, emulated = _twins(lambda: QuantLinear(130, 37, bias=method != "bnn", **_quant(method)))
    # BNN without a bias: the outputs are the +-1 dot products themselves, integers, equal exactly
    _compare(layer, emulated, _input((9, 130), method), exact=method == "bnn", method=method)


CONVS = [  # (C_in, C_out, kernel, stride, padding, dilation, groups)
    (16, 12, 3, 1, 1, 1, 1),
    (70, 10, 3, 2, 1, 1, 2),
    (24, 8, 3, 1, 2, 2, 1),
    (8, 8, 3, 1, 1, 1, 8),
    (16, 6, (1, 3), (2, 1), (0, 1), 1, 2),
]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("cin,cout,ks,stride,pad,dil,groups", CONVS)
def test_packed_conv_equals_the_emulated_layer(isa, method, cin, cout, ks, stride, pad, dil, groups):
    layer, emulated = _twins(lambda: QuantConv2d(cin, cout, ks, stride, pad, dil, groups, bias=method != "bnn",
                                                 **_quant(method)))
    _compare(layer, emulated, _input((2, cin, 9, 10), method), exact=method == "bnn", method=method)


def test_evaluation_reuses_the_packed_weights_until_they_change():
    layer, emulated = _twins(lambda: QuantLinear(100, 20, **_quant("xnor")))
    x = _input((5, 100), "xnor")
    layer.eval(), emulated.eval()
    with torch.no_grad():
        y1 = layer(x)
        cache = layer._packed_cache
        assert layer(x) is not None and layer._packed_cache is cache  # reused
        assert torch.allclose(y1, emulated(x), rtol=1e-5, atol=1e-5)
        layer.weight.mul_(-1)  # an optimizer step in place: a new version
        emulated.weight.mul_(-1)
        assert torch.allclose(layer(x), emulated(x), rtol=1e-5, atol=1e-5) and layer._packed_cache is not cache
    layer.train()
    layer(x)
    assert layer._packed_cache is None


def test_where_packed_does_not_apply_the_layer_emulates_and_says_why():
    x = torch.randn(4, 32)
    first = QuantLinear(32, 8, weight_quantizer=build_quantizer("binaryconnect"))
    first(x)
    assert first.arithmetic_used == "emulated (real-valued input)"
    plain = QuantLinear(32, 8)
    plain(x)
    assert plain.arithmetic_used == "float"
    stochastic = QuantLinear(32, 8, weight_quantizer=build_quantizer("binaryconnect(stochastic=true)"),
                             input_quantizer=build_quantizer("bnn_sign"))
    stochastic(x)
    assert stochastic.arithmetic_used.startswith("packed")  # +-1 draws while training
    stochastic.eval()
    stochastic(x)
    assert stochastic.arithmetic_used.startswith("emulated (no packed form")  # real weights at test time
    double = QuantLinear(32, 8, dtype=torch.float64, **_quant("bnn"))
    double(x.double())
    assert double.arithmetic_used == "emulated (not plain float32 CPU tensors)"
    reflect = QuantConv2d(4, 4, 3, padding=1, padding_mode="reflect", **_quant("bnn"))
    reflect(torch.randn(1, 4, 5, 5))
    assert reflect.arithmetic_used.startswith("emulated (padding mode")


@pytest.mark.parametrize("method", ["bnn", "xnor_no_k", "dorefa_w1a2"])
@pytest.mark.parametrize("conv", [False, True])
def test_dropout_after_the_quantizer_while_training(isa, method, conv):
    """BNN's and NIN's dropout acts after the input quantizer: kept inputs scaled by 1 / (1 - p),
    dropped ones 0; packed as masked signs (or codes of a scaled step), equal to the emulated layer."""
    from suite.models.blocks import dropout_before

    def make():
        q = _quant(method)
        layer = QuantConv2d(16, 8, 3, padding=1, **q) if conv else QuantLinear(130, 37, **q)
        dropout_before(layer, 0.3)
        return layer

    layer, emulated = _twins(make)
    x = _input((3, 16, 6, 6) if conv else (9, 130), method)
    torch.manual_seed(5)
    g = torch.randn_like(emulated(x))
    torch.manual_seed(7)  # the same dropout draws for both
    got = _step(layer, x, g)
    torch.manual_seed(7)
    want = _step(emulated, x, g)
    assert layer.arithmetic_used.startswith("packed")
    assert torch.allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
    for a, b in zip(got[1:], want[1:], strict=True):
        assert torch.equal(a, b)


def test_the_dropout_scale_is_the_one_dropout_applies():
    from suite.models.blocks import QuantizedThenDropped, _dropped_form

    for p in (0.1, 0.2, 0.3, 0.5, 0.7):
        q = QuantizedThenDropped(build_quantizer("bnn_sign"), p)
        kept = q(torch.randn(10000)).abs().amax()
        assert _dropped_form(q, True) == K.MaskedSigns(float(kept))


def test_dropout_after_the_sign_is_packed_in_training_and_evaluation():
    model = __import__("suite.models", fromlist=["mlp"]).mlp(
        num_classes=10, in_shape=(1, 8, 8), hidden=[64, 64], dropout=0.5, activation="identity",
        quant=QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign"))
    x = torch.randn(16, 1, 8, 8)
    model(x)
    summary = arithmetic_summary(model)
    assert summary == {"emulated (real-valued input)": 1, f"packed ({K.status()})": 2}  # masked signs
    model.eval()
    with torch.no_grad():
        model(x)
    assert arithmetic_summary(model) == {"emulated (real-valued input)": 1, f"packed ({K.status()})": 2}


def test_the_config_option_and_the_layer_argument():
    x = torch.randn(3, 16)
    for arithmetic, label in (("packed", "packed"), ("emulated", "emulated (arithmetic = emulated)")):
        cfg = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", arithmetic=arithmetic)
        layer = cfg.linear(16, 4)
        layer(x)
        assert layer.arithmetic_used.startswith(label)
    with pytest.raises(ValueError, match="arithmetic must be"):
        QuantLinear(4, 4, arithmetic="fast")


def test_forward_mode_and_vmap_take_the_float_path():
    layer, emulated = _twins(lambda: QuantLinear(24, 6, **_quant("bnn")))
    x, tangents = torch.randn(3, 24), torch.randn(4, 3, 24)

    def f(module):
        return lambda inp: module(inp)

    got = vmap(lambda t: jvp(f(layer), (x,), (t,))[1])(tangents)
    want = vmap(lambda t: jvp(f(emulated), (x,), (t,))[1])(tangents)
    assert torch.equal(got, want) and layer.arithmetic_used.startswith("emulated (not plain")


def test_the_packed_op_has_forward_mode_derivatives():
    """Dual tensors (torch.autograd.forward_ad) are plain tensors: the packed op runs and its jvp is
    the float product's."""
    import torch.autograd.forward_ad as fwAD

    layer, emulated = _twins(lambda: QuantConv2d(8, 4, 3, padding=1, **_quant("dorefa_w1a2")))
    x, t = _input((1, 8, 5, 5), "dorefa"), torch.randn(1, 8, 5, 5)
    outs = []
    for m in (layer, emulated):
        with fwAD.dual_level():
            y = m(fwAD.make_dual(x, t))
            outs.append(fwAD.unpack_dual(y).tangent)
    assert layer.arithmetic_used.startswith("packed")
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_a_bnn_trains_alike_packed_and_emulated():
    """Whole training steps of a BNN MLP (input dropout, binary layers, BatchNorm, dropout, Adam with
    Glorot LR scales, clipping), packed and emulated, from one seed and the same dropout draws: the
    packed network's weights follow the emulated one's bit for bit at this size. (At 1024 units the
    emulated product adds the bias inside float32 partial sums, the packed one after the exact
    integer: 1 ulp apart, which now and then flips a sign near zero, and whole runs then drift apart
    as two seeds' do: results/bnn-mnist.quick.md.)"""
    import dataclasses

    from suite.models import mlp
    from suite.nn import latent_clip_targets
    from suite.train.backprop import train_epoch
    from suite.train.losses import squared_hinge
    from suite.train.optim import param_groups

    bnn = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", clip_weights=1.0,
                      lr_scale="glorot", weight_init_range=1.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(400, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (400,), generator=g)
    batches = [torch.randint(0, 400, (50,), generator=g) for _ in range(20)]
    weights = {}
    for arithmetic in ("packed", "emulated"):
        torch.manual_seed(0)
        model = mlp(num_classes=10, in_shape=(1, 8, 8), hidden=[96, 96], activation="identity", dropout=0.5,
                    input_dropout=0.2, quant=dataclasses.replace(bnn, arithmetic=arithmetic))
        opt = torch.optim.Adam(param_groups(model, 0.003))
        train_epoch(model, opt, squared_hinge, x, y, batches, latent_clip_targets(model))
        assert any(k.startswith(arithmetic) for k in arithmetic_summary(model)), arithmetic_summary(model)
        weights[arithmetic] = model.state_dict()
    for name, w in weights["packed"].items():
        assert torch.equal(w, weights["emulated"][name]), name
