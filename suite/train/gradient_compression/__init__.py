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

from suite.errors import UserError
from suite.train.gradient_compression.allreduce import AllReduce
from suite.train.gradient_compression.base import CompressionHook, ddp_hook
from suite.train.gradient_compression.dropping import GradientDropping
from suite.train.gradient_compression.terngrad import TernGrad
from suite.typed import parse_call

COMPRESSIONS: dict[str, type[CompressionHook]] = {c.name: c for c in (AllReduce, TernGrad, GradientDropping)}
NONE = "none"  # no hook: DDP's built-in all-reduce (bytes not counted)



def parse(ref: str) -> tuple[str, dict]:
    """``"terngrad(clip=0)"`` -> ``("terngrad", {"clip": 0})``, checked against the class signature."""
    return parse_call(ref, COMPRESSIONS, "gradient compression", f"{NONE}, {', '.join(COMPRESSIONS)}")


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
