"""What a binary or low-bit layer costs on this CPU, per layer shape and batch: the float layer, the
emulated quantized layer (float32 arithmetic on +-1 values, what every table of the suite measured
so far), and the packed layers (suite/nn/packed.py: binary XNOR-popcount; DoReFa W1A2, W1A4, W2A2
bit-serial): time per forward pass (evaluation, no gradient, weights packed once as deployed),
the ratio to float, binary operations per second, weight bytes; beside them XNOR-Net's theoretical
figures (Rastegari et al. 2016, Sec. 4.1 and Fig. 4: ~58x fewer operations, ~32x less memory).

`layer_costs(...)` measures one shape; `SHAPES` are the paper models' layers (the MNIST MLPs, the
CIFAR-10 ConvNet and NIN, AlexNet); the `lowbit-cost` study (suite/studies/lowbit_cost.py) times
them (interleaved rounds) and makes the table. Times are minima over the rounds, ratios within one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from suite.nn import QuantConv2d, QuantLinear
from suite.quant import build_quantizer

XNOR_NET_SPEEDUP = 58  # Rastegari et al. 2016, Sec. 4.1: binary convolutions "~58x faster" (theoretical)
XNOR_NET_MEMORY = 32  # "~32x memory saving" (1 bit per 32-bit weight)

# variant -> (weight quantizer, input quantizer)
VARIANTS = {
    "binary": ("binaryconnect", "bnn_sign"),
    "dorefa_w1a2": ("dorefa_weight(bits=1)", "dorefa_activation(bits=2)"),
    "dorefa_w1a4": ("dorefa_weight(bits=1)", "dorefa_activation(bits=4)"),
    "dorefa_w2a2": ("dorefa_weight(bits=2)", "dorefa_activation(bits=2)"),
}
BITS = {"binary": (1, 1), "dorefa_w1a2": (1, 2), "dorefa_w1a4": (1, 4), "dorefa_w2a2": (2, 2)}  # (weight, input)


@dataclass(frozen=True)
class Shape:
    """A layer: linear (in, out) or convolution (in, out, kernel, padding, input size), and the
    paper's training batch for it."""

    model: str
    name: str
    kind: str  # linear | conv
    cin: int
    cout: int
    train_batch: int
    kernel: int = 1
    padding: int = 0
    size: int = 1

    def layer(self, **quant) -> nn.Module:
        if self.kind == "linear":
            return QuantLinear(self.cin, self.cout, **quant)
        return QuantConv2d(self.cin, self.cout, self.kernel, padding=self.padding, **quant)

    def input(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.cin) if self.kind == "linear" else torch.randn(batch, self.cin, self.size,
                                                                                     self.size)

    def macs(self, batch: int) -> int:
        spatial = 1 if self.kind == "linear" else (self.size + 2 * self.padding - self.kernel + 1) ** 2
        return batch * self.cout * self.cin * self.kernel**2 * spatial


SHAPES = [
    Shape("MNIST MLP (BinaryConnect, BNN)", "fc1 784x1024", "linear", 784, 1024, 200),
    Shape("MNIST MLP (BinaryConnect, BNN)", "fc 1024x1024", "linear", 1024, 1024, 200),
    Shape("MNIST MLP (BNN, 4096 units)", "fc 4096x4096", "linear", 4096, 4096, 100),
    Shape("CIFAR-10 ConvNet", "conv2 128-128 3x3 32x32", "conv", 128, 128, 50, 3, 1, 32),
    Shape("CIFAR-10 ConvNet", "conv4 256-256 3x3 16x16", "conv", 256, 256, 50, 3, 1, 16),
    Shape("CIFAR-10 ConvNet", "conv6 512-512 3x3 8x8", "conv", 512, 512, 50, 3, 1, 8),
    Shape("NIN (CIFAR-10)", "192-160 1x1 32x32", "conv", 192, 160, 128, 1, 0, 32),
    Shape("NIN (CIFAR-10)", "96-192 5x5 16x16", "conv", 96, 192, 128, 5, 2, 16),
    Shape("NIN (CIFAR-10)", "192-192 3x3 8x8", "conv", 192, 192, 128, 3, 1, 8),
    Shape("AlexNet (XNOR-Net)", "conv2 96-256 5x5 27x27", "conv", 96, 256, 256, 5, 2, 27),
    Shape("AlexNet (XNOR-Net)", "conv3 256-384 3x3 13x13", "conv", 256, 384, 256, 3, 1, 13),
    Shape("AlexNet (XNOR-Net)", "conv4 384-384 3x3 13x13", "conv", 384, 384, 256, 3, 1, 13),
    Shape("AlexNet (XNOR-Net)", "conv5 384-256 3x3 13x13", "conv", 384, 256, 256, 3, 1, 13),
    Shape("AlexNet (XNOR-Net)", "fc6 9216x4096", "linear", 9216, 4096, 256),
    Shape("AlexNet (XNOR-Net)", "fc7 4096x4096", "linear", 4096, 4096, 256),
]


def _quant(variant: str, arithmetic: str) -> dict:
    wq, iq = VARIANTS[variant]
    return dict(weight_quantizer=build_quantizer(wq, "weight"), input_quantizer=build_quantizer(iq, "input"),
                arithmetic=arithmetic)


def _forward(layer: nn.Module, x: torch.Tensor):
    layer.eval()

    def run():
        with torch.no_grad():
            return layer(x)

    return run


def packed_weight_bytes(shape: Shape, weight_bits: int) -> int:
    """Bytes of the packed weights: rows of 64-bit words (a convolution: per tap), per bit plane,
    rows padded to panels of 32 for a linear layer; plus one float scale per output channel."""
    words = -(-shape.cin // 64) * shape.kernel**2
    rows = -(-shape.cout // 32) * 32 if shape.kind == "linear" else shape.cout
    return 8 * words * rows * weight_bits + 4 * shape.cout


def layer_costs(shape: Shape, batch: int, time_candidates, variants=tuple(VARIANTS)) -> list[dict]:
    """One row per candidate: float, emulated binary, and the packed variants, for `shape` at `batch`.
    `time_candidates({name: fn})` returns {name: [seconds per call, ...]} (the candidates timed
    interleaved in one process)."""
    torch.manual_seed(0)
    x = shape.input(batch)
    fns = {"float": _forward(shape.layer(), x), "emulated binary": _forward(shape.layer(**_quant("binary",
                                                                                                "emulated")), x)}
    layers = {}
    for v in variants:
        layers[v] = shape.layer(**_quant(v, "packed"))
        fns[f"packed {v}"] = _forward(layers[v], x)
    samples = time_candidates(fns)
    best = {k: min(s) for k, s in samples.items()}
    macs, float_bytes = shape.macs(batch), 4 * shape.cout * shape.cin * shape.kernel**2
    rows = []
    for k, t in best.items():
        variant = k.removeprefix("packed ").removeprefix("emulated ")
        used = getattr(layers.get(variant), "arithmetic_used", None) if k.startswith("packed") else None
        w_bits = BITS[variant][0] if variant in BITS else 32
        nbytes = float_bytes if k in ("float", "emulated binary") else packed_weight_bytes(shape, w_bits)
        rows.append({"model": shape.model, "layer": shape.name, "batch": batch, "candidate": k, "ms": 1e3 * t,
                     "float_over_this": best["float"] / t, "gops_per_s": 2 * macs / t / 1e9,
                     "weight_bytes": nbytes, "float_bytes_over_this": float_bytes / nbytes,
                     "arithmetic": used or ("float" if k == "float" else "emulated")})
    return rows
