"""Bit accounting: how much memory the weights take at inference, per layer and in total."""

from __future__ import annotations

import torch.nn as nn

from suite.nn.layers import _QuantMixin


def _weight_bits(module: nn.Module) -> int:
    q = getattr(module, "weight_quantizer", None)
    return int(getattr(q, "bits", 32)) if q is not None else 32


def weight_memory(model: nn.Module) -> dict:
    """Inference weight memory: quantized layers' weights at their quantizer's bits, every other
    parameter (biases, BatchNorm, float layers) at 32 bits.

    Returns the rows, totals in bits and bytes, the float32 equivalent, the saving factor of the
    whole model and that of the quantized layers' weights alone.
    """
    rows = []
    seen = set()
    for name, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            quantized = isinstance(m, _QuantMixin) and pname == "weight"
            bits = _weight_bits(m) if quantized else 32
            rows.append({"layer": name, "param": pname, "count": p.numel(), "bits": bits, "quantized": quantized})
    quantized = [r for r in rows if r.get("quantized")]
    q_bits = sum(r["count"] * r["bits"] for r in quantized)
    total_bits = sum(r["count"] * r["bits"] for r in rows)
    float_bits = sum(r["count"] * 32 for r in rows)
    return {"layers": rows, "total_bits": total_bits, "total_bytes": total_bits / 8,
            "float32_bytes": float_bits / 8, "saving": float_bits / total_bits if total_bits else 1.0,
            # the saving over the quantized layers' weights alone (32x for binary weights)
            "quantized_saving": sum(r["count"] * 32 for r in quantized) / q_bits if q_bits else 1.0}
