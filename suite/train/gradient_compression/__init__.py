"""Gradient compression between data-parallel ranks: DDP communication hooks, one file per method.

==========================================  =========================================================
reference (defaults)                        what each rank sends per step
==========================================  =========================================================
allreduce                                   float32 gradients (DDP's own exchange, bytes counted)
terngrad(clip=2.5, share_scalers=true,      2 bits per value + one float32 scaler per layer (TernGrad,
         min_size=1, quantize_logits=true)  Wen et al. 2017); clip=0: TernGrad-noclip
gradient_dropping(rate=0.99,                the largest (1 - rate) of |grad + residual|: float32
                  scope="bucket")           value + int32 index each (Aji and Heafield 2017)
==========================================  =========================================================

Use: ``hook = attach(ddp_model, "terngrad(clip=2.5)")`` registers the hook on a
DistributedDataParallel model and returns its state; ``hook.summary()`` (bytes per step, by part)
is what a record stores, ``hook.state_dict()`` what a checkpoint stores (TernGrad's generator,
gradient dropping's residuals). References are written as quantizers are, ``name(key=value, ...)``.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re

from suite.errors import UserError
from suite.train.gradient_compression.allreduce import AllReduce
from suite.train.gradient_compression.base import CompressionHook, ddp_hook
from suite.train.gradient_compression.dropping import GradientDropping
from suite.train.gradient_compression.terngrad import TernGrad

COMPRESSIONS: dict[str, type[CompressionHook]] = {c.name: c for c in (AllReduce, TernGrad, GradientDropping)}
NONE = "none"  # no hook: DDP's built-in all-reduce (bytes not counted)

_REF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def parse(ref: str) -> tuple[str, dict]:
    """``"terngrad(clip=0)"`` -> ``("terngrad", {"clip": 0})``, checked against the class signature."""
    m = _REF.match(ref)
    if not m:
        raise UserError(f"{ref!r}: expected NAME or NAME(key=value, ...)")
    name, args = m.group(1), m.group(2)
    if name not in COMPRESSIONS:
        close = difflib.get_close_matches(name, list(COMPRESSIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown gradient compression {name!r}{hint}; known: {NONE}, {', '.join(COMPRESSIONS)}")
    kwargs = {}
    if args and args.strip():
        src = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", args))  # TOML-style booleans
        try:
            call = ast.parse(f"f({src})", mode="eval").body
            if call.args:
                raise ValueError("positional arguments")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise UserError(f"{ref!r}: arguments must be key=value literals ({e})") from None
    valid = [p for p in inspect.signature(COMPRESSIONS[name].__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in valid:
            raise UserError(f"{ref!r}: {name!r} has no argument {key!r}; it takes: {', '.join(valid) or 'none'}")
    return name, kwargs


def build(ref: str) -> CompressionHook | None:
    """A fresh hook state for a reference; None for "none" (keep DDP's own all-reduce)."""
    if ref == NONE:
        return None
    name, kwargs = parse(ref)
    try:
        return COMPRESSIONS[name](**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{ref!r}: {e}") from None


def attach(ddp_model, ref: str, process_group=None) -> CompressionHook | None:
    """Register the referenced hook on a DistributedDataParallel model (before its first backward
    pass); returns the hook's state (None for "none")."""
    hook = build(ref)
    if hook is not None:
        hook.bind(ddp_model.module, process_group)
        ddp_model.register_comm_hook(hook, ddp_hook)
    return hook


__all__ = ["COMPRESSIONS", "NONE", "AllReduce", "CompressionHook", "GradientDropping", "TernGrad", "attach",
           "build", "ddp_hook", "parse"]
