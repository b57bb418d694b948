"""AlexNet with BatchNorm for XNOR-Net on ImageNet, in three block structures (`structure`):

``allenai_xnor`` -- the XNOR-Net authors' network for Table 1's XNOR-Net row (github allenai/XNOR-Net
@4006d59, models/alexnetxnor.lua), the paper's block (Sec. 3.2, Fig. 3): BatchNorm without affine
parameters -> binary activation -> convolution [-> max-pool], and no ReLU after the binary layers:

    Conv(3 -> 96, 11x11, stride 4, pad 2) -> BN(eps 1e-5) -> ReLU -> MaxPool(3, 2)   first layer, float
    B(96 -> 256, 5x5, pad 2) -> MaxPool(3, 2)
    B(256 -> 384, 3x3, pad 1)  B(384 -> 384, 3x3, pad 1)  B(384 -> 256, 3x3, pad 1) -> MaxPool(3, 2)
    B(256 -> 4096, 6x6)  B(4096 -> 4096, 1x1)                  (the dense layers, as convolutions)
    BN(4096, eps 1e-3) -> ReLU -> Conv(4096 -> 1000, 1x1)                              last layer, float

with B = BN(affine=False, eps 1e-4) -> binarize (the layer's input quantizer) -> Conv; no dropout.

``allenai`` -- the authors' network for the BWN row (models/alexnet.lua, trained with
-binaryWeight): blocks Conv -> BN(affine, eps 1e-3) -> ReLU (a full-precision block order; the
weights of all but the first and last convolutions binarized), SpatialDropout(`dropout`, whole
feature maps: nn.Dropout2d) before the 6x6 and the 1x1 dense convolutions, then the last Conv(4096
-> 1000, 1x1). The allenai README trains BWN with ``-dropout 0.1``.

``jiecaoyu`` -- the popular PyTorch reimplementation's (github jiecaoyu/XNOR-Net-PyTorch, ImageNet/
networks/model_list/alexnet.py; README: XNOR top-1 44.87% / top-5 69.70%):

    Conv(3 -> 96, 11x11, stride 4) -> BN -> ReLU -> MaxPool(3, 2)                 first layer, float
    J(96 -> 256, 5x5, pad 2) -> MaxPool(3, 2)
    J(256 -> 384, 3x3, pad 1)  J(384 -> 384, 3x3, pad 1)  J(384 -> 256, 3x3, pad 1) -> MaxPool(3, 2)
    J(256*6*6 -> 4096)  J(4096 -> 4096, dropout 0.5)              (dense layers, nn.Linear)
    BN(eps 1e-3) -> Dropout(0.5) -> Linear(4096 -> 1000)                          last layer, float

with J = BN(affine) -> binarize -> [dropout] -> Conv or Linear -> ReLU (BatchNorm eps 1e-4,
momentum 0.1). The reimplementation feeds 227 x 227 crops to a first convolution without
padding; here it pads by 2 (as allenai's and torchvision's), so that 224 x 224 crops give the
same 55 x 55 maps and 6 x 6 x 256 features.

In every structure the binarization is the layer's input quantizer (the variant's) and the
weights' the weight quantizer; the first convolution is tagged "first" and the classifier "last".
An adaptive average pool to 6 x 6 (identity at 224) lets smaller images run the same network
(smoke runs; at least 63 x 63). `width` scales the convolution channels and `hidden` is the dense
layers' units, for scaled-down runs.
"""

from __future__ import annotations

import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig

# (out channels, kernel, padding, max-pool after) of the four convolution blocks after the first
CONV_BLOCKS = ((256, 5, 2, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True))
MIN_SIZE = 63  # the smallest image whose last max-pool still has a 3 x 3 input
STRUCTURES = ("jiecaoyu", "allenai_xnor", "allenai")


def _spatial(size: int) -> int:
    """The feature map's side before the adaptive pool, for an input of side `size`."""
    s = (size + 2 * 2 - 11) // 4 + 1  # first convolution
    for _ in range(3):  # three max-pools (3, 2); the padded convolutions keep the size
        s = (s - 3) // 2 + 1 if s >= 3 else 0
    return s


def _first(quant, in_channels, channels, bn: nn.Module) -> list[nn.Module]:
    return [quant.conv2d(in_channels, channels, 11, stride=4, padding=2, position="first"), bn,
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)]


def _allenai_xnor(quant, in_channels, num_classes, width, hidden, dropout, bn_momentum, bn_eps) -> list[nn.Module]:
    """models/alexnetxnor.lua: BN(no affine) -> binarize -> conv [-> pool]; no ReLU, no dropout."""
    if dropout:
        raise ValueError(f"structure 'allenai_xnor' has no dropout layer (models/alexnetxnor.lua): set dropout = 0, "
                         f"got {dropout}")

    def bn(c, eps):
        return nn.BatchNorm2d(c, eps=eps, momentum=bn_momentum, affine=False)

    channels = blocks.scaled(96, width)
    layers = _first(quant, in_channels, channels, bn(channels, 1e-5))
    for out, k, pad, pool in CONV_BLOCKS:
        out = blocks.scaled(out, width)
        layers += [bn(channels, 1e-4), quant.conv2d(channels, out, k, padding=pad)]
        layers += [nn.MaxPool2d(3, 2)] if pool else []
        channels = out
    layers += [nn.AdaptiveAvgPool2d(6)]
    for k in (6, 1):  # the dense layers, as 6x6 and 1x1 convolutions
        layers += [bn(channels, 1e-4), quant.conv2d(channels, hidden, k)]
        channels = hidden
    layers += [bn(channels, 1e-3), nn.ReLU(inplace=True),
               quant.conv2d(channels, num_classes, 1, position="last"), nn.Flatten()]
    return layers


def _allenai(quant, in_channels, num_classes, width, hidden, dropout, bn_momentum, bn_eps) -> list[nn.Module]:
    """models/alexnet.lua: conv -> BN(affine, eps 1e-3) -> ReLU blocks, SpatialDropout before the
    dense convolutions."""

    def block(c_in, c_out, k, **kwargs):
        return [quant.conv2d(c_in, c_out, k, **kwargs), nn.BatchNorm2d(c_out, eps=1e-3, momentum=bn_momentum),
                nn.ReLU(inplace=True)]

    channels = blocks.scaled(96, width)
    layers = block(in_channels, channels, 11, stride=4, padding=2, position="first") + [nn.MaxPool2d(3, 2)]
    for out, k, pad, pool in CONV_BLOCKS:
        out = blocks.scaled(out, width)
        layers += block(channels, out, k, padding=pad) + ([nn.MaxPool2d(3, 2)] if pool else [])
        channels = out
    layers += [nn.AdaptiveAvgPool2d(6)]
    for k in (6, 1):
        layers += [nn.Dropout2d(dropout)] if dropout else []
        layers += block(channels, hidden, k)
        channels = hidden
    layers += [quant.conv2d(channels, num_classes, 1, position="last"), nn.Flatten()]
    return layers


def _jiecaoyu(quant, in_channels, num_classes, width, hidden, dropout, bn_momentum, bn_eps) -> list[nn.Module]:
    """XNOR-Net-PyTorch's AlexNet: BN(affine) -> binarize -> [dropout] -> conv/linear -> ReLU."""
    bn = {"eps": 1e-4 if bn_eps is None else bn_eps, "momentum": bn_momentum}
    channels = blocks.scaled(96, width)
    layers = _first(quant, in_channels, channels, nn.BatchNorm2d(channels, **bn))
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
    return layers


_BUILDERS = {"jiecaoyu": _jiecaoyu, "allenai_xnor": _allenai_xnor, "allenai": _allenai}


def alexnet(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None, width: float = 1.0,
            hidden: int = 4096, dropout: float = 0.5, bn_eps: float | None = None, bn_momentum: float = 0.1,
            structure: str = "jiecaoyu") -> nn.Sequential:
    """The AlexNet above in `structure` (about 61 M parameters at width 1 with 1000 classes).
    `bn_eps` sets the jiecaoyu structure's block BatchNorms (default 1e-4); the allenai structures
    keep the authors' per-layer epsilons."""
    if structure not in _BUILDERS:
        raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    width = blocks.positive_width(width)
    hidden = blocks.positive_int("hidden", hidden)
    if len(in_shape) != 3 or _spatial(min(in_shape[1:])) < 1:
        raise ValueError(f"alexnet needs images (C x H x W) of at least {MIN_SIZE} x {MIN_SIZE}, got input shape "
                         f"{tuple(in_shape)}")
    if not 0 < bn_momentum <= 1 or (bn_eps is not None and not bn_eps > 0):
        raise ValueError(f"bn_momentum must be in (0, 1] and bn_eps positive, got {bn_momentum}, {bn_eps}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return nn.Sequential(*_BUILDERS[structure](quant or QuantConfig(), in_shape[0], num_classes, width, hidden,
                                               dropout, bn_momentum, bn_eps))
