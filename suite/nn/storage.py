"""Bytes a run's tensors occupy, measured from their storages (not computed from shapes and bit
widths): the model's weights (parameters and buffers, latent codes included), the latent weights
of its quantized layers, and the optimizer's state."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from suite.nn.layers import _QuantMixin


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views of one storage count once)."""
    sizes: dict[tuple[str, int], int] = {}
    for t in tensors:
        s = t.untyped_storage()
        key = (str(t.device), s.data_ptr())
        sizes[key] = max(sizes.get(key, 0), s.nbytes())
    return sum(sizes.values())


def latent_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The latent weights of the quantized layers: float `weight` parameters, or k-bit codes and
    scale (`suite/nn/latent.py`)."""
    out = []
    for m in model.modules():
        if isinstance(m, _QuantMixin) and getattr(m, "weight_quantizer", None) is not None:
            latent = getattr(m, "latent", None)
            out += list(latent.buffers()) if latent is not None else [m.weight]
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def run_storage(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """The bytes a run keeps between steps, for the record's summary."""
    return {"weight_storage_bytes": storage_bytes([*model.parameters(), *model.buffers()]),
            "latent_weight_bytes": storage_bytes(latent_tensors(model)),
            "optimizer_state_bytes": storage_bytes(optimizer_tensors(optimizer))}
