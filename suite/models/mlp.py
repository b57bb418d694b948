"""Multi-layer perceptrons: BinaryConnect's and BNN's permutation-invariant MNIST network."""

from __future__ import annotations

import math

import torch.nn as nn

from suite.nn import QuantConfig


def mlp(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None,
        hidden: list[int] = (1024, 1024, 1024), batchnorm: bool = True, bn_momentum: float = 0.1,
        bn_eps: float = 1e-4, output_batchnorm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """Flatten -> [Linear -> BatchNorm -> ReLU] x len(hidden) -> Linear (-> BatchNorm).

    BinaryConnect's MNIST network (authors' code mnist.py): 3 x 1024 ReLU units, BatchNorm after
    every dense layer including the output one (alpha = bn_momentum, epsilon = bn_eps), an L2-SVM
    output (squared hinge loss, chosen in the spec). Every Linear comes from `quant`, so which
    layers are binary is the variant's choice, not the model's.
    """
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a list of positive integers, got {hidden!r}")
    quant = quant or QuantConfig()
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for i, h in enumerate(hidden):
        layers.append(quant.linear(width, h, bias=True, position="first" if i == 0 else None))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h, eps=bn_eps, momentum=bn_momentum))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(quant.linear(width, num_classes, bias=True, position="last" if hidden else "first"))
    if batchnorm and output_batchnorm:
        layers.append(nn.BatchNorm1d(num_classes, eps=bn_eps, momentum=bn_momentum))
    return nn.Sequential(*layers)
