"""The quantizer registry: stable names, roles, and forward mode agreeing with reverse mode for
every quantizer (the forward-gradient method relies on the tangents)."""

import pytest
import torch
import torch.func
import torch.nn as nn

from suite.errors import UserError
from suite.quant import QUANTIZERS, build_quantizer, parse_quantizer, register

NAMES = {"identity", "binaryconnect", "bnn_sign", "xnor_weight", "xnor_input", "dorefa_weight",
         "dorefa_activation", "dorefa_gradient", "ternary", "stochastic_round", "hwgq"}


def test_names_are_stable():
    assert set(QUANTIZERS) == NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_quantizer_states_its_equations_roles_and_bits(name):
    cls = QUANTIZERS[name]
    q = cls()
    assert isinstance(q.bits, int) and 1 <= q.bits <= 32
    assert cls.roles and set(cls.roles) <= {"weight", "input", "gradient"}
    if name != "identity":
        doc = cls.__doc__ or ""
        assert "forward" in doc and "backward" in doc, f"{name}: state forward and backward in the docstring"


def test_roles_are_checked_when_building():
    assert build_quantizer("xnor_input", "input") is not None
    with pytest.raises(UserError, match="'xnor_input' serves as input quantizer, not as weight quantizer"):
        build_quantizer("xnor_input", "weight")
    with pytest.raises(UserError, match="gradient quantizers: dorefa_gradient, identity"):
        parse_quantizer("binaryconnect", role="gradient")
    assert parse_quantizer("ternary(threshold=0.5)") == ("ternary", {"threshold": 0.5})  # no role: any


def test_register_needs_a_name_and_roles():
    class NoRoles(nn.Module):
        name = "no_roles"

    with pytest.raises(TypeError, match="roles"):
        register(NoRoles)
    assert "no_roles" not in QUANTIZERS


DETERMINISTIC = ["identity", "binaryconnect", "bnn_sign", "xnor_weight", "xnor_input", "dorefa_weight(bits=1)",
                 "dorefa_weight(bits=3)", "dorefa_activation(bits=2)", "ternary", "stochastic_round(bits=3)",
                 "hwgq(bits=2)", 'hwgq(bits=3, backward="log_tailed")']


@pytest.mark.parametrize("ref", DETERMINISTIC)
def test_forward_mode_tangent_equals_the_jacobian_of_reverse_mode(ref):
    """torch.func.jvp through the quantizer gives J t, with J the Jacobian backward defines."""
    q = build_quantizer(ref)
    if ref.startswith("stochastic_round"):
        q.eval()  # deterministic rounding, same straight-through gradient
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64) * 0.8
    t = torch.randn(3, 4, dtype=torch.float64)
    out, tangent = torch.func.jvp(q, (w,), (t,))
    jac = torch.autograd.functional.jacobian(q, w).reshape(12, 12)  # reverse mode, row by row
    assert torch.allclose(out, q(w))
    assert torch.allclose(tangent.reshape(-1), jac @ t.reshape(-1), atol=1e-12)


@pytest.mark.parametrize("ref", ["binaryconnect(stochastic=true)", "stochastic_round(bits=2)",
                                 "dorefa_gradient(bits=2)"])
def test_stochastic_quantizers_pass_the_tangent_straight_through(ref):
    q = build_quantizer(ref).train()
    w = torch.randn(3, 4)
    t = torch.randn(3, 4)
    _, tangent = torch.func.jvp(q, (w,), (t,))
    assert torch.equal(tangent, t)


@pytest.mark.parametrize("ref", DETERMINISTIC + ["dorefa_gradient(bits=4)"])
def test_batched_tangents_under_vmap_match_one_by_one(ref):
    """The forward-gradient method may vmap its jvps over several directions at once."""
    q = build_quantizer(ref)
    if ref.startswith("stochastic_round"):
        q.eval()
    w = torch.randn(3, 4)
    tangents = torch.randn(5, 3, 4)
    batched = torch.func.vmap(lambda t: torch.func.jvp(q, (w,), (t,))[1], randomness="same")(tangents)
    one_by_one = torch.stack([torch.func.jvp(q, (w,), (t,))[1] for t in tangents])
    assert torch.allclose(batched, one_by_one, atol=1e-6)
