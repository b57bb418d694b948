"""Multi-layer perceptrons: BinaryConnect's and BNN's permutation-invariant MNIST network."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from suite.models import blocks
from suite.nn import QuantConfig


def mlp(*, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig | None = None,
        hidden: list[int] = (1024, 1024, 1024), batchnorm: bool = True, bn_momentum: float = 0.1,
        bn_eps: float = 1e-4, output_batchnorm: bool = True, dropout: float = 0.0, input_dropout: float = 0.0,
        activation: str = "relu", init: str = "torch") -> nn.Sequential:
    """Flatten -> [Linear -> BatchNorm -> ReLU] x len(hidden) -> Linear (-> BatchNorm).

    BinaryConnect's MNIST network (authors' code mnist.py): 3 x 1024 ReLU units, BatchNorm after
    every dense layer including the output one (alpha = bn_momentum, epsilon = bn_eps), an L2-SVM
    output (squared hinge loss, chosen in the spec). Every Linear comes from `quant`, so which
    layers are binary is the variant's choice, not the model's.

    BNN's MNIST network (BinaryNet Train-time/mnist.py): 3 x 4096 units, ``activation =
    "hardtanh"`` (or "identity") before the sign input quantizer of the next layer (its
    binary_tanh_unit), ``input_dropout = 0.2`` on the pixels and ``dropout = 0.5`` after each
    hidden layer; the dropout acts after the next layer's input quantizer, as BNN drops the
    binarized activations.

    init: "torch" (torch's default) or "glorot_uniform": weights from U(-sqrt(6 / (fan_in +
    fan_out)), +sqrt(...)) and zero biases, the Theano-era scripts' init (BinaryConnect @df2d7d9
    layer.py: ``high = sqrt(6. / (n_inputs + n_units))``); a variant's weight_init_range wins.
    """
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a list of positive integers, got {hidden!r}")
    blocks.activation(activation)  # a bad name fails before anything is built
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    quant = quant or QuantConfig()
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for i, h in enumerate(hidden):
        linear = quant.linear(width, h, bias=True, position="first" if i == 0 else None)
        layers += [*blocks.dropout_before(linear, dropout if i else input_dropout), linear]
        if batchnorm:
            layers.append(nn.BatchNorm1d(h, eps=bn_eps, momentum=bn_momentum))
        layers.append(blocks.activation(activation))
        width = h
    last = quant.linear(width, num_classes, bias=True, position="last" if hidden else "first")
    layers += [*blocks.dropout_before(last, dropout if hidden else input_dropout), last]
    if batchnorm and output_batchnorm:
        layers.append(nn.BatchNorm1d(num_classes, eps=bn_eps, momentum=bn_momentum))
    if INITS[init] is not None and quant.weight_init_range is None:
        for m in layers:
            if isinstance(m, nn.Linear):
                INITS[init](m)
    return nn.Sequential(*layers)


@torch.no_grad()
def _glorot_uniform(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    layer.bias.zero_()


INITS = {"torch": None, "glorot_uniform": _glorot_uniform}
