"""Saved tensors in the fewest bits: what a quantized layer keeps for its backward pass.

A binary layer's backward pass needs its quantized input and weights (the matrix product's
saved operands) and its straight-through masks, all of which take few values: sign(x) is +-1
(1 bit), a mask 0/1 (1 bit), sign(x) after dropout 0 or +-s (2 bits), DoReFa's k-bit activations
j / (2^k - 1) (k bits). Autograd saves them as float32 (32 bits). Here a quantizer that knows its
output takes few values says so (`mark`, with the affine map from integer codes to values), and
the layer runs its forward under `saving_in_bits()`, torch's saved-tensor hooks
(torch.autograd.graph.saved_tensors_hooks): a saved tensor that was marked is stored as its codes
in `bits` bit planes (`suite.nn.latent.pack_codes`), a bool tensor (dropout's mask) as 1 bit per
element, anything else as is. The backward pass gets back exactly the values that were saved
(codes are exact), so its gradients are those of the float-saved path, bit for bit.
"""

from __future__ import annotations

import contextlib
import threading
import weakref

import torch

_marks = threading.local()


def _table() -> dict:
    if not hasattr(_marks, "table"):
        _marks.table = {}
    return _marks.table


def mark(t: torch.Tensor, bits: int, scale: float, offset: float, divisor: float = 1.0) -> torch.Tensor:
    """Declare that t = (scale * c + offset) / divisor with integer codes c in [0, 2^bits), computed
    in t's dtype as written (so that the values come back bit for bit); returns t."""
    table = _table()
    key = id(t)
    table[key] = (weakref.ref(t, lambda _, key=key: table.pop(key, None)), bits, float(scale), float(offset),
                  float(divisor))
    return t


def _hint(t: torch.Tensor):
    entry = _table().get(id(t))
    if entry is None or entry[0]() is not t:
        return None
    return entry[1:]


class Packed:
    """A tensor's codes in bit planes, with what it takes to get the tensor back."""

    __slots__ = ("planes", "bits", "scale", "offset", "divisor", "shape", "dtype", "count")

    def __init__(self, t: torch.Tensor, bits: int, scale: float, offset: float, divisor: float = 1.0):
        from suite.nn.latent import pack_codes

        with torch.no_grad():
            codes = t.detach().reshape(-1)
            codes = codes.to(torch.uint8) if t.dtype == torch.bool else \
                codes.mul(divisor).sub_(offset).div_(scale).round_().to(torch.uint8)
        self.planes = pack_codes(codes, bits)
        self.bits, self.scale, self.offset, self.divisor = bits, scale, offset, divisor
        self.shape, self.dtype, self.count = t.shape, t.dtype, t.numel()

    def unpack(self) -> torch.Tensor:
        from suite.nn.latent import unpack_codes

        codes = unpack_codes(self.planes, self.bits, self.count).view(self.shape)
        if self.dtype == torch.bool:
            return codes.bool()
        out = codes.to(self.dtype).mul_(self.scale).add_(self.offset)
        return out.div_(self.divisor) if self.divisor != 1.0 else out


class PackedView:
    """A view (a transpose: what a linear layer saves of its weights) of a marked tensor."""

    __slots__ = ("base", "size", "stride", "offset")

    def __init__(self, base: Packed, view: torch.Tensor):
        self.base, self.size, self.stride, self.offset = base, view.size(), view.stride(), view.storage_offset()

    def unpack(self) -> torch.Tensor:
        return self.base.unpack().as_strided(self.size, self.stride, self.offset)


def _pack(t: torch.Tensor):
    if t.dtype == torch.bool and t.numel() >= 64:
        return Packed(t, 1, 1.0, 0.0)
    if t.layout != torch.strided or t.numel() < 64:
        return t
    hint = _hint(t)
    if hint is not None:
        return Packed(t, *hint)
    base = t._base
    hint = _hint(base) if base is not None else None
    if hint is not None and base.is_contiguous() and base.storage_offset() == 0:
        return PackedView(Packed(base, *hint), t)
    return t


def _unpack(saved):
    return saved.unpack() if isinstance(saved, (Packed, PackedView)) else saved


def saving_in_bits():
    """The context a quantized layer's forward runs in to save marked tensors as codes."""
    return torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)


@contextlib.contextmanager
def nothing():
    yield
