"""Quantizers: small named nn.Modules passed to quantized layers (larq's idea, PyTorch's idiom).

A quantizer maps a tensor to its quantized value in `forward` and defines the gradient that flows
back (straight-through estimators) and, for forward mode, the tangent that flows forward. It is
referenced in a spec by name with keyword arguments, e.g. ``"binaryconnect(stochastic=True)"``.

To add one: write the module in the file of its family, decorate its class with ``@register``,
quote its paper equation in the docstring, and add a test that computes a small case by hand.
Attribute ``bits`` is the weight precision at inference (used by the bit accounting).
"""

from suite.quant.binary import BinaryConnect, Identity, sign_pm1
from suite.quant.registry import QUANTIZERS, build_quantizer, parse_quantizer, register

__all__ = ["QUANTIZERS", "build_quantizer", "parse_quantizer", "register",
           "BinaryConnect", "Identity", "sign_pm1"]
