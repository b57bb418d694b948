"""BinaryConnect's paper-era MNIST script (MatthieuCourbariaux/BinaryConnect @df2d7d9 mnist_mlp.py,
layer.py): binary values +-W0 per layer, Glorot-uniform init, pylearn2's centred pixels."""

import math

import pytest
import torch

from suite.data import DATASETS, load_splits, pixel_mean, preprocess
from suite.models import MODELS
from suite.nn import QuantConfig
from suite.quant import build_quantizer
from suite.spec.schema import DataSpec

# fan_in 2 + fan_out 1: W0 = sqrt(1.5 / 3) = sqrt(0.5)
W0 = math.sqrt(0.5)
PAPER_ERA = QuantConfig(weight_quantizer='binaryconnect(scale="glorot")', clip_weights=1.0, weight_init_range=2.0)


def test_binary_values_are_plus_minus_w0_and_the_gradient_passes_straight_through():
    layer = PAPER_ERA.linear(2, 1)
    assert layer.weight_quantizer.unit == pytest.approx(W0) and layer.clip_value == pytest.approx(W0)
    w = torch.tensor([[0.3, -0.01]], requires_grad=True)
    wb = layer.weight_quantizer(w)
    assert wb[0].tolist() == pytest.approx([W0, -W0])
    wb.backward(torch.tensor([[2.0, -3.0]]))
    assert w.grad.tolist() == [[2.0, -3.0]]


def test_init_is_glorot_uniform_two_w0_and_clip_is_w0():
    torch.manual_seed(0)
    layer = PAPER_ERA.linear(784, 1024)
    w0 = math.sqrt(1.5 / (784 + 1024))
    high = math.sqrt(6.0 / (784 + 1024))  # the script's init bound = 2 W0
    assert high == pytest.approx(2 * w0)
    assert layer.weight.abs().max().item() <= high and layer.weight.abs().max().item() > 0.99 * high
    assert layer.clip_value == pytest.approx(w0)


def test_stochastic_probability_is_hard_sigmoid_of_w_over_w0():
    q = build_quantizer('binaryconnect(stochastic=true, scale="glorot")', "weight")
    q.for_layer(2, 1)
    torch.manual_seed(0)
    w = torch.tensor([W0 / 2, -W0 / 2, W0, -W0]).repeat(20000, 1)  # p(+W0) = 0.75, 0.25, 1, 0
    out = q(w)
    assert out.unique().tolist() == pytest.approx([-W0, W0])
    assert (out > 0).float().mean(0).tolist() == pytest.approx([0.75, 0.25, 1.0, 0.0], abs=0.015)
    q.eval()
    assert torch.equal(q(w), w)  # tested with the real-valued weights, as the script does


def test_unit_scale_keeps_plus_minus_one():
    layer = QuantConfig(weight_quantizer="binaryconnect", clip_weights=1.0).linear(2, 1)
    assert layer.weight_quantizer.unit == 1.0 and layer.clip_value == 1.0
    assert layer.weight_quantizer(torch.tensor([0.2, -0.2])).tolist() == [1.0, -1.0]
    with pytest.raises(Exception, match="scale must be"):
        build_quantizer("binaryconnect(scale=-1)", "weight")


def test_mlp_glorot_uniform_init_for_the_float_network():
    torch.manual_seed(0)
    model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), hidden=[1024], init="glorot_uniform")
    first, last = [m for m in model if isinstance(m, torch.nn.Linear)]
    for layer, bound in ((first, math.sqrt(6 / (784 + 1024))), (last, math.sqrt(6 / (1024 + 10)))):
        assert 0.99 * bound < layer.weight.abs().max().item() <= bound and layer.bias.abs().sum().item() == 0


def test_center_subtracts_each_files_mean_image():
    # two 1 x 2 images: [0, 255] and [255, 255] -> mean image [0.5, 1.0]
    images = torch.tensor([[[0, 255]], [[255, 255]]], dtype=torch.uint8)
    mean = pixel_mean(images)
    assert mean.tolist() == [[0.5, 1.0]]
    assert preprocess(images, "center", mean).tolist() == [[[[-0.5, 0.0]]], [[[0.5, 0.0]]]]


def test_center_on_mnist_uses_the_whole_files_means():
    spec = DataSpec(dataset="mnist", train_size=1000, val_size=200, test_size=300, preprocessing="center",
                    source="embedded")
    splits = load_splits(spec, download=False)
    arrays = DATASETS["mnist"].read_stand_in()[0]
    train_mean, test_mean = pixel_mean(arrays["train_images"]), pixel_mean(arrays["test_images"])
    assert torch.allclose(splits.train_x[5, 0], arrays["train_images"][5].float() / 255 - train_mean, atol=1e-6)
    assert torch.allclose(splits.test_x[7, 0], arrays["test_images"][7].float() / 255 - test_mean, atol=1e-6)
    assert "12000 training images" in splits.info["centering"]
