"""Custom autograd Functions called without torch's per-call cost of the new style.

A Function written in the new style (`forward` without ctx, `setup_context`) is what torch.func's
transforms need (vmap, jvp: the forward-gradient method runs the layers under them). But torch
binds such a Function's arguments with `inspect.signature` on every `apply`, outside the
transforms too: about 20 us a call on the machines here, more than an elementwise op on a 200 x
1024 batch, and a binary layer's training step calls three such Functions. `fast(cls)` returns the
apply to use instead: outside torch.func's transforms, that of an old-style twin (forward(ctx,
*args) running cls.forward, then cls.setup_context, on the arguments with their defaults filled in
as torch's binding gives them; cls's own backward and jvp, so the same values and gradients, and
the same name in autograd graphs and profiles); under the transforms, cls.apply itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

_transforms_active = torch._C._are_functorch_transforms_active


def fast(cls: type[torch.autograd.Function]) -> Callable:
    """The apply of the new-style Function `cls` (positional arguments), without the per-call
    argument binding outside torch.func's transforms."""
    if cls.setup_context is torch.autograd.Function.setup_context:
        raise TypeError(f"{cls.__name__} is not a new-style Function (no setup_context): call its apply")
    params = list(inspect.signature(cls.forward).parameters.values())
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise TypeError(f"{cls.__name__}.forward must take positional parameters only")
    defaults, n = tuple(p.default for p in params), len(params)

    # cls's methods looked up at each call, as its own apply does (a test may patch one)
    def forward(ctx, *args):
        out = cls.forward(*args)
        cls.setup_context(ctx, args, out)
        return out

    def backward(ctx, *grads):
        return cls.backward(ctx, *grads)

    def jvp(ctx, *tangents):  # the base Function's raises "not implemented", as cls's own would
        return cls.jvp(ctx, *tangents)

    twin = type(cls.__name__, (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward), "jvp": staticmethod(jvp),
                 "__doc__": cls.__doc__})
    twin_apply, own_apply = twin.apply, cls.apply

    def apply(*args):
        if _transforms_active():
            return own_apply(*args)
        if len(args) >= n:
            return twin_apply(*args)
        # the omitted arguments' defaults, as torch's binding passes them on (to backward's count too)
        rest = defaults[len(args):]
        if inspect.Parameter.empty in rest:
            raise TypeError(f"{cls.__name__}.forward() takes {n} arguments, got {len(args)}")
        return twin_apply(*args, *rest)

    apply.__doc__ = f"{cls.__name__}.apply, fast outside torch.func (suite.fast_functions)"
    return apply
