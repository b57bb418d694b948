"""The bytes a forward pass allocates, measured from the tensors it creates.

A TorchDispatchMode sees every op's outputs; each output's storage is counted once (views share
it) from its creation until the last tensor using it is garbage-collected, so the running total
is the bytes held by tensors the pass created, and its maximum the pass's peak. Storages that
existed before (inputs, weights) are not counted; what the allocator itself rounds or caches is
not seen (this is the tensors' memory, not the process's).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass
class ForwardMemory:
    peak_bytes: int = 0  # most bytes held at once by tensors the pass created
    largest_bytes: int = 0  # the largest single storage it created
    allocated_bytes: int = 0  # all storages it created, summed


class _Tracker(TorchDispatchMode):
    def __init__(self, existing: set[int]):
        super().__init__()
        self.existing = existing
        self.refs: dict[int, list[int]] = {}  # storage pointer -> [bytes, live tensors]
        self.live = 0
        self.stats = ForwardMemory()

    def _release(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.existing or storage.nbytes() == 0:
                continue
            entry = self.refs.get(key)
            if entry is None:
                entry = self.refs[key] = [storage.nbytes(), 0]
                self.live += entry[0]
                self.stats.allocated_bytes += entry[0]
                self.stats.largest_bytes = max(self.stats.largest_bytes, entry[0])
                self.stats.peak_bytes = max(self.stats.peak_bytes, self.live)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


def measure_forward(fn, *pre_existing: torch.Tensor) -> ForwardMemory:
    """Run fn() once and return what its forward allocated; `pre_existing` tensors (inputs,
    weights) and their views are not counted."""
    existing = {t.untyped_storage().data_ptr() for t in pre_existing}
    tracker = _Tracker(existing)
    with torch.inference_mode(), tracker:
        out = fn()
    del out
    return tracker.stats
