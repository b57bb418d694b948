"""Name -> quantizer class, and parsing of ``name(key=value, ...)`` references from specs."""

import ast
import difflib
import inspect
import re

import torch.nn as nn

from suite.errors import UserError

QUANTIZERS: dict[str, type[nn.Module]] = {}

_REF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def register(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make a quantizer available to specs under its `name` attribute."""
    QUANTIZERS[cls.name] = cls
    return cls


def parse_quantizer(ref: str) -> tuple[str, dict]:
    """``"dorefa(bits=2)"`` -> ``("dorefa", {"bits": 2})``, checked against the class signature."""
    m = _REF.match(ref)
    if not m:
        raise UserError(f"{ref!r}: expected NAME or NAME(key=value, ...)")
    name, args = m.group(1), m.group(2)
    if name not in QUANTIZERS:
        close = difflib.get_close_matches(name, list(QUANTIZERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown quantizer {name!r}{hint}; known: {', '.join(sorted(QUANTIZERS))}")
    kwargs = {}
    if args and args.strip():
        # TOML-style booleans are accepted too: stochastic=true
        src = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", args))
        try:
            call = ast.parse(f"f({src})", mode="eval").body
            if call.args:
                raise ValueError("positional arguments")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise UserError(f"{ref!r}: arguments must be key=value literals ({e})") from None
    params = inspect.signature(QUANTIZERS[name].__init__).parameters
    for key in kwargs:
        if key not in params or key == "self":
            valid = [p for p in params if p != "self"]
            raise UserError(f"{ref!r}: quantizer {name!r} has no argument {key!r}; "
                            f"it takes: {', '.join(valid) or 'none'}")
    return name, kwargs


def build_quantizer(ref: str | None) -> nn.Module | None:
    """A fresh quantizer module for a spec reference; None for "none"/None (full precision)."""
    if ref is None or ref == "none":
        return None
    name, kwargs = parse_quantizer(ref)
    try:
        return QUANTIZERS[name](**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{ref!r}: {e}") from None
