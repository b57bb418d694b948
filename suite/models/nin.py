"""Network-in-Network for CIFAR-10 as the popular XNOR-Net reimplementation builds it.

github jiecaoyu/XNOR-Net-PyTorch, CIFAR_10/models/nin.py (its README: XNOR 86.28%, float 89.67%):

    Conv(3 -> 192, 5x5, pad 2) -> BN(affine=False) -> ReLU                       first layer, float
    B(192 -> 160, 1x1)  B(160 -> 96, 1x1)  MaxPool(3, 2, pad 1)
    B(96 -> 192, 5x5, pad 2, dropout 0.5)  B(192 -> 192, 1x1)  B(192 -> 192, 1x1)  AvgPool(3, 2, pad 1)
    B(192 -> 192, 3x3, pad 1, dropout 0.5)  B(192 -> 192, 1x1)
    BN(affine=False) -> Conv(192 -> 10, 1x1) -> ReLU -> AvgPool(8)                last layer, float

where B is the XNOR block BN(affine) -> binarize -> [dropout] -> Conv -> ReLU (BatchNorm eps 1e-4,
momentum 0.1; the affine BatchNorms start at weight 1, and their weights are clamped to >= 0.01
before every forward pass, as the reimplementation's Net.forward does). The binarization is the
block's convolution's input quantizer (the variant's: sign for XNOR, none for the float
network); its weights are binarized by the weight quantizer (per-output-channel alpha, the
reimplementation's BinOp). Convolutions have biases. The first convolution is tagged "first"
and the 192 -> 10 one "last" (the variant's float_layers keeps them float).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig

# (out channels, kernel, padding, dropout) of each XNOR block; "M" max-pool, "A" average pool (3, 2, pad 1)
BLOCKS = ((160, 1, 0, 0.0), (96, 1, 0, 0.0), "M", (192, 5, 2, 0.5), (192, 1, 0, 0.0), (192, 1, 0, 0.0), "A",
          (192, 3, 1, 0.5), (192, 1, 0, 0.0))


class NIN(nn.Sequential):
    """nn.Sequential that clamps its affine BatchNorm weights to >= `bn_weight_min` before each
    forward pass (jiecaoyu's Net.forward; keeps the scale in front of sign() positive)."""

    def __init__(self, *layers: nn.Module, bn_weight_min: float):
        super().__init__(*layers)
        self.bn_weight_min = bn_weight_min

    def forward(self, x):
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
                    m.weight.clamp_(min=self.bn_weight_min)
        return super().forward(x)


def nin(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None, width: float = 1.0,
        dropout: float = 0.5, bn_eps: float = 1e-4, bn_momentum: float = 0.1, bn_weight_min: float = 0.01,
        init_std: float | None = None) -> NIN:
    """The NIN above; `width` scales every channel count but the output's (scaled-down runs),
    `dropout` is the two dropout blocks' rate (applied after the binarization). `init_std`: every
    convolution's weights drawn from N(0, init_std^2) and its bias zeroed (the reimplementation's
    main.py: ``m.weight.data.normal_(0, 0.05); m.bias.data.zero_()``); None keeps torch's default."""
    width = blocks.positive_width(width)
    if len(in_shape) != 3 or in_shape[1] < 4 or in_shape[2] < 4:
        raise ValueError(f"nin needs images (C x H x W) of at least 4 x 4, got input shape {tuple(in_shape)}")
    if not 0 < bn_momentum <= 1 or not bn_eps > 0 or not bn_weight_min >= 0:
        raise ValueError(f"bn_momentum must be in (0, 1], bn_eps positive and bn_weight_min >= 0, got "
                         f"{bn_momentum}, {bn_eps}, {bn_weight_min}")
    if init_std is not None and not (isinstance(init_std, (int, float)) and init_std > 0):
        raise ValueError(f"init_std must be a positive number or unset, got {init_std!r}")
    quant = quant or QuantConfig()
    channels = blocks.scaled(192, width)
    layers: list[nn.Module] = [quant.conv2d(in_shape[0], channels, 5, padding=2, position="first"),
                               nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum, affine=False),
                               nn.ReLU(inplace=True)]
    for item in BLOCKS:
        if item in ("M", "A"):
            pool = nn.MaxPool2d if item == "M" else nn.AvgPool2d
            layers.append(pool(kernel_size=3, stride=2, padding=1))
            continue
        out, k, pad, p = item
        out = blocks.scaled(out, width)
        conv = quant.conv2d(channels, out, k, padding=pad)
        layers += [nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum),
                   *blocks.dropout_before(conv, p and dropout), conv, nn.ReLU(inplace=True)]
        channels = out
    layers += [nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum, affine=False),
               quant.conv2d(channels, num_classes, 1, position="last"), nn.ReLU(inplace=True),
               nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # AvgPool(8) on CIFAR-10's 8 x 8 maps
    model = NIN(*layers, bn_weight_min=bn_weight_min)
    if init_std is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.normal_(0.0, init_std)
                    m.bias.zero_()
    return model
