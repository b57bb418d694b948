"""Quantizers: small named nn.Modules passed to quantized layers (larq's idea, PyTorch's idiom).

A quantizer maps a tensor to its quantized value in `forward` and defines the gradient that flows
back (straight-through estimators) and, for forward mode, the tangent that flows forward. It is
referenced in a spec by name with keyword arguments, e.g. ``"binaryconnect(stochastic=True)"``,
and serves in one or more roles: on a layer's ``weight``, on its ``input`` (activations), or on
the ``gradient`` flowing back into its output (identity forward, quantized backward).

==================================  ========  =========================  ==========================================
name (parameters, defaults)         role      bits at inference          paper
==================================  ========  =========================  ==========================================
identity                            any       32                         -
binaryconnect(stochastic=false,    weight    1 (stochastic: 32)         BinaryConnect, Courbariaux et al. 2015
              scale=1)
bnn_sign                            weight,   1                          BNN, Hubara et al. 2016
                                    input
xnor_weight(project=false)          weight    1 (+ alpha per channel)    XNOR-Net (BWN), Rastegari et al. 2016
xnor_input(scale=true)              input     1                          XNOR-Net, Rastegari et al. 2016
dorefa_weight(bits=1)               weight    k (k=1: + one scale)       DoReFa-Net, Zhou et al. 2016, Sec. 2.3
dorefa_activation(bits=2)           input     k                          DoReFa-Net, Sec. 2.4
dorefa_gradient(bits=6)             gradient  k (gradients)              DoReFa-Net, Sec. 2.5
ternary(threshold=0.7)              weight    2 (+ alpha)                TWN, Li, Zhang, Liu 2016
stochastic_round(bits=4)            weight,   k (+ alpha, beta)          stochastic k-bit quantization (Zhou's
                                    input                                slides; Gupta et al. 2015)
hwgq(bits=2, backward="clipped",    input     k (2^k levels, 0 one)      HWGQ, Cai, He, Sun, Vasconcelos 2017
     levels="uniform")
==================================  ========  =========================  ==========================================

Equations, forward ; backward (g the incoming gradient, 1_{.} an indicator):

- binaryconnect: w_b = sign(w) (Eq. 1), or +1 with probability hard_sigmoid(w) = clip((w + 1)/2, 0, 1)
  (Eq. 2) ; g (straight through; the latent weights are clipped by the layer). scale="glorot": values
  +-W0 per layer, W0 = sqrt(1.5 / (fan_in + fan_out)), probability hard_sigmoid(w / W0) (paper-era script)
- bnn_sign: q = sign(r) ; g_r = g_q 1_{|r| <= 1}
- xnor_weight: W~ = alpha sign(W), alpha = ||W||_l1 / n per output channel ;
  alpha 1_{|W| <= 1} g + sign(W) mean_n(sign(W) g) (the exact derivative under the sign STE);
  project=true first mean-centres each filter over its input channels and clamps W to [-1, 1] in place
  (both reference codes do, before every binarization)
- xnor_input: sign(I), the layer's output times K = A * k (A = mean_c |I|, k the kh x kw box with
  the layer's stride, padding, dilation; per sample mean |x| for a linear layer) ; g 1_{|I| <= 1}, and
  through K
- dorefa_weight: k = 1: sign(W) E(|W|), E over the layer ; g.
  k > 1: 2 quantize_k(tanh(W) / (2 max|tanh(W)|) + 1/2) - 1 ; chain rule, quantize_k straight through
- dorefa_activation: quantize_k(clip(x, 0, 1)) ; g 1_{0 <= x <= 1}
- dorefa_gradient: x ; 2 max0(|g|) [quantize_k(g / (2 max0(|g|)) + 1/2 + N(k)) - 1/2],
  N(k) = U(-1/2, 1/2) / (2^k - 1), max0 per sample (over all axes but the batch axis)
- ternary: alpha {+1 if W > delta, 0 if |W| <= delta, -1 if W < -delta}, delta = threshold E(|W|),
  alpha = mean of |W| > delta ; g
- hwgq: 0 for x <= 0, else q_i for x in (t_i, t_i+1], t_1 = 0 and midpoints (levels i Delta: Delta = 0.799, 0.538,
  0.3217 for 1, 2, 3 bits) ; g 1_{0 < x <= q_m} (clipped ReLU), or log-tailed: g / (x - q_m + 1) beyond q_m
- stochastic_round: alpha quantize_k((X - beta) / alpha + xi / (2^k - 1)) + beta, xi ~ U(-1/2, 1/2),
  alpha = max(X) - min(X), beta = min(X) (round to nearest in eval mode) ; g

quantize_k(r) = round((2^k - 1) r) / (2^k - 1). Every ``dorefa_*`` with bits=32 is the identity.
sign(0) = +1 everywhere (`sign_pm1`, the one place it lives). Stochastic quantizers draw from
torch's global generator, which the harness seeds.

To add one: write the module in the file of its family, decorate its class with ``@register``,
give it a stable `name`, its `roles` and `bits`, quote its paper equation in the docstring, write
every autograd Function with `forward`, `setup_context`, `backward`, `jvp` and
``generate_vmap_rule = True`` (the forward-gradient method vmaps its jvps), call it through
``suite.fast_functions.fast(cls)`` (torch's own apply costs ~20 us a call more), and add a test that
computes a small case by hand. Attribute ``bits`` is the precision at inference (weights for a
weight quantizer, activations for an input quantizer), used by the bit accounting; a weight
quantizer that keeps float scales beside its weights says how many with ``stored_scales(weight)``.
An input quantizer whose scale multiplies the layer's output (XNOR-Net's K) provides
``output_scale(x, layer)``; a weight quantizer alpha B may provide ``factors(w, scale_output) -> (B, alpha)`` so
that a linear layer scales its (smaller) output instead of its weights.
"""

from suite.quant.binary import BinaryConnect, BNNSign, Identity, sign_pm1, sign_ste
from suite.quant.dorefa import DoReFaActivation, DoReFaGradient, DoReFaWeight, quantize_gradient, quantize_k
from suite.quant.hwgq import HWGQ
from suite.quant.registry import QUANTIZERS, ROLES, build_quantizer, parse_quantizer, register
from suite.quant.rounding import StochasticRound
from suite.quant.ternary import Ternary
from suite.quant.xnor import XNORInput, XNORWeight

__all__ = ["QUANTIZERS", "ROLES", "build_quantizer", "parse_quantizer", "register",
           "BinaryConnect", "BNNSign", "Identity", "sign_pm1", "sign_ste",
           "DoReFaActivation", "DoReFaGradient", "DoReFaWeight", "quantize_gradient", "quantize_k",
           "HWGQ", "StochasticRound", "Ternary", "XNORInput", "XNORWeight"]
