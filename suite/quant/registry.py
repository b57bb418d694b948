"""Name -> quantizer class, and parsing of ``name(key=value, ...)`` references from specs."""

import ast
import difflib
import inspect
import re

import torch.nn as nn

from suite.errors import UserError
from suite.quant import fused

QUANTIZERS: dict[str, type[nn.Module]] = {}

# Where a quantizer may be used: on a layer's weights, on its input (activations), or on the
# gradient flowing back into its output. Checked when a layer is built, so that a gradient
# quantizer (identity in the forward pass) can never be taken for a weight quantizer.
ROLES = ("weight", "input", "gradient")

_REF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


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
    m = _REF.match(ref)
    if not m:
        raise UserError(f"{ref!r}: expected NAME or NAME(key=value, ...)")
    name, args = m.group(1), m.group(2)
    if name not in QUANTIZERS:
        close = difflib.get_close_matches(name, list(QUANTIZERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown quantizer {name!r}{hint}; known: {', '.join(sorted(QUANTIZERS))}")
    _check_role(ref, name, role)
    kwargs = {}
    if args and args.strip():
        # TOML-style booleans are accepted too: stochastic=true
        src = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", args))
        try:
            call = ast.parse(f"f({src})", mode="eval").body
            if call.args:
                raise ValueError("positional arguments")
            for kw in call.keywords:
                if kw.arg in kwargs:  # Python's parser lets f(a=1, a=2) through; its compiler would not
                    raise ValueError(f"argument {kw.arg!r} given twice")
                kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
            raise UserError(f"{ref!r}: arguments must be key=value literals, each given once ({e})") from None
    params = inspect.signature(QUANTIZERS[name].__init__).parameters
    for key in kwargs:
        if key not in params or key == "self":
            valid = [p for p in params if p != "self"]
            raise UserError(f"{ref!r}: quantizer {name!r} has no argument {key!r}; "
                            f"it takes: {', '.join(valid) or 'none'}")
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
