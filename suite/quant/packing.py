"""Saved tensors in the fewest bits: what a quantized layer keeps for its backward pass.

A binary layer's backward pass needs its quantized input and weights (the matrix product's
saved operands) and its straight-through masks, all of which take few values: sign(x) is +-1
(1 bit), a mask 0/1 (1 bit), sign(x) after dropout 0 or +-s (2 bits), DoReFa's k-bit activations
j / (2^k - 1) (k bits). Autograd saves them as float32 (32 bits). Here a quantizer that knows its
output takes few values says so (`mark`, with the affine map from integer codes to values), and
the layer runs its forward under `saving_in_bits()`, torch's saved-tensor hooks
(torch.autograd.graph.saved_tensors_hooks): a saved tensor that was marked is stored as its codes
in `bits` bit planes (`pack_codes`), a bool tensor (dropout's mask) as 1 bit per
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


def _bit_axes(bits: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(plane numbers, bit places, 1) as uint8 tensors that broadcast over (plane, place, byte): on
    the CPU a shift or mask by a tensor is vectorized, by a Python scalar several times slower."""
    def axis(n, dim):
        return torch.arange(n, dtype=torch.uint8, device=device).view([-1 if d == dim else 1 for d in range(3)])
    return axis(bits, 0), axis(8, 1), torch.ones(1, 1, 1, dtype=torch.uint8, device=device)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes < 2^bits (flat, n of them) -> (bits, m) uint8 bit planes, m = ceil(n / 8): bit r
    of byte j of plane b is bit b of code r m + j (the codes padded to 8 m, seen as 8 rows of m;
    this layout reduces over a leading axis, 4-5 times faster than 8 neighbours per byte on the CPU).
    The shifted bits are distinct powers of 2, so their uint8 sum is their OR."""
    planes, places, one = _bit_axes(bits, codes.device)
    rows = torch.nn.functional.pad(codes, (0, -codes.numel() % 8)).view(8, -1)
    return ((rows >> planes) & one).bitwise_left_shift_(places).sum(1, dtype=torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The inverse of `pack_codes`: (bits, m) bit planes -> the first `count` uint8 codes (flat)."""
    planes, places, one = _bit_axes(bits, packed.device)
    rows = ((packed.unsqueeze(1) >> places) & one).bitwise_left_shift_(planes).sum(0, dtype=torch.uint8)
    return rows.view(-1)[:count]


def _hint(t: torch.Tensor):
    entry = _table().get(id(t))
    if entry is None or entry[0]() is not t:
        return None
    return entry[1:]


class Packed:
    """A tensor's codes in bit planes, with what it takes to get the tensor back."""

    __slots__ = ("planes", "bits", "scale", "offset", "divisor", "shape", "dtype", "count")

    def __init__(self, t: torch.Tensor, bits: int, scale: float, offset: float, divisor: float = 1.0):
        with torch.no_grad():
            codes = t.detach().reshape(-1)
            codes = codes.to(torch.uint8) if t.dtype == torch.bool else \
                codes.mul(divisor).sub_(offset).div_(scale).round_().to(torch.uint8)
        self.planes = pack_codes(codes, bits)
        self.bits, self.scale, self.offset, self.divisor = bits, scale, offset, divisor
        self.shape, self.dtype, self.count = t.shape, t.dtype, t.numel()

    def unpack(self) -> torch.Tensor:
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
