"""The papers' models: parameter counts of the paper configurations (computed by hand below),
output shapes with each paper's quantizers, first/last layer tagging, dropout after the
quantizer, and argument validation."""

import pytest
import torch
import torch.nn as nn

from suite.models import MODELS
from suite.models.alexnet import _spatial as alexnet_side
from suite.models.blocks import QuantizedThenDropped
from suite.models.dorefa_svhn import _spatial as dorefa_side
from suite.nn import QuantConfig
from suite.nn.layers import _QuantMixin

BINARYCONNECT = QuantConfig(weight_quantizer="binaryconnect", clip_weights=1.0, lr_scale="glorot")
BNN = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", clip_weights=1.0)
XNOR = QuantConfig(weight_quantizer="xnor_weight", input_quantizer="xnor_input", float_layers=("first", "last"))
DOREFA = QuantConfig(weight_quantizer="dorefa_weight(bits=1)", input_quantizer="dorefa_activation(bits=2)",
                     gradient_quantizer="dorefa_gradient(bits=4)", float_layers=("first", "last"))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def quant_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _QuantMixin)]


def test_bc_cnn_cifar10_parameter_count():
    # convolutions (weights + biases): 3*128*9+128, 128*128*9+128, 128*256*9+256, 256*256*9+256,
    # 256*512*9+512, 512*512*9+512 = 4,576,384; their BatchNorms 2*(2*128+2*256+2*512) = 3,584;
    # dense 8192*1024+1024, 1024*1024+1024, 1024*10+10 = 9,449,482; their BatchNorms 2*(1024+1024+10) = 4,116
    model = MODELS["bc_cnn"](num_classes=10, in_shape=(3, 32, 32), quant=BINARYCONNECT)
    assert params(model) == 4_576_384 + 3_584 + 9_449_482 + 4_116


def test_bc_cnn_svhn_is_half_the_convolution_channels():
    model = MODELS["bc_cnn"](num_classes=10, in_shape=(3, 32, 32), width=0.5)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256]  # BinaryConnect / BinaryNet svhn.py
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [1024, 1024, 10]


def test_bc_cnn_order_is_conv_pool_batchnorm_activation():
    model = MODELS["bc_cnn"](num_classes=10, in_shape=(3, 32, 32), width=0.125, hidden=16, activation="hardtanh")
    kinds = [type(m).__name__ for m in model][:8]
    assert kinds == ["QuantConv2d", "BatchNorm2d", "Hardtanh", "QuantConv2d", "MaxPool2d", "BatchNorm2d",
                     "Hardtanh", "QuantConv2d"]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(b.eps == 1e-4 and b.momentum == 0.1 for b in bns) and isinstance(model[-1], nn.BatchNorm1d)


@pytest.mark.parametrize("quant, activation", [(BINARYCONNECT, "relu"), (BNN, "hardtanh"), (BNN, "identity")])
def test_bc_cnn_trains_with_binaryconnect_and_bnn(quant, activation):
    model = MODELS["bc_cnn"](num_classes=10, in_shape=(3, 32, 32), quant=quant, width=0.125, hidden=32,
                             activation=activation)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.square().sum().backward()
    layers = quant_layers(model)
    assert all(layer.weight.grad is not None for layer in layers)
    assert layers[0].input_quantizer is None  # the data is never binarized
    if quant is BNN:
        assert all(layer.input_quantizer is not None for layer in layers[1:])


def test_bnn_mnist_mlp_parameter_count_and_structure():
    # 784*4096+4096 + 2*(4096*4096+4096) + 4096*10+10, BatchNorms 2*(3*4096+10)
    model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), hidden=[4096] * 3, quant=BNN, activation="hardtanh",
                          input_dropout=0.2, dropout=0.5)
    assert params(model) == 3_215_360 + 2 * 16_781_312 + 40_970 + 2 * (3 * 4096 + 10)
    assert isinstance(model[1], nn.Dropout) and model[1].p == 0.2  # the pixels: a plain dropout
    hidden = quant_layers(model)[1:]
    assert all(isinstance(m.input_quantizer, QuantizedThenDropped) for m in hidden)  # dropped after sign
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_mlp_default_structure_is_unchanged():
    model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), dropout=0.2)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten"] + ["QuantLinear", "BatchNorm1d", "ReLU", "Dropout"] * 3 + ["QuantLinear", "BatchNorm1d"]
    assert not any(isinstance(m, QuantizedThenDropped) for m in model.modules())  # no input quantizer here


def test_dropout_acts_after_the_binarization():
    """A dropped unit must reach the layer as 0, not as sign(0) = +1."""
    model = MODELS["mlp"](num_classes=3, in_shape=(20,), hidden=[50, 50], quant=BNN, activation="identity",
                          dropout=0.5)
    seen = []
    layer = quant_layers(model)[1]
    layer.input_quantizer.register_forward_hook(lambda m, i, o: seen.append(o))
    model.train()
    model(torch.randn(64, 20))
    assert set(seen[0].unique().tolist()) == {-2.0, 0.0, 2.0}  # +-1 kept and scaled by 1 / (1 - p), or 0
    model.eval()
    seen.clear()
    model(torch.randn(64, 20))
    assert set(seen[0].unique().tolist()) <= {-1.0, 1.0}


def test_nin_parameter_count():
    # conv1 3*192*25+192 (BN affine=False); blocks BN(in)+conv: 384+192*160+160, 320+160*96+96,
    # 192+96*192*25+192, 2*(384+192*192+192), 384+192*192*9+192, 384+192*192+192; last conv 192*10+10
    model = MODELS["nin"](num_classes=10, in_shape=(3, 32, 32), quant=XNOR)
    assert params(model) == 14_592 + 31_264 + 15_776 + 461_184 + 2 * 37_440 + 332_352 + 37_440 + 1_930


def test_nin_with_xnor_first_and_last_float_and_bn_clamped():
    model = MODELS["nin"](num_classes=10, in_shape=(3, 32, 32), quant=XNOR, width=0.125)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].weight_quantizer is None and convs[-1].weight_quantizer is None
    assert all(c.weight_quantizer is not None and c.input_quantizer is not None for c in convs[1:-1])
    assert sum(isinstance(c.input_quantizer, QuantizedThenDropped) for c in convs) == 2  # the two dropout blocks
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.affine)
    with torch.no_grad():
        bn.weight.fill_(-3.0)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and bn.weight.min().item() == pytest.approx(0.01)


def test_alexnet_parameter_count_and_224_features():
    # conv1 3*96*121+96, BN 192; blocks BN(in)+conv: 192+96*256*25+256, 512+256*384*9+384,
    # 768+384*384*9+384, 768+384*256*9+256; fc BN(9216)+9216*4096+4096, BN(4096)+4096*4096+4096;
    # BN(4096) 8192; 4096*1000+1000
    with torch.device("meta"):
        model = MODELS["alexnet"](num_classes=1000, in_shape=(3, 224, 224), quant=XNOR)
    assert params(model) == (34_944 + 192 + 614_848 + 885_632 + 1_328_256 + 885_760 + 18_432 + 37_752_832
                             + 8_192 + 16_781_312 + 8_192 + 4_097_000)
    assert alexnet_side(224) == 6 and alexnet_side(227) == 6  # the reimplementation's 227 crops: same maps
    assert alexnet_side(63) == 1 and alexnet_side(62) == 0


def test_alexnet_small_images_and_xnor():
    model = MODELS["alexnet"](num_classes=10, in_shape=(3, 64, 64), quant=XNOR, width=0.125, hidden=32)
    out = model(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 10)
    out.sum().backward()
    layers = quant_layers(model)
    assert layers[0].weight_quantizer is None and layers[-1].weight_quantizer is None  # first and last float
    assert all(m.weight_quantizer is not None for m in layers[1:-1])


def test_alexnet_allenai_xnor_block_structure_and_parameter_count():
    """The paper's network (allenai models/alexnetxnor.lua): BN without affine -> sign -> conv
    [-> pool], no ReLU after the binary layers, no dropout; the dense layers as 6x6 and 1x1
    convolutions. Weights: conv1 3*96*121+96; 96*256*25+256, 256*384*9+384, 384*384*9+384,
    384*256*9+256; 256*4096*36+4096, 4096*4096+4096; 4096*1000+1000 (no BatchNorm parameters)."""
    with torch.device("meta"):
        model = MODELS["alexnet"](num_classes=1000, in_shape=(3, 224, 224), quant=XNOR, structure="allenai_xnor",
                                  dropout=0.0)
    assert params(model) == (34_944 + 614_656 + 885_120 + 1_327_488 + 884_992 + 37_752_832 + 16_781_312
                             + 4_097_000)
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("ReLU") == 2  # after the first layer's BN and before the classifier only
    assert "Dropout" not in kinds and "Linear" not in kinds
    bns = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 8 and not any(b.affine for b in bns)
    assert [b.eps for b in bns] == [1e-5] + [1e-4] * 6 + [1e-3]
    layers = quant_layers(model)
    assert layers[0].weight_quantizer is None and layers[-1].weight_quantizer is None
    assert all(m.weight_quantizer is not None and m.input_quantizer is not None for m in layers[1:-1])
    # each binary layer directly follows its BatchNorm (BN -> binarize -> conv): nothing in between
    for i, m in enumerate(model):
        if m in layers[1:-1]:
            assert isinstance(model[i - 1], nn.BatchNorm2d)


def test_alexnet_allenai_bwn_structure_and_small_images():
    """models/alexnet.lua (the BWN row): conv -> BN(affine) -> ReLU, SpatialDropout before the
    dense convolutions."""
    model = MODELS["alexnet"](num_classes=10, in_shape=(3, 64, 64), quant=XNOR, structure="allenai",
                              width=0.125, hidden=32, dropout=0.1)
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("ReLU") == 7 and kinds.count("Dropout2d") == 2
    assert all(m.affine and m.eps == 1e-3 for m in model if isinstance(m, nn.BatchNorm2d))
    out = model(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 10)
    xnor = MODELS["alexnet"](num_classes=10, in_shape=(3, 64, 64), quant=XNOR, structure="allenai_xnor",
                             width=0.125, hidden=32, dropout=0.0)
    assert xnor(torch.randn(3, 3, 64, 64)).shape == (3, 10)
    with pytest.raises(ValueError, match="no dropout layer"):
        MODELS["alexnet"](num_classes=10, in_shape=(3, 64, 64), structure="allenai_xnor")


def test_nin_init_std_draws_conv_weights_and_zeroes_biases():
    torch.manual_seed(0)
    model = MODELS["nin"](num_classes=10, in_shape=(3, 32, 32), quant=XNOR, init_std=0.05)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert all(c.bias.abs().sum().item() == 0 for c in convs)
    assert abs(weights.std().item() - 0.05) < 0.002 and abs(weights.mean().item()) < 0.002


def test_dorefa_svhn_model_a_parameter_count():
    # conv0 3*48*25+48; conv1..6 without bias: 48*64*9, 64*64*9, 64*128*9, 128*128*9, 128*128*9,
    # 128*512*25; their BatchNorms 2*(64+64+128+128+128+512); fc 512*10+10
    model = MODELS["dorefa_svhn"](num_classes=10, in_shape=(3, 40, 40), quant=DOREFA)
    assert params(model) == 3_648 + 27_648 + 36_864 + 73_728 + 147_456 + 147_456 + 1_638_400 + 2_048 + 5_130
    assert dorefa_side(40) == 1 and dorefa_side(37) == 1 and dorefa_side(36) == 0


@pytest.mark.parametrize("paper_model, first, last", [("A", 48, 512), ("B", 24, 256), ("C", 12, 128), ("D", 6, 64)])
def test_dorefa_svhn_models_scale_the_channels(paper_model, first, last):
    model = MODELS["dorefa_svhn"](num_classes=10, in_shape=(3, 40, 40), quant=DOREFA, paper_model=paper_model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7 and convs[0].out_channels == first and convs[-1].out_channels == last
    out = model(torch.rand(2, 3, 40, 40))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert convs[0].gradient_quantizer is None and all(c.gradient_quantizer is not None for c in convs[1:])
    assert isinstance(convs[-1].input_quantizer, QuantizedThenDropped)  # dropout after conv5's f_a


def test_dorefa_svhn_nonlinearity_of_the_current_script():
    """clip(x, 0, 1) before k-bit activations, ReLU in the 32-bit row (tensorpack f5cf2e14); cabs
    (the older script) in every row."""
    from suite.models.dorefa_svhn import CAbs, Clip01

    float_row = QuantConfig(weight_quantizer="dorefa_weight(bits=32)", input_quantizer="dorefa_activation(bits=32)",
                            gradient_quantizer="dorefa_gradient(bits=32)", float_layers=("first", "last"))
    for quant, kind in ((DOREFA, Clip01), (float_row, nn.ReLU)):
        model = MODELS["dorefa_svhn"](num_classes=10, in_shape=(3, 40, 40), quant=quant, nonlinearity="clip_or_relu")
        assert sum(isinstance(m, kind) for m in model) == 7 and not any(isinstance(m, CAbs) for m in model)
    old = MODELS["dorefa_svhn"](num_classes=10, in_shape=(3, 40, 40), quant=float_row, nonlinearity="cabs")
    assert sum(isinstance(m, CAbs) for m in old) == 7
    assert Clip01()(torch.tensor([-0.5, 0.25, 1.5])).tolist() == [0.0, 0.25, 1.0]


@pytest.mark.parametrize("name, kwargs, shape, message", [
    ("bc_cnn", {"width": 0}, (3, 32, 32), "width must be a positive number"),
    ("bc_cnn", {"activation": "sigmoid"}, (3, 32, 32), "activation must be one of relu, hardtanh, identity"),
    ("bc_cnn", {}, (3, 30, 30), "divisible by 8"),
    ("bc_cnn", {"hidden": 0}, (3, 32, 32), "hidden must be a positive integer"),
    ("mlp", {"activation": "tanh"}, (1, 28, 28), "activation must be one of"),
    ("mlp", {"input_dropout": 1.0}, (1, 28, 28), r"dropout must be in \[0, 1\)"),
    ("nin", {"width": -1}, (3, 32, 32), "width must be a positive number"),
    ("nin", {"dropout": 1.5}, (3, 32, 32), r"dropout must be in \[0, 1\)"),
    ("alexnet", {}, (3, 32, 32), "at least 63 x 63"),
    ("alexnet", {"structure": "vgg"}, (3, 64, 64), "structure must be one of"),
    ("dorefa_svhn", {"paper_model": "E"}, (3, 40, 40), "paper_model must be one of A, B, C, D"),
    ("dorefa_svhn", {"nonlinearity": "relu"}, (3, 40, 40), "nonlinearity must be one of"),
    ("dorefa_svhn", {}, (3, 32, 32), "data.image_size = 40"),
])
def test_builders_reject_bad_arguments(name, kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        MODELS[name](num_classes=10, in_shape=shape, quant=QuantConfig(), **kwargs)
