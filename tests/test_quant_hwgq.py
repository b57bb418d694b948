"""HWGQ's activation quantizer: levels and thresholds by hand, the three backward choices by hand,
and the level tables recomputed from the half-wave Gaussian (closed-form MSE, Lloyd's algorithm)."""

import math

import numpy as np
import pytest
import torch
import torch.func
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from suite.errors import UserError
from suite.quant import HWGQ, build_quantizer
from suite.quant.hwgq import LEVELS, UNIFORM_STEPS

X = [-1.0, 0.0, 0.1, 0.8, 0.81, 1.3, 1.35, 2.0, 5.0]


def test_two_bit_levels_and_thresholds_by_hand():
    # levels 0.538, 1.076, 1.614; thresholds 0 (x <= 0 -> 0), then the midpoints 0.807 and 1.345
    out = HWGQ(bits=2)(torch.tensor(X))
    assert out.tolist() == pytest.approx([0, 0, 0.538, 0.538, 1.076, 1.076, 1.614, 1.614, 1.614])
    # one bit: 0 or 0.799; three bits: 8 levels i x 0.3217
    assert HWGQ(bits=1)(torch.tensor(X)).tolist() == pytest.approx([0, 0] + [0.799] * 7)
    levels = HWGQ(bits=3)(torch.linspace(-1, 4, 5001)).unique()
    assert levels.tolist() == pytest.approx([0.3217 * i for i in range(8)], abs=1e-6)


def _grad(q, values):
    x = torch.tensor(values, requires_grad=True)
    q(x).backward(torch.ones(len(values)))
    return x.grad.tolist()


def test_backward_clipped_log_tailed_and_relu_by_hand():
    # clipped ReLU: 1 on (0, q_m = 1.614]; 0 at x <= 0 and beyond 1.614
    assert _grad(HWGQ(bits=2), X) == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    # log-tailed: tau = q_m - 1 = 0.614, slope 1 / (x - tau) beyond q_m: 1 / 1.386 at 2, 1 / 4.386 at 5
    assert _grad(HWGQ(bits=2, backward="log_tailed"), X) == pytest.approx(
        [0, 0, 1, 1, 1, 1, 1, 1 / 1.386, 1 / 4.386], rel=1e-5)
    assert _grad(HWGQ(bits=2, backward="relu"), X) == [0, 0, 1, 1, 1, 1, 1, 1, 1]
    # forward mode: the same factor on the tangent
    x = torch.tensor(X)
    _, tangent = torch.func.jvp(HWGQ(bits=2, backward="log_tailed"), (x,), (torch.full_like(x, 2.0),))
    assert tangent.tolist() == pytest.approx([0, 0, 2, 2, 2, 2, 2, 2 / 1.386, 2 / 4.386], rel=1e-5)


def _mse(levels: list[float]) -> float:
    """E[(x - Q(x))^2 ; x > 0], x ~ N(0, 1), Q with thresholds 0 and the midpoints (closed form:
    the integral of (x - q)^2 phi over (a, b] is [Phi - x phi + 2 q phi + q^2 Phi]_a^b)."""
    t = [0.0] + [(a + b) / 2 for a, b in zip(levels, levels[1:], strict=False)] + [math.inf]

    def antiderivative(x, q):
        if math.isinf(x):
            return 1 + q * q
        return norm.cdf(x) - x * norm.pdf(x) + 2 * q * norm.pdf(x) + q * q * norm.cdf(x)

    return sum(antiderivative(b, q) - antiderivative(a, q) for a, b, q in zip(t[:-1], t[1:], levels, strict=True))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_uniform_steps_minimise_the_error_on_a_half_wave_gaussian(bits):
    m = 2**bits - 1
    best = minimize_scalar(lambda d: _mse([i * d for i in range(1, m + 1)]), bounds=(0.05, 2.0), method="bounded",
                           options={"xatol": 1e-6})
    assert best.x == pytest.approx(UNIFORM_STEPS[bits], abs=1.5e-3)  # 0.798, 0.539, 0.322 vs 0.799, 0.538, 0.3217


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_lloyd_levels_are_the_fixed_point_of_lloyds_algorithm(bits):
    m = 2**bits - 1
    q = np.arange(m) + 0.5
    for _ in range(3000):  # centroid of each cell of the half-normal: (phi(a) - phi(b)) / (Phi(b) - Phi(a))
        t = np.concatenate([[0.0], (q[:-1] + q[1:]) / 2, [np.inf]])
        q = (norm.pdf(t[:-1]) - norm.pdf(t[1:])) / (norm.cdf(t[1:]) - norm.cdf(t[:-1]))
    assert q.tolist() == pytest.approx(list(LEVELS["lloyd"][bits]), abs=1.5e-4)
    assert _mse(list(LEVELS["lloyd"][bits])) <= _mse([i * UNIFORM_STEPS[bits] for i in range(1, m + 1)]) + 1e-9


def test_registered_as_an_input_quantizer():
    q = build_quantizer('hwgq(bits=3, backward="log_tailed", levels="lloyd")', "input")
    assert isinstance(q, HWGQ) and q.bits == 3 and q.levels == LEVELS["lloyd"][3]
    with pytest.raises(UserError, match="not as weight quantizer"):
        build_quantizer("hwgq", "weight")
    with pytest.raises(UserError, match="bits must be 1, 2 or 3"):
        build_quantizer("hwgq(bits=4)", "input")
    with pytest.raises(UserError, match="backward must be one of"):
        build_quantizer('hwgq(backward="ste")', "input")
