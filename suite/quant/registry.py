"""Name -> quantizer class, and parsing of ``name(key=value, ...)`` references from specs."""


import torch.nn as nn

from suite.errors import UserError
from suite.quant import fused
from suite.typed import parse_call

QUANTIZERS: dict[str, type[nn.Module]] = {}

# Where a quantizer may be used: on a layer's weights, on its input (activations), or on the
# gradient flowing back into its output. Checked when a layer is built, so that a gradient
# quantizer (identity in the forward pass) can never be taken for a weight quantizer.
ROLES = ("weight", "input", "gradient")



def register(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make a quantizer available to specs under its `name` attribute.

    The class states `name` (stable: specs reference it) and `roles` (a subset of ROLES).
    """
    roles = getattr(cls, "roles", None)
    if not isinstance(getattr(cls, "name", None), str) or not roles or not set(roles) <= set(ROLES):
        raise TypeError(f"{cls.__name__}: a quantizer needs a str `name` and `roles` within {ROLES}")
    prev = QUANTIZERS.get(cls.name)
    if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"quantizer name {cls.name!r} is taken by {QUANTIZERS[cls.name].__name__}")
    QUANTIZERS[cls.name] = cls
    return cls


def _check_role(ref: str, name: str, role: str | None) -> None:
    if role is None:
        return
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    roles = QUANTIZERS[name].roles
    if role not in roles:
        fits = sorted(n for n, c in QUANTIZERS.items() if role in c.roles)
        raise UserError(f"{ref!r}: quantizer {name!r} serves as {' or '.join(sorted(roles))} quantizer, not as "
                        f"{role} quantizer; {role} quantizers: {', '.join(fits)}")


def parse_quantizer(ref: str, role: str | None = None) -> tuple[str, dict]:
    """``"dorefa_weight(bits=2)"`` -> ``("dorefa_weight", {"bits": 2})``, checked against the class
    signature and, when `role` ("weight", "input" or "gradient") is given, against its roles."""
    name, kwargs = parse_call(ref, QUANTIZERS, "quantizer", ", ".join(sorted(QUANTIZERS)))
    _check_role(ref, name, role)
    return name, kwargs


def build_quantizer(ref: str | None, role: str | None = None) -> nn.Module | None:
    """A fresh quantizer module for a spec reference; None for "none"/None (full precision).

    With `role`, a quantizer that cannot serve in that role is a UserError.
    """
    if ref is None or ref == "none":
        return None
    name, kwargs = parse_quantizer(ref, role)
    fused.prepare()  # build the fused CPU kernels now (once per machine), not in a timed epoch
    try:
        return QUANTIZERS[name](**kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{ref!r}: {e}") from None
