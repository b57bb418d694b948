"""Bit accounting: how much memory the weights take at inference, and how many multiply-accumulates
of each precision a forward pass costs, per layer and in total."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from tabulate import tabulate

from suite.nn.layers import _QuantMixin

# MAC kinds, by the precision of the two operands (weight bits, input bits):
#   binary         1 x 1     XNOR + popcount (BNN, XNOR-Net)
#   binary-weight  1 x 32    additions and subtractions only (BinaryConnect, BWN)
#   k-bit          any other pair with an operand below 32 bits (DoReFa's bit-plane kernels, ternary)
#   float          32 x 32
MAC_KINDS = ("binary", "binary-weight", "k-bit", "float")


def _bits(q) -> int:
    return int(getattr(q, "bits", 32)) if q is not None else 32


def _weight_bits(module: nn.Module) -> int:
    return _bits(getattr(module, "weight_quantizer", None))


def _named_weights(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A layer's own parameters; k-bit latent weights (suite/nn/latent.py), which are no
    parameter, count as its `weight` (a shape-only stand-in: at inference they are its binary weights)."""
    named = list(module.named_parameters(recurse=False))
    latent = getattr(module, "latent", None)
    if isinstance(module, _QuantMixin) and latent is not None:
        named.insert(0, ("weight", torch.empty(latent.shape, device="meta")))
    return named


def _stored_scales(module: nn.Module) -> int:
    """Float scale factors a weight quantizer keeps beside the quantized weights (XNOR's alpha)."""
    q = getattr(module, "weight_quantizer", None)
    fn = getattr(q, "stored_scales", None)
    return int(fn(module.weight)) if fn is not None else 0


def mac_kind(weight_bits: int, input_bits: int) -> str:
    if weight_bits >= 32 and input_bits >= 32:
        return "float"
    if weight_bits == 1:
        return "binary" if input_bits == 1 else "binary-weight" if input_bits >= 32 else "k-bit"
    return "k-bit"


def weight_memory(model: nn.Module) -> dict:
    """Inference weight memory: quantized layers' weights at their quantizer's bits, the float
    scale factors their quantizers keep (rows with param "weight.scales", e.g. XNOR-Net's alpha per
    output channel), every other parameter (biases, BatchNorm, float layers) at 32 bits.

    Returns the rows, totals in bits and bytes, the float32 equivalent (the model's parameters in
    float32; the scale rows do not exist in a float model), the saving factor of the whole model
    and that of the quantized layers' weights alone (their scales included).
    """
    rows = []
    seen = set()
    named = [(name, m, _named_weights(m)) for name, m in model.named_modules()]  # alive: ids stay unique
    for name, m, weights in named:
        for pname, p in weights:
            if id(p) in seen:
                continue
            seen.add(id(p))
            quantized = isinstance(m, _QuantMixin) and pname == "weight"
            bits = _weight_bits(m) if quantized else 32
            rows.append({"layer": name, "param": pname, "count": p.numel(), "bits": bits, "quantized": quantized})
            scales = _stored_scales(m) if quantized else 0
            if scales:
                rows.append({"layer": name, "param": "weight.scales", "count": scales, "bits": 32,
                             "quantized": False, "derived": True})
    quantized = [r for r in rows if r["quantized"]]
    q_layers = {r["layer"] for r in quantized}
    q_scales = [r for r in rows if r.get("derived") and r["layer"] in q_layers]
    q_bits = sum(r["count"] * r["bits"] for r in quantized + q_scales)
    total_bits = sum(r["count"] * r["bits"] for r in rows)
    float_bits = sum(r["count"] * 32 for r in rows if not r.get("derived"))
    return {"layers": rows, "total_bits": total_bits, "total_bytes": total_bits / 8,
            "float32_bytes": float_bits / 8, "saving": float_bits / total_bits if total_bits else 1.0,
            # the saving over the quantized layers' weights alone (32x for binary weights)
            "quantized_saving": sum(r["count"] * 32 for r in quantized) / q_bits if q_bits else 1.0}


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call: each output value is a dot product of fan-in terms."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


@torch.no_grad()
def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Per layer (every Linear and Conv, quantized or not): parameters, bits per weight and per
    input, weight memory at inference, and the multiply-accumulates of a forward pass of one
    sample of shape `input_shape` (no batch axis), by kind (MAC_KINDS); totals with the memory
    saving and the share of binary MACs.

    MACs are counted by forward hooks on a dummy input, so shared or repeated layers count every
    call. Only the products of the layer count; XNOR-Net's scaling by K alpha and the biases are
    one float operation per output, not per MAC, and are left out (as in the paper's count).
    """
    mem = weight_memory(model)
    by_layer: dict[str, list[dict]] = {}
    for r in mem["layers"]:
        by_layer.setdefault(r["layer"], []).append(r)
    counted = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # (transposed convolutions count differently)
    macs: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, counted):
            def hook(mod, inputs, output, name=name):
                macs[name] = macs.get(name, 0) + _macs(mod, output)
            hooks.append(m.register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else None,
                    dtype=param.dtype if param is not None else None)
    try:
        model.eval()
        model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode

    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, counted):
            continue
        params = by_layer.get(name, [])
        w_bits = _weight_bits(m) if isinstance(m, _QuantMixin) else 32
        a_bits = _bits(getattr(m, "input_quantizer", None))
        weight_bits_total = sum(r["count"] * r["bits"] for r in params if r["param"] in ("weight", "weight.scales"))
        rows.append({"layer": name, "type": type(m).__name__,
                     "params": sum(r["count"] for r in params if not r.get("derived")),
                     "weight_bits": w_bits, "input_bits": a_bits,
                     "gradient_bits": _bits(getattr(m, "gradient_quantizer", None)),
                     "weight_bytes": weight_bits_total / 8,
                     "float32_weight_bytes": dict(_named_weights(m))["weight"].numel() * 4,
                     "memory_bytes": sum(r["count"] * r["bits"] for r in params) / 8,
                     "macs": macs.get(name, 0), "mac_kind": mac_kind(w_bits, a_bits),
                     "precision": f"W{w_bits}A{a_bits}"})
    in_rows = {r["layer"] for r in rows}
    other = [r for r in mem["layers"] if r["layer"] not in in_rows]
    by_kind = {k: sum(r["macs"] for r in rows if r["mac_kind"] == k) for k in MAC_KINDS}
    total_macs = sum(by_kind.values())
    totals = {"params": sum(r["count"] for r in mem["layers"] if not r.get("derived")),
              "other_params": sum(r["count"] for r in other if not r.get("derived")),
              "other_bytes": sum(r["count"] * r["bits"] for r in other) / 8,
              "memory_bytes": mem["total_bytes"], "float32_bytes": mem["float32_bytes"],
              "saving": mem["saving"], "quantized_saving": mem["quantized_saving"],
              "macs": total_macs, "macs_by_kind": by_kind,
              "binary_mac_share": by_kind["binary"] / total_macs if total_macs else 0.0,
              # MACs whose weight operand is 1 bit (binary + binary-weight)
              "binary_weight_mac_share": (by_kind["binary"] + by_kind["binary-weight"]) / total_macs
              if total_macs else 0.0}
    return {"input_shape": tuple(input_shape), "layers": rows, "totals": totals}


def _size(nbytes: float) -> str:
    for unit, div in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= div:
            return f"{nbytes / div:.1f} {unit}"
    return f"{nbytes:.0f} B"


def _count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def format_summary(summary: dict) -> str:
    """A markdown table of `model_summary`'s rows and totals, then one line of MAC shares."""
    headers = ["layer", "type", "params", "W bits", "A bits", "memory", "weight saving", "MACs", "MAC kind"]
    table = []
    for r in summary["layers"]:
        saving = r["float32_weight_bytes"] / r["weight_bytes"] if r["weight_bytes"] else 1.0
        table.append([r["layer"], r["type"], f"{r['params']:,}", r["weight_bits"], r["input_bits"],
                      _size(r["memory_bytes"]), f"{saving:.1f}x", _count(r["macs"]), r["mac_kind"]])
    t = summary["totals"]
    if t["other_params"]:
        table.append(["(other parameters)", "", f"{t['other_params']:,}", 32, "", _size(t["other_bytes"]),
                      "1.0x", "", ""])
    table.append(["**total**", "", f"{t['params']:,}", "", "", _size(t["memory_bytes"]), f"{t['saving']:.1f}x",
                  _count(t["macs"]), ""])
    kinds = ", ".join(f"{k} {_count(v)}" for k, v in t["macs_by_kind"].items() if v)
    lines = [tabulate(table, headers=headers, tablefmt="github"), "",
             f"Weight memory {_size(t['memory_bytes'])} vs {_size(t['float32_bytes'])} in float32 "
             f"({t['saving']:.1f}x less; quantized layers' weights {t['quantized_saving']:.1f}x less). "
             f"MACs per sample: {kinds or 'none'}; binary share {100 * t['binary_mac_share']:.1f}%, "
             f"1-bit-weight share {100 * t['binary_weight_mac_share']:.1f}%."]
    return "\n".join(lines)
