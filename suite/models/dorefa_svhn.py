"""DoReFa-Net's SVHN models A, B, C and D (Table 1 of arXiv 1606.06160).

Model A is the network of the authors' tensorpack script for the paper's SVHN results
(github tensorpack/tensorpack, examples/DoReFa-Net/svhn-digit-dorefa.py), on 40 x 40 inputs
(the script resizes SVHN to 40 x 40; Table 1's caption set-up; ``data.image_size = 40``):

    conv0  48 5x5 valid, bias  -> maxpool 2 (same) -> act                     (first layer, float)
    conv1  64 3x3 same         -> BN -> act
    conv2  64 3x3 same         -> BN -> maxpool 2 (same) -> act
    conv3 128 3x3 valid        -> BN -> act
    conv4 128 3x3 same         -> BN -> act
    conv5 128 3x3 valid        -> BN -> act -> dropout 0.5
    conv6 512 5x5 valid        -> BN -> cabs
    fc1    10, bias                                                           (last layer, float)

Convolutions 1-6 have no bias (BatchNorm follows); BatchNorm decay 0.9 (momentum 0.1), epsilon
1e-4. act(x) = f_a(cabs(x)) with cabs(x) = min(1, |x|): the cabs is this model's nonlinearity
(`CAbs`), f_a is the next layer's input quantizer (``dorefa_activation(bits=A)``), and the
dropout acts after it. The gradient quantizer f_g follows every convolution but conv0 (the
script applies ``fg`` after conv1..conv6): a variant's ``gradient_quantizer`` on all non-float
layers, with ``float_layers = ["first", "last"]``.

Models B, C and D: "Model B, C, D is derived from Model A by reducing the number of channels for
all seven convolutional layers by 50%, 75%, 87.5%, respectively" (arXiv 1606.06160v3, Section
3.1, p. 8; Shuchang Zhou's slides "Neural Network Approximation: Low rank, Sparsity, and
Quantization", Megvii, Mar. 2019, confirm "A has two times as many channels as B. B has two times
as many channels as C."), so width multipliers 1, 0.5, 0.25 and 0.125 on conv0..conv6.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig

# conv0..conv6 of model A: (channels, kernel, padding, max-pool after, BatchNorm)
LAYERS = ((48, 5, 0, True, False), (64, 3, 1, False, True), (64, 3, 1, True, True), (128, 3, 0, False, True),
          (128, 3, 1, False, True), (128, 3, 0, False, True), (512, 5, 0, False, True))
PAPER_MODELS = {"A": 1.0, "B": 0.5, "C": 0.25, "D": 0.125}


class CAbs(nn.Module):
    """cabs(x) = min(1, |x|), tensorpack's bounded activation before DoReFa's f_a."""

    def forward(self, x):
        return torch.clamp(x.abs(), max=1.0)


def _spatial(size: int) -> int:
    """conv6's output side for an input of side `size` (valid convolutions shrink, same pools round up)."""
    for _, k, pad, pool, _ in LAYERS:
        size = size + 2 * pad - k + 1
        if size < 1:
            return 0
        size = math.ceil(size / 2) if pool else size
    return size


def dorefa_svhn(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None,
                paper_model: str = "A", dropout: float = 0.5, bn_momentum: float = 0.1,
                bn_eps: float = 1e-4) -> nn.Sequential:
    """Model `paper_model` ("A".."D") of DoReFa-Net's Table 1 (the network above)."""
    if paper_model not in PAPER_MODELS:
        raise ValueError(f"paper_model must be one of {', '.join(PAPER_MODELS)}, got {paper_model!r}")
    if len(in_shape) != 3 or _spatial(min(in_shape[1:])) < 1:
        raise ValueError(f"dorefa_svhn needs images (C x H x W) of at least 37 x 37 (the paper's are 40 x 40: set "
                         f"data.image_size = 40), got input shape {tuple(in_shape)}")
    if not 0 < bn_momentum <= 1 or not bn_eps > 0:
        raise ValueError(f"bn_momentum must be in (0, 1] and bn_eps positive, got {bn_momentum}, {bn_eps}")
    width = PAPER_MODELS[paper_model]
    quant = quant or QuantConfig()
    channels, layers = in_shape[0], []
    for i, (c, k, pad, pool, bn) in enumerate(LAYERS):
        out = blocks.scaled(c, width)
        conv = quant.conv2d(channels, out, k, padding=pad, bias=not bn, position="first" if i == 0 else None)
        if i == len(LAYERS) - 1:
            layers += blocks.dropout_before(conv, dropout)  # after conv5's act, its quantizer included
        layers += [conv, *([nn.BatchNorm2d(out, eps=bn_eps, momentum=bn_momentum)] if bn else []),
                   *([nn.MaxPool2d(2, ceil_mode=True)] if pool else []), CAbs()]
        channels = out
    side_h, side_w = _spatial(in_shape[1]), _spatial(in_shape[2])
    layers += [nn.Flatten(), quant.linear(channels * side_h * side_w, num_classes, position="last")]
    return nn.Sequential(*layers)
