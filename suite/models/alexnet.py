"""AlexNet with BatchNorm, as the XNOR-Net reimplementation trains it on ImageNet.

github jiecaoyu/XNOR-Net-PyTorch, ImageNet/networks/model_list/alexnet.py (README: XNOR top-1
44.87% / top-5 69.70%, float 57.1% / 80.2%), the XNOR-Net paper's AlexNet (96-256-384-384-256
convolutions, two 4096-unit dense layers) with its binary blocks:

    Conv(3 -> 96, 11x11, stride 4) -> BN -> ReLU -> MaxPool(3, 2)                 first layer, float
    B(96 -> 256, 5x5, pad 2) -> MaxPool(3, 2)
    B(256 -> 384, 3x3, pad 1)  B(384 -> 384, 3x3, pad 1)  B(384 -> 256, 3x3, pad 1) -> MaxPool(3, 2)
    B(256*6*6 -> 4096)  B(4096 -> 4096, dropout 0.5)
    BN(eps 1e-3) -> Dropout(0.5) -> Linear(4096 -> 1000)                          last layer, float

B is BN(affine) -> binarize -> [dropout] -> Conv or Linear -> ReLU (BatchNorm eps 1e-4, momentum
0.1); the binarization is the layer's input quantizer (the variant's), the weights' the weight
quantizer. The reimplementation feeds 227 x 227 crops to a first convolution without padding;
here the first convolution pads by 2 (torchvision's AlexNet), so that the 224 x 224 crops of
``data.image_size = 224`` give the same 55 x 55 maps and 6 x 6 x 256 features. An adaptive
average pool to 6 x 6 (identity at 224) lets smaller images run the same network (smoke runs;
at least 63 x 63). `width` scales the convolution channels and `hidden` is the dense layers'
units, for scaled-down runs.
"""

from __future__ import annotations

import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig

# (out channels, kernel, padding, max-pool after) of the four binary convolution blocks
CONV_BLOCKS = ((256, 5, 2, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True))
MIN_SIZE = 63  # the smallest image whose last max-pool still has a 3 x 3 input


def _spatial(size: int) -> int:
    """The feature map's side before the adaptive pool, for an input of side `size`."""
    s = (size + 2 * 2 - 11) // 4 + 1  # first convolution
    for _ in range(3):  # three max-pools (3, 2); the padded convolutions keep the size
        s = (s - 3) // 2 + 1 if s >= 3 else 0
    return s


def alexnet(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None, width: float = 1.0,
            hidden: int = 4096, dropout: float = 0.5, bn_eps: float = 1e-4, bn_momentum: float = 0.1) -> nn.Sequential:
    """The AlexNet above (about 61 M parameters at width 1 with 1000 classes)."""
    width = blocks.positive_width(width)
    hidden = blocks.positive_int("hidden", hidden)
    if len(in_shape) != 3 or _spatial(min(in_shape[1:])) < 1:
        raise ValueError(f"alexnet needs images (C x H x W) of at least {MIN_SIZE} x {MIN_SIZE}, got input shape "
                         f"{tuple(in_shape)}")
    if not 0 < bn_momentum <= 1 or not bn_eps > 0:
        raise ValueError(f"bn_momentum must be in (0, 1] and bn_eps positive, got {bn_momentum}, {bn_eps}")
    quant = quant or QuantConfig()
    bn = {"eps": bn_eps, "momentum": bn_momentum}
    channels = blocks.scaled(96, width)
    layers: list[nn.Module] = [quant.conv2d(in_shape[0], channels, 11, stride=4, padding=2, position="first"),
                               nn.BatchNorm2d(channels, **bn), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)]
    for out, k, pad, pool in CONV_BLOCKS:
        out = blocks.scaled(out, width)
        layers += [nn.BatchNorm2d(channels, **bn), quant.conv2d(channels, out, k, padding=pad), nn.ReLU(inplace=True)]
        layers += [nn.MaxPool2d(3, 2)] if pool else []
        channels = out
    layers += [nn.AdaptiveAvgPool2d(6), nn.Flatten()]
    features = channels * 36
    for units, p in ((hidden, 0.0), (hidden, dropout)):
        linear = quant.linear(features, units)
        layers += [nn.BatchNorm1d(features, **bn), *blocks.dropout_before(linear, p), linear, nn.ReLU(inplace=True)]
        features = units
    last = quant.linear(features, num_classes, position="last")
    layers += [nn.BatchNorm1d(features, eps=1e-3, momentum=bn_momentum), *blocks.dropout_before(last, dropout), last]
    return nn.Sequential(*layers)
