"""The KConv table's maxout CNN (suite/models/maxout_cnn.py): shapes, and the Kronecker layers it builds."""

import pytest
import torch

from suite.compress.kronecker import KroneckerConv2d
from suite.models import MODELS


def test_dense_network_shapes_and_weights():
    net = MODELS["maxout_cnn"](num_classes=10, in_shape=(3, 24, 24))
    assert net(torch.randn(2, 3, 24, 24)).shape == (2, 10)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    # 96 x 3 x 9 x 9, 128 x 48 x 9 x 9, 512 x 64 x 8 x 8, 40 x 128 x 1 x 1 (maxout 2, 2, 4, 4)
    assert [tuple(c.weight.shape) for c in convs] == [(96, 3, 9, 9), (128, 48, 9, 9), (512, 64, 8, 8), (40, 128, 1, 1)]


def test_kconv_a_replaces_conv2_and_conv3():
    net = MODELS["maxout_cnn"](num_classes=10, in_shape=(3, 24, 24),
                               kconv={"conv2": [1, 128, 24, 9, 1], "conv3": [1, 256, 64, 8, 1]})
    kron = [m for m in net if isinstance(m, KroneckerConv2d)]
    assert [k.shape.b_shape for k in kron] == [(1, 2, 1, 9), (2, 1, 1, 8)]
    assert net(torch.randn(2, 3, 24, 24)).shape == (2, 10)


def test_wrong_input_size_and_layer_names_are_refused():
    with pytest.raises(ValueError, match="data.image_size = 24"):
        MODELS["maxout_cnn"](num_classes=10, in_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="unknown layers"):
        MODELS["maxout_cnn"](num_classes=10, in_shape=(3, 24, 24), kconv={"conv5": [1, 1, 1, 1, 1]})
