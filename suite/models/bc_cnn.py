"""BinaryConnect's and BNN's ConvNet for CIFAR-10 and SVHN.

(2 x 128C3)-MP2-(2 x 256C3)-MP2-(2 x 512C3)-MP2-(2 x 1024FC)-10, as the authors' Theano/Lasagne
code builds it (github MatthieuCourbariaux/BinaryConnect cifar10.py and svhn.py; BinaryNet
Train-time/cifar10.py and svhn.py): every 3 x 3 convolution has padding 1 and a bias, and is
followed by [2 x 2 max-pool], then BatchNorm, then the nonlinearity (conv -> MP -> BN -> act);
each dense layer by BatchNorm and the nonlinearity, the 10-unit output layer by BatchNorm alone
(an L2-SVM output, trained with the squared hinge loss chosen in the spec). BatchNorm's moving
average factor alpha = 0.1 and epsilon = 1e-4 (the code's values).

The SVHN network is the same with half the convolution channels (64-64-128-128-256-256, still
1024-unit dense layers: BinaryConnect svhn.py, BinaryNet svhn.py): ``width = 0.5``.

Nonlinearity: BinaryConnect uses ReLU. BNN binarizes the activations with ``binary_tanh_unit``
(sign forward, hardtanh's gradient); here that sign is the next layer's input quantizer (a
variant's ``input_quantizer = "bnn_sign"``), so BNN takes ``activation = "hardtanh"`` (or
"identity": the same forward values and gradient) before it; ReLU would make sign() constant.
"""

from __future__ import annotations

import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig

CONV_CHANNELS = (128, 128, 256, 256, 512, 512)  # a 2 x 2 max-pool after every second convolution


def bc_cnn(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None, width: float = 1.0,
           hidden: int = 1024, activation: str = "relu", bn_momentum: float = 0.1,
           bn_eps: float = 1e-4) -> nn.Sequential:
    """The ConvNet above; `width` scales the convolution channels (0.5: the SVHN network; smaller
    for scaled-down runs), `hidden` is the units of each of the two dense layers. Every
    convolution and dense layer comes from `quant` (the first convolution tagged "first", the
    output layer "last")."""
    width = blocks.positive_width(width)
    hidden = blocks.positive_int("hidden", hidden)
    blocks.activation(activation)  # a bad name fails before anything is built
    if len(in_shape) != 3:
        raise ValueError(f"bc_cnn needs images (C x H x W), got input shape {tuple(in_shape)}")
    channels, height, wide = in_shape
    if height % 8 or wide % 8:
        raise ValueError(f"bc_cnn's three 2 x 2 max-pools need H and W divisible by 8, got {height} x {wide}")
    if not 0 < bn_momentum <= 1 or not bn_eps > 0:
        raise ValueError(f"bn_momentum must be in (0, 1] and bn_eps positive, got {bn_momentum}, {bn_eps}")
    quant = quant or QuantConfig()
    layers: list[nn.Module] = []
    for i, c in enumerate(CONV_CHANNELS):
        out = blocks.scaled(c, width)
        layers.append(quant.conv2d(channels, out, 3, padding=1, position="first" if i == 0 else None))
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(out, eps=bn_eps, momentum=bn_momentum), blocks.activation(activation)]
        channels = out
    features = channels * (height // 8) * (wide // 8)
    layers.append(nn.Flatten())
    for units in (hidden, hidden):
        layers += [quant.linear(features, units), nn.BatchNorm1d(units, eps=bn_eps, momentum=bn_momentum),
                   blocks.activation(activation)]
        features = units
    layers += [quant.linear(features, num_classes, position="last"),
               nn.BatchNorm1d(num_classes, eps=bn_eps, momentum=bn_momentum)]
    return nn.Sequential(*layers)
