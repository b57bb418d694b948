"""suite.fast_functions.fast: a new-style Function applied without torch's per-call argument binding
gives the same values, gradients and tangents as its own apply, in and out of torch.func."""

import pytest
import torch
import torch.autograd.forward_ad as fwad

from suite.fast_functions import fast
from suite.quant.ste import StraightThrough


class _Scaled(StraightThrough):
    @staticmethod
    def forward(w, h=None):
        return w.sign() if h is None else w.sign() * h


class _Square(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, k=2.0):
        return x * x * k

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])
        ctx.k = inputs[1]

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * ctx.k * x, None

    @staticmethod
    def jvp(ctx, t, _):
        (x,) = ctx.saved_tensors
        return t * 2 * ctx.k * x


@pytest.mark.parametrize("cls,args", [(_Scaled, ()), (_Scaled, (3.0,)), (_Square, ()), (_Square, (0.5,))])
def test_same_values_gradients_and_tangents(cls, args):
    f = fast(cls)
    x = torch.randn(4, 5)
    grads = []
    for apply in (f, cls.apply):
        xr = x.clone().requires_grad_()
        y = apply(xr, *args)
        y.backward(torch.arange(20.0).view(4, 5))
        grads.append((y.detach(), xr.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert type(f(x.requires_grad_(), *args).grad_fn).__name__ == f"{cls.__name__}Backward"  # profiles read alike
    t = torch.randn(4, 5)
    for apply in (f, cls.apply):  # torch.func (the Function's own apply runs) and forward-mode dual tensors
        out, tangent = torch.func.jvp(lambda v, apply=apply: apply(v, *args), (x.detach(),), (t,))
        with fwad.dual_level():
            dual_out = fwad.unpack_dual(apply(fwad.make_dual(x.detach(), t), *args))
        assert torch.equal(dual_out.primal, out) and torch.equal(dual_out.tangent, tangent)
    batched = torch.func.vmap(lambda v: f(v, *args))(x.detach())
    assert torch.equal(batched, cls.apply(x.detach(), *args))


def test_only_new_style_functions():
    class Old(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match="not a new-style Function"):
        fast(Old)


def test_missing_argument_is_an_error():
    with pytest.raises(TypeError, match="takes 2 arguments, got 0"):
        fast(_Square)()


def test_methods_are_looked_up_at_each_call(monkeypatch):
    f = fast(_Square)
    monkeypatch.setattr(_Square, "backward", staticmethod(lambda ctx, g: (torch.zeros_like(g), None)))
    x = torch.randn(3, requires_grad=True)
    f(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))
