"""DoReFa-Net's W/A/G quantizers, pinned by hand-computed cases, levels and unbiasedness."""

import math

import pytest
import torch
import torch.func

from suite.errors import UserError
from suite.quant import DoReFaActivation, DoReFaGradient, DoReFaWeight, build_quantizer, quantize_gradient, quantize_k


def test_quantize_k_by_hand():
    r = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9, 1.0])
    # k = 2: levels 0, 1/3, 2/3, 1; 3r = 0, 0.3, 0.6, 1.5 (a tie: to even, 2), 2.7, 3
    assert torch.allclose(quantize_k(r, 2), torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]))
    assert quantize_k(r, 1).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # round(0.5) = 0, to even


def test_one_bit_weights_scale_sign_by_the_layer_mean():
    w = torch.tensor([[0.5, -1.5], [0.0, 1.0]], requires_grad=True)
    out = DoReFaWeight(bits=1)(w)
    # E(|W|) = (0.5 + 1.5 + 0 + 1) / 4 = 0.75 over the whole layer (one scalar, not per channel)
    assert out.tolist() == [[0.75, -0.75], [0.75, 0.75]]
    out.backward(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert w.grad.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # straight through, E a constant


def test_k_bit_weights_forward_by_hand():
    w = torch.tensor([0.1, 0.5, -1.0, 2.0])
    # tanh = .0997, .4621, -.7616, .9640; / (2 max) + 1/2 = .5517, .7397, .1050, 1; x3 = 1.655, 2.219, .315, 3
    # -> round 2, 2, 0, 3 -> 2 q - 1 = 1/3, 1/3, -1, 1
    assert torch.allclose(DoReFaWeight(bits=2)(w), torch.tensor([1 / 3, 1 / 3, -1.0, 1.0]))
    # a zero weight is the tie r = 1/2: to even, 2/3 -> +1/3
    assert torch.allclose(DoReFaWeight(bits=2)(torch.tensor([0.0, 1.0])), torch.tensor([1 / 3, 1.0]))


def test_k_bit_weights_backward_is_the_chain_rule_through_tanh_and_the_max():
    values = [0.1, 0.5, -1.0, 2.0]
    g = [1.0, -2.0, 0.5, 3.0]
    w = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    DoReFaWeight(bits=3)(w).backward(torch.tensor(g, dtype=torch.float64))
    # r_o = 2 quantize_k(t / (2 m) + 1/2) - 1 with quantize_k straight through: d r_o = d(t / m)
    # d(t_i/m)/dw_i = (1 - t_i^2)/m; through m = |t_3| (the max, w = 2): -t_i/m^2 (1 - t_3^2) at i = 3
    t = [math.tanh(v) for v in values]
    m = max(abs(v) for v in t)
    expected = [(1 - ti * ti) / m * gi for ti, gi in zip(t, g, strict=True)]
    expected[3] -= sum(gi * ti for gi, ti in zip(g, t, strict=True)) / m**2 * (1 - t[3] ** 2)
    assert torch.allclose(w.grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_weights_take_exactly_2_to_the_k_levels(bits):
    out = DoReFaWeight(bits=bits)(torch.linspace(-3, 3, 1001))
    levels = out.unique()
    assert len(levels) == 2**bits
    if bits > 1:  # the levels 2j / (2^k - 1) - 1 of [-1, 1]
        n = 2**bits - 1
        assert torch.allclose(levels, torch.tensor([2 * j / n - 1 for j in range(n + 1)]))


def test_activation_by_hand():
    x = torch.tensor([-0.5, 0.0, 0.2, 0.5, 0.8, 1.0, 1.5], requires_grad=True)
    out = DoReFaActivation(bits=2)(x)
    # clip -> 0, 0, .2, .5, .8, 1, 1; x3 = 0, 0, .6, 1.5 (tie -> 2), 2.4, 3, 3
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0]))
    out.backward(torch.ones(7))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # clip's gradient, bounds included


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_activations_take_exactly_2_to_the_k_levels(bits):
    n = 2**bits - 1
    levels = DoReFaActivation(bits=bits)(torch.linspace(-0.5, 1.5, 2001)).unique()
    assert torch.allclose(levels, torch.tensor([j / n for j in range(n + 1)]))


def _quantized_grad(dr: torch.Tensor, bits: int) -> torch.Tensor:
    x = torch.zeros_like(dr, requires_grad=True)
    DoReFaGradient(bits=bits)(x).backward(dr)
    return x.grad


def test_gradient_forward_is_identity_and_its_tangent_too():
    x = torch.tensor([[0.3, -0.7]])
    out, t = torch.func.jvp(DoReFaGradient(bits=2), (x,), (torch.tensor([[1.0, 2.0]]),))
    assert out.tolist() == x.tolist() and t.tolist() == [[1.0, 2.0]]
    xg = x.clone().requires_grad_()
    y = DoReFaGradient(bits=2)(xg)
    assert torch.equal(y, x) and y.data_ptr() != xg.data_ptr()  # a copy: later in-place ops stay legal
    y.relu_()


def test_gradient_levels_and_per_sample_max_by_hand():
    dr = torch.tensor([[0.5, -0.25, 0.1, 0.0], [4.0, -8.0, 1.0, 2.0]])
    g = _quantized_grad(dr, bits=2)
    # per sample m = max |dr| = 0.5 and 8; values 2 m (j/3 - 1/2): {-m, -m/3, m/3, m}
    for row, m in zip(g, (0.5, 8.0), strict=True):
        allowed = torch.tensor([2 * m * (j / 3 - 0.5) for j in range(4)])
        assert all((allowed - v).abs().min() < 1e-6 for v in row)
    # the element at the max maps to itself, whatever the noise: v = 0 or 1, n v + sigma rounds to 0 or n
    assert g[0, 0].item() == 0.5 and g[1, 1].item() == -8.0


def test_gradient_of_an_all_zero_sample_stays_zero():
    g = _quantized_grad(torch.tensor([[0.0, 0.0], [1.0, -1.0]]), bits=4)
    assert g[0].tolist() == [0.0, 0.0] and g[1].tolist() == [1.0, -1.0]


@pytest.mark.parametrize("bits", [1, 2, 6])
def test_gradient_quantizer_is_unbiased(bits):
    """E[f_g(dr)] = dr: mean of 10^5 draws within 4 standard errors (+ the 16-bit noise resolution)."""
    n = 100_000
    row = torch.tensor([1.0, 0.3, -0.55, 0.05, -1.0, 0.0, 0.9])
    g = _quantized_grad(row.expand(n, -1).contiguous(), bits=bits)
    step = 2.0 / (2**bits - 1)  # the level spacing 2 m / (2^k - 1), m = 1 in every sample
    assert len(g.unique()) <= 2**bits
    frac = ((row / 2 + 0.5) * (2**bits - 1)).frac()
    se = step * torch.sqrt(frac * (1 - frac) / n)
    err = (g.mean(0) - row).abs()
    assert bool((err <= 4 * se + step * 2.0**-15).all()), (err, se)


def test_gradient_unbiasedness_test_can_fail_without_noise():
    """The same statistic on deterministic rounding (no N(k)) is biased: the test above has teeth."""
    row = torch.tensor([0.3])
    m, n = 1.0, 3
    deterministic = 2 * m * (torch.round((row / (2 * m) + 0.5) * n) / n - 0.5)
    assert (deterministic - row).abs().item() > 0.01


def test_gradient_quantizer_in_no_grad_and_eval_is_free():
    q = DoReFaGradient(bits=4)
    x = torch.randn(3, 2)
    assert q(x) is x  # no reverse-mode graph: nothing to quantize, no copy


def test_gradient_quantizer_follows_the_seed():
    dr = torch.randn(4, 10)
    torch.manual_seed(7)
    a = quantize_gradient(dr, 3)
    b = quantize_gradient(dr, 3)
    torch.manual_seed(7)
    assert not torch.equal(a, b) and torch.equal(quantize_gradient(dr, 3), a)


def test_32_bits_is_the_identity():
    w = torch.randn(5, 3, requires_grad=True)
    for q in (DoReFaWeight(bits=32), DoReFaActivation(bits=32), DoReFaGradient(bits=32)):
        out = q(w)
        assert torch.equal(out, w)
        (grad,) = torch.autograd.grad(out, w, torch.arange(15.0).view(5, 3))
        assert torch.equal(grad, torch.arange(15.0).view(5, 3))


def test_roles_and_bits_arguments():
    assert build_quantizer("dorefa_weight(bits=2)", "weight").bits == 2
    assert build_quantizer("dorefa_activation(bits=3)", "input").bits == 3
    assert build_quantizer("dorefa_gradient(bits=6)", "gradient").bits == 6
    with pytest.raises(UserError, match="not as weight quantizer"):
        build_quantizer("dorefa_gradient(bits=6)", "weight")
    with pytest.raises(UserError, match="bits"):
        build_quantizer("dorefa_weight(bits=0)")
    with pytest.raises(UserError, match="bits"):
        build_quantizer("dorefa_activation(bits=true)")
