"""VGG for 32 x 32 images: the CIFAR-10 variant with BatchNorm (as kuangliu/pytorch-cifar's VGG)."""

from __future__ import annotations

import torch.nn as nn

from suite.nn import QuantConfig

# Output channels of each 3x3 convolution; "M" is a 2x2 max-pool.
CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None, depth: int = 16,
        width: float = 1.0, batchnorm: bool = True, bn_momentum: float = 0.1, bn_eps: float = 1e-5,
        hidden: list[int] = (), dropout: float = 0.0) -> nn.Sequential:
    """[Conv3x3(pad 1) -> BatchNorm -> ReLU] blocks with max-pools (``CONFIGS``), then one Linear.

    With depth 16 and width 1 this is kuangliu/pytorch-cifar's VGG16 (about 14.7 M parameters):
    convolutions with bias, BatchNorm2d after each, ReLU, five 2x2 max-pools taking 32 x 32 to
    1 x 1, and a single Linear(512 -> num_classes) classifier. `width` scales every convolution's
    channel count (at least 1 channel), for scaled-down runs. Every convolution and the Linear
    come from `quant`, so a variant decides which layers are quantized.

    `hidden` adds fully-connected layers before the classifier, each followed by ReLU and dropout:
    with hidden = [4096, 4096], dropout 0.5, batchnorm false and 224 x 224 inputs this is Simonyan
    and Zisserman's ImageNet VGG-16 (fc6 25088 x 4096, fc7 4096 x 4096, fc8 4096 x classes, 138 M
    weights). Their widths are not scaled by `width`.
    """
    name = f"vgg{depth}"
    if name not in CONFIGS:
        raise ValueError(f"depth must be one of {', '.join(c[3:] for c in CONFIGS)}, got {depth!r}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if len(in_shape) != 3:
        raise ValueError(f"vgg needs images (C x H x W), got input shape {tuple(in_shape)}")
    channels, height, wide = in_shape
    pools = CONFIGS[name].count("M")
    if height % 2**pools or wide % 2**pools:
        raise ValueError(f"vgg's {pools} max-pools need H and W divisible by {2**pools}, got {height} x {wide}")
    quant = quant or QuantConfig()
    layers: list[nn.Module] = []
    for item in CONFIGS[name]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(1, round(item * width))
        layers.append(quant.conv2d(channels, out, 3, padding=1, position="first" if not layers else None))
        if batchnorm:
            layers.append(nn.BatchNorm2d(out, eps=bn_eps, momentum=bn_momentum))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    features = channels * (height // 2**pools) * (wide // 2**pools)
    layers.append(nn.Flatten())
    for h in hidden:
        layers += [quant.linear(features, h), nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
        features = h
    layers.append(quant.linear(features, num_classes, position="last"))
    return nn.Sequential(*layers)
