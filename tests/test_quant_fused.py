"""The fused CPU kernels (suite/quant/fused.py) give the torch ops' values, and the quantizers fall
back to the torch ops wherever the kernels do not apply or cannot be built."""

import shutil
import sysconfig
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp, vmap

from suite.nn import QuantConv2d, QuantLinear
from suite.quant import build_quantizer, fused, sign_pm1

EPS = torch.finfo(torch.float32).eps
EDGES = [0.0, -0.0, 1.0, -1.0, 1.0 + EPS, -1.0 - EPS, 1.0 - EPS / 2, 1e-40, -1e-40, 3.0, -3.0]
INF = [float("inf"), float("-inf")]


def _weights(shape, dtype=torch.float32, seed=0):
    """Random weights on both sides of the STE's |W| <= 1, with the edge values written in."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=dtype) * 0.8
    flat = w.view(-1)
    flat[: len(EDGES)] = torch.tensor(EDGES, dtype=dtype)
    return w


def test_kernels_are_built_where_a_compiler_is_found():
    if not (shutil.which("c++") or shutil.which("g++")) or not (Path(sysconfig.get_paths()["include"]) /
                                                               "Python.h").exists():
        pytest.skip("no C++ compiler or Python headers here: the quantizers use torch ops")
    assert fused.prepare() is not None, fused.status()
    assert fused.status() == "on"


def test_kernels_run_on_torchs_threads():
    """Built without OpenMP, at::parallel_for is a serial loop: the kernels then took twice as
    long as torch's own 2-thread ops (measured), with the same results."""
    kernels = fused.prepare()
    if kernels is None or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip(f"kernels {fused.status()}; or torch's threads are not OpenMP's")
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert kernels.threads_used(64) == n
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sign_matches_the_torch_ops_bit_for_bit(dtype):
    x = torch.cat([torch.tensor(EDGES + INF + [float("nan"), -float("nan")], dtype=dtype),
                   torch.randn(5000, dtype=dtype)])
    with fused.disabled():
        want = sign_pm1(x)
        want_scaled = sign_pm1(x, torch.tensor(0.25, dtype=dtype))
    assert torch.equal(sign_pm1(x), want)  # NaN by its sign bit both ways
    assert torch.equal(sign_pm1(x, torch.tensor(0.25, dtype=dtype)), want_scaled)
    assert torch.equal(sign_pm1(x, 0.25), want_scaled)
    buf = torch.empty_like(x)
    assert sign_pm1(x, out=buf) is buf and torch.equal(buf, want)
    y = x.clone()
    assert sign_pm1(y, out=y) is y and torch.equal(y, want)  # in place


def test_sign_falls_back_where_the_kernel_does_not_apply():
    x = torch.randn(64, 32)
    want = torch.where(x >= 0, 1.0, -1.0)
    assert torch.equal(sign_pm1(x.t()), want.t())  # not contiguous
    assert torch.equal(sign_pm1(x.half()), want.half())  # float16
    assert torch.equal(sign_pm1(x[:, :1] * 0 + x, torch.full((64, 1), 2.0)), 2 * want)  # per-row scale
    assert not fused.serves(x.t()) and not fused.serves(x.half()) and fused.serves(torch.nn.Parameter(x))
    seen = []

    def row(r):
        seen.append(fused.serves(r))
        return r * 2

    vmap(row)(x)
    assert seen == [False]  # functorch-wrapped rows go to the torch ops


def _bwn_step(layer, x, g):
    layer.weight.grad = None
    x = x.detach().requires_grad_()
    layer(x).backward(g)
    return layer.weight.grad.clone(), x.grad


@pytest.mark.parametrize("make,x_shape", [
    (lambda: QuantLinear(96, 40, weight_quantizer=build_quantizer("xnor_weight")), (7, 96)),
    (lambda: QuantConv2d(6, 8, 3, padding=1, groups=2, weight_quantizer=build_quantizer("xnor_weight")),
     (2, 6, 5, 5)),
])
def test_bwn_forward_and_gradient_match_the_torch_ops(make, x_shape):
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.weight.copy_(_weights(layer.weight.shape))
    x = torch.randn(x_shape)
    g = torch.randn_like(layer(x))
    gw, gx = _bwn_step(layer, x, g)
    with fused.disabled():
        want_gw, want_gx = _bwn_step(layer, x, g)
        want_y = layer(x)
    assert torch.allclose(layer(x), want_y, rtol=1e-5, atol=1e-6)
    # x's gradient is g W~ here and (g alpha) B there: the same sums, rounded in another order
    assert torch.allclose(gw, want_gw, rtol=1e-5, atol=1e-6) and torch.allclose(gx, want_gx, rtol=1e-5, atol=1e-5)
    # the STE mask acted: some |W| > 1
    assert (layer.weight.abs() > 1).any()
    w_tilde, none = layer.weight_quantizer.factors(layer.weight.detach())
    with fused.disabled():
        b_ref, alpha_ref = layer.weight_quantizer.factors(layer.weight.detach())
    view = (-1,) + (1,) * (b_ref.dim() - 1)
    assert none is None and torch.allclose(w_tilde, b_ref * alpha_ref.view(view), rtol=1e-6)
    assert torch.equal(torch.sign(w_tilde), b_ref)


def test_bwn_by_hand():
    w = torch.tensor([[0.5, -2.0, 0.0], [-0.0, 1.0, -1.0]], requires_grad=True)
    w_tilde = build_quantizer("xnor_weight")(w)
    a0, a1 = 2.5 / 3, 2.0 / 3
    assert torch.allclose(w_tilde, torch.tensor([[a0, -a0, a0], [a1, a1, -a1]]))
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    w_tilde.backward(g)
    # alpha 1_{|W| <= 1} g + sign(W) mean(sign(W) g): means (1 - 2 + 3) / 3 and (4 + 5 - 6) / 3
    c0, c1 = 2 / 3, 1.0
    want = [[a0 * 1 + c0, 0 - c0, a0 * 3 + c0], [a1 * 4 + c1, a1 * 5 + c1, a1 * 6 - c1]]
    assert torch.allclose(w.grad, torch.tensor(want)) and g.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dorefa_one_bit_weights_match_the_torch_ops(dtype):
    q = build_quantizer("dorefa_weight(bits=1)", "weight")
    w = _weights((16, 3, 3, 3), dtype)
    with fused.disabled():
        want = q(w)
    got = q(w)
    assert torch.allclose(got, want, rtol=1e-6) and got.dtype == dtype
    assert torch.allclose(got.abs(), w.abs().mean().expand_as(w), rtol=1e-6)


def test_forward_mode_and_vmap_take_the_torch_ops():
    """torch.func wraps its tensors: the kernels refuse them and the same values come out."""
    layer = QuantLinear(12, 5, weight_quantizer=build_quantizer("xnor_weight"))
    x, w = torch.randn(3, 12), layer.weight.detach().clone()
    tangents = torch.randn(4, *w.shape)

    def f(weight):
        return F.linear(x, layer.weight_quantizer(weight))

    outs = vmap(lambda t: jvp(f, (w,), (t,))[1])(tangents)
    with fused.disabled():
        want = torch.stack([jvp(f, (w,), (t,))[1] for t in tangents])
    assert torch.allclose(outs, want, rtol=1e-5, atol=1e-6)


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(fused, "_tried", False)
    monkeypatch.setattr(fused, "_module", None)
    monkeypatch.setattr(fused, "_error", None)

    def no_compiler():
        raise RuntimeError("Error building extension\nc++: command not found")

    monkeypatch.setattr(fused, "_build", no_compiler)
    with pytest.warns(RuntimeWarning, match="could not be built .*command not found.*torch ops instead"):
        assert fused.prepare() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert fused.kernels() is None
        assert sign_pm1(torch.tensor([-0.0, -3.0])).tolist() == [1.0, -1.0]
    assert fused.status().startswith("unavailable (RuntimeError: c++: command not found")


def test_the_environment_variable_turns_them_off(monkeypatch):
    monkeypatch.setattr(fused, "_tried", False)
    monkeypatch.setattr(fused, "_module", None)
    monkeypatch.setattr(fused, "_error", None)
    monkeypatch.setenv(fused.ENV, "0")
    assert fused.prepare() is None and fused.kernels() is None
    assert fused.status() == f"off ({fused.ENV}=0)"


def test_disabled_restores_the_kernels():
    if fused.prepare() is None:
        pytest.skip(fused.status())
    with fused.disabled():
        assert fused.kernels() is None and fused.status().startswith("off")
    assert fused.kernels() is not None


def test_kernels_check_their_arguments():
    k = fused.prepare()
    if k is None:
        pytest.skip(fused.status())
    with pytest.raises(RuntimeError, match="contiguous CPU tensor"):
        k.scaled_sign_rows(torch.randn(4, 4).t())
    with pytest.raises(RuntimeError, match="float32 or float64"):
        k.row_l1(torch.ones(4, 4, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="one value per row"):
        k.bwn_weight_grad(torch.zeros(4, 4), torch.zeros(4, 4), torch.zeros(3), torch.zeros(4, 4))
