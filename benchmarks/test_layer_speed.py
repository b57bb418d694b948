"""Speed of each quantized layer's training step (forward + backward) against its float twin, as
ratios measured in one run (never absolute times), at the sizes of the paper models:

- the MNIST MLP's hidden layer (BinaryConnect / BNN): Linear 1024 -> 1024, batch 200;
- the CIFAR-10 ConvNet's second layer (BinaryConnect / BNN / XNOR-Net's CIFAR runs): Conv 128 -> 128,
  3x3, padding 1, on 32x32 maps, batch 50.

Method (benchmarks/timing.py): the candidates run interleaved in short chunks, the order rotating
every round; every chunk's time is kept, and a ratio's samples are the per-round ratios to the
float layer. A step is the layer's forward and backward with the input requiring a gradient (a
hidden layer), from a fixed output gradient. The binary-weight layers (BinaryConnect, XNOR-Net's
BWN, DoReFa's 1-bit weights) are also measured on torch ops (``@torch_ops``, without the fused CPU
kernels) beside them. Measured on an AMD EPYC and an Intel Xeon, linear layer with the fused
kernels: BinaryConnect 1.03-1.13x, BWN 1.07-1.19x, DoReFa W1 1.03-1.13x float; on torch ops
BinaryConnect 1.13-1.17x, DoReFa W1 1.21-1.23x, BWN 1.19-1.37x on the EPYC, 1.58-1.63x on the Xeon
(whose float matrix product is faster). Nothing here asserts a time: the regression gate judges
the samples against the committed reference (`python -m suite check --benchmarks`).
"""

import contextlib

import torch
import torch.nn as nn
from timing import interleaved_samples, record

from suite.nn import QuantConv2d, QuantLinear
from suite.quant import build_quantizer, fused

CANDIDATES = {  # name -> (weight, input, gradient quantizer)
    "binaryconnect": ("binaryconnect", None, None),
    "bwn": ("xnor_weight", None, None),
    "dorefa_w1": ("dorefa_weight(bits=1)", None, None),
    "binaryconnect_stoch": ("binaryconnect(stochastic=true)", None, None),
    "bnn": ("binaryconnect", "bnn_sign", None),
    "xnor": ("xnor_weight", "xnor_input", None),
    "dorefa_1_2_6": ("dorefa_weight(bits=1)", "dorefa_activation(bits=2)", "dorefa_gradient(bits=6)"),
    "dorefa_w2": ("dorefa_weight(bits=2)", None, None),
    "ternary": ("ternary", None, None),
}


# The same layers without the fused CPU kernels (suite/quant/fused.py), reported beside them
TORCH_OPS = "@torch_ops"
FUSED_TWINS = [f"{n}{TORCH_OPS}" for n in ("binaryconnect", "bwn", "dorefa_w1")]


def _quantizers(wq, iq, gq) -> dict:
    return dict(weight_quantizer=build_quantizer(wq, "weight"), input_quantizer=build_quantizer(iq, "input"),
                gradient_quantizer=build_quantizer(gq, "gradient"))


def step_fn(layer: nn.Module, x_shape: tuple, steps: int, torch_ops: bool = False):
    """`steps` training steps of `layer`; with torch_ops, without the fused CPU kernels."""
    torch.manual_seed(0)
    x = torch.randn(x_shape, requires_grad=True)
    g = torch.randn_like(layer(x.detach()))

    def run():
        with fused.disabled() if torch_ops else contextlib.nullcontext():
            for _ in range(steps):
                layer.weight.grad = layer.bias.grad = x.grad = None
                layer(x).backward(g)

    return run


def compare(benchmark, make, x_shape, names, steps, rounds, label):
    torch.manual_seed(0)
    fns = {"float": step_fn(make(), x_shape, steps)}
    fns |= {n: step_fn(make(**_quantizers(*CANDIDATES[n.removesuffix(TORCH_OPS)])), x_shape, steps,
                       torch_ops=n.endswith(TORCH_OPS)) for n in names}
    samples = interleaved_samples(fns, rounds)
    ratios = record(benchmark, samples, [(n, "float") for n in names], per_chunk=steps)
    benchmark.extra_info.update({"rounds": rounds, "steps_per_chunk": steps})
    benchmark.pedantic(fns[names[0]], rounds=1, iterations=1)
    print(f"\n{label}: " + ", ".join(f"{k} {ratios[f'{k}_over_float']:.3f}x" for k in names))


def test_linear_step_vs_float(benchmark):
    """The MNIST MLP's 1024 x 1024 hidden layer at the paper's batch of 200."""
    fused.prepare()
    benchmark.extra_info["fused_cpu_kernels"] = fused.status()
    compare(benchmark, lambda **q: QuantLinear(1024, 1024, **q), (200, 1024), list(CANDIDATES) + FUSED_TWINS,
            steps=5, rounds=25, label="Linear 1024x1024, batch 200")


def test_conv_step_vs_float(benchmark):
    """The CIFAR-10 ConvNet's 128 -> 128 3x3 convolution on 32x32 maps, batch 50 (0.2 to 0.5 s a
    step here: the bounded layers and XNOR-Net, five rounds)."""
    names = ["binaryconnect", "bwn", "dorefa_w1", "xnor"]
    compare(benchmark, lambda **q: QuantConv2d(128, 128, 3, padding=1, **q), (50, 128, 32, 32), names,
            steps=1, rounds=8, label="Conv 128->128 3x3 on 32x32, batch 50")
