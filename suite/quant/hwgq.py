"""HWGQ (Cai, He, Sun, Vasconcelos; CVPR 2017, "Deep Learning with Low Precision by Half-wave
Gaussian Quantization"): activations quantized by the quantizer that is optimal for a half-wave
Gaussian, the distribution of a batch-normalised dot product after a ReLU.

Forward (the paper's half-wave Gaussian quantizer; thresholds as the authors' Caffe QuantLayer,
github zhaoweicai/hwgq @ebc706be, src/caffe/layers/quant_layer.cpp, forward_func "hwgq"):

    Q(x) = q_i   if x in (t_i, t_{i+1}],  i = 1..m          t_1 = 0, t_{m+1} = inf,
    Q(x) = 0     if x <= 0                                   t_i = (q_{i-1} + q_i) / 2 for i >= 2

so a b-bit HWGQ has m = 2^b - 1 positive levels q_1 < ... < q_m and the level 0; every positive
input maps to a positive level (the first threshold is 0, not q_1 / 2).

Levels (`levels = "uniform"`, what the paper's networks use): q_i = i Delta, Delta the step that
minimises the mean squared error of this quantizer on a half-wave Gaussian of unit variance:
    1 bit: Delta = 0.799   the authors' EdMIPS code, github zhaoweicai/EdMIPS @690a7c65,
                           models/quant_module.py `hwgq_steps` (= sqrt(2/pi) = E[x | x > 0])
    2 bits: 0.538, 1.076, 1.614   the authors' HWGQ prototxts (alex-hwgq-3ne-*/train_val.prototxt,
                           "centers: 0.538 centers: 1.076 centers: 1.614", clip_thr 1.614);
                           EdMIPS `hwgq_steps[2] = 0.538`
    3 bits: Delta = 0.3217 EdMIPS `hwgq_steps[3]`
These three steps are confirmed here: the MSE-optimal uniform step of the quantizer above on the
half-normal is 0.798, 0.539 and 0.322 for m = 1, 3, 7 (tests/test_quant_hwgq.py computes it).
(EdMIPS applies them with round(x / Delta), thresholds at Delta / 2, 3 Delta / 2, ...; the
steps were fitted for the Caffe thresholds above, which this quantizer follows.)

`levels = "lloyd"`: the non-uniform Lloyd-Max quantizer of the half-normal with m levels (the
positive half of Max's 2m-level Gaussian quantizer), computed by Lloyd's algorithm to 4 decimals
(tests/test_quant_hwgq.py recomputes it): 1 bit 0.7979; 2 bits 0.3177, 1.0001, 1.8936; 3 bits
0.1457, 0.4414, 0.7505, 1.0857, 1.4676, 1.9387, 2.6251. (The authors' non-uniform ablation,
alex-hwgq-2n-clip-step-160k, uses the 2-level optimum 0.453, 1.51.)

Backward (the paper's choices of a ReLU whose derivative stands in for Q's; `backward`):
    "clipped" (clipped ReLU, the default and the authors' configuration: backward_func "relu"
               with clip_thr = q_m):       dQ/dx := 1 if 0 < x <= q_m, else 0
    "log_tailed" (log-tailed ReLU, sigma(x) = q_m + log(x - tau) for x > q_m, x on (0, q_m],
               0 for x <= 0, tau = q_m - 1):  dQ/dx := 1 on (0, q_m], 1 / (x - tau) for x > q_m
    "relu"     (the plain ReLU's):          dQ/dx := 1 if x > 0, else 0
The same factor multiplies the forward-mode tangent.

Use it as a layer's input quantizer after BatchNorm, in place of the ReLU before the next layer
(the authors' nets: BN -> Quant -> BinaryConvolution): with a ReLU before it the values and the
gradients are the same (Q(ReLU(x)) = Q(x); ReLU's gradient is 1 wherever these are non-zero).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.fast_functions import fast
from suite.quant.registry import register

UNIFORM_STEPS = {1: 0.799, 2: 0.538, 3: 0.3217}
LEVELS = {
    "uniform": {b: tuple(round(i * d, 4) for i in range(1, 2**b)) for b, d in UNIFORM_STEPS.items()},
    "lloyd": {1: (0.7979,), 2: (0.3177, 1.0001, 1.8936),
              3: (0.1457, 0.4414, 0.7505, 1.0857, 1.4676, 1.9387, 2.6251)},
}
BACKWARDS = ("clipped", "log_tailed", "relu")


def thresholds(levels: tuple[float, ...]) -> tuple[float, ...]:
    """t_2 .. t_m: the midpoints of consecutive positive levels (t_1 = 0 is the sign test)."""
    return tuple((a + b) / 2 for a, b in zip(levels, levels[1:], strict=False))


def quantize(x: torch.Tensor, levels: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """Q(x) above (no gradient): bucketize finds i with t_i < x <= t_{i+1} among the midpoints."""
    q = levels[torch.bucketize(x, thr)]
    return torch.where(x > 0, q, torch.zeros((), dtype=x.dtype, device=x.device))


def surrogate_derivative(x: torch.Tensor, top: float, backward: str) -> torch.Tensor:
    """dQ/dx of the chosen ReLU: clipped, log-tailed or plain (a fresh tensor like x)."""
    if backward == "relu":
        return (x > 0).to(x.dtype)
    inside = ((x > 0) & (x <= top)).to(x.dtype)
    if backward == "clipped":
        return inside
    tau = top - 1.0  # log-tailed: sigma(x) = q_m + log(x - tau) beyond q_m, slope 1 at q_m
    tail = torch.where(x > top, 1.0 / (x - tau).clamp_min(1.0), torch.zeros((), dtype=x.dtype, device=x.device))
    return inside + tail


class _HWGQ(torch.autograd.Function):
    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def forward(x, levels, thr, top, backward):
        return quantize(x, levels, thr)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, _, top, backward = inputs
        ctx.top, ctx.backward = top, backward
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_derivative(x, ctx.top, ctx.backward), None, None, None, None

    @staticmethod
    def jvp(ctx, tangent, *_):
        (x,) = ctx.saved_tensors
        return tangent * surrogate_derivative(x, ctx.top, ctx.backward)  # not in place: may be batched


_hwgq = fast(_HWGQ)


@register
class HWGQ(nn.Module):
    """HWGQ activation quantizer, ``hwgq(bits=2, backward="clipped", levels="uniform")``: the
    forward and backward above. bits 1..3 (2^bits levels: 0 and 2^bits - 1 positive ones)."""

    name = "hwgq"
    roles = frozenset({"input"})

    def __init__(self, bits: int = 2, backward: str = "clipped", levels: str = "uniform"):
        super().__init__()
        if isinstance(bits, bool) or bits not in UNIFORM_STEPS:
            raise ValueError(f"bits must be 1, 2 or 3, got {bits!r}")
        if backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {', '.join(BACKWARDS)}, got {backward!r}")
        if levels not in LEVELS:
            raise ValueError(f"levels must be one of {', '.join(LEVELS)}, got {levels!r}")
        self.bits, self.backward, self.levels_name = bits, backward, levels
        self.levels = LEVELS[levels][bits]
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dtype)
        if key not in self._tables:  # built once per device and dtype, not per call
            self._tables[key] = (torch.tensor(self.levels, dtype=x.dtype, device=x.device),
                                 torch.tensor(thresholds(self.levels), dtype=x.dtype, device=x.device))
        return self._tables[key]

    def forward(self, x):
        levels, thr = self._table(x)
        return _hwgq(x, levels, thr, self.levels[-1], self.backward)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, backward={self.backward}, levels={self.levels_name}"
