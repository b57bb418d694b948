"""Tensor memory on the CPU, counted exactly by the allocator every tensor comes from.

What is measured: the bytes held by CPU tensor storages (parameters, buffers, gradients,
optimizer state, saved activations, temporaries), per epoch

    peak_tensor_mb   the largest total held during the epoch's training part, the data set's
                     tensors left out (they are the same for every method);
    step_tensor_mb   the largest rise within one step above what was held when the step began:
                     what a step needs on top of the model and the optimizer state (activations
                     kept for the backward pass, gradients, temporaries).

How (`tensor_memory.cpp`): every CPU storage ATen makes comes from c10's CPU allocator
(``c10::GetCPUAllocator()``, settable by ``c10::SetCPUAllocator``). A small C++ extension
installs a wrapper over the allocator in place: each request goes to that allocator unchanged
(same blocks, same alignment, same glibc settings), and the wrapper adds the block's requested
size to a counter and records it in a table; freeing a block it made subtracts that size.
Current, peak and the per-step rise are kept under one mutex, so the figures are exact byte
counts (the same numbers as ``untyped_storage().nbytes()`` summed over the live storages),
whatever the threads do.

Why this method: it costs nothing per step (a table insert and erase per allocation, measured
below the noise of a training step), needs no sampling thread and no profiler, and sees every
tensor, including those autograd saves for the backward pass and the temporaries of a single
op. torch.profiler's memory events (``profile_memory=True``) report the same allocations, but
record every op with its shapes and slow small steps several-fold, and give a trace to post-process
rather than a peak; torch has no CPU counterpart of ``torch.cuda.max_memory_allocated``.

Limits (what the count does not see):
- blocks that bypass c10's allocator: tensors over numpy arrays (``torch.from_numpy``) or
  memory-mapped files, pinned host memory (CUDA's host allocator), and the libraries' own buffers
  (BLAS packing buffers, oneDNN's primitive caches; oneDNN's per-op scratchpad does come from
  c10's allocator and is counted);
- blocks allocated before installation: they are not counted, nor subtracted when freed. Install
  it before the model is built (`TensorMemory` does so when it is made); `TensorMemory(model=...)`
  checks that the model's tensors are counted and says so otherwise;
- another CPU allocator (one of higher priority, or one that replaces this wrapper later): then
  nothing is counted and the figures are None, with `method` saying why. The same where the
  extension cannot be built (no C++ compiler), or with SUITE_TENSOR_MEMORY=0;
- on CUDA the training tensors live in CUDA's caching allocator: `peak_tensor_mb` is then
  ``torch.cuda.max_memory_allocated`` (read, never reset here, so the CUDA peak beside it stays
  untouched) and `step_tensor_mb` is None (it would need resetting CUDA's peak every step).

The harness calls it around an epoch as it calls `measure.PeakMemory`: ``reset()`` before the
first step, ``step()`` at the end of every step (an optimizer step post-hook does it without
touching the training loops: ``optimizer.register_step_post_hook(lambda *_: meter.step())``),
``read()`` after the last. None of them synchronizes a device or touches a tensor.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from suite import settings

ENV = "SUITE_TENSOR_MEMORY"  # "0": do not install the counting allocator
_SOURCE = Path(__file__).with_name("tensor_memory.cpp")
_NAME = "lowbit_suite_tensor_memory"
MIB = 2**20

_lock = threading.Lock()
_module = None
_error: str | None = None  # why nothing is counted


def _env_off() -> bool:
    return settings.tensor_memory_off()


def install() -> str | None:
    """Build (first time on this machine, about 30 s) and install the counting CPU allocator;
    None when it counts, else why not. Idempotent."""
    global _module, _error
    with _lock:
        if _module is not None:
            why = _module.install() or None  # "" when ours is (still) the CPU allocator
            _error = why
            return why
        if _error is not None:
            return _error
        if _env_off():
            _error = f"off ({ENV}=0)"
            return _error
        try:
            _module = _build()
        except Exception as e:  # no compiler, no headers: say why, count nothing
            lines = [line for line in str(e).strip().splitlines() if line.strip()]
            _error = f"the counting allocator could not be built ({type(e).__name__}: {lines[-1] if lines else ''})"
            warnings.warn(f"suite: {_error[:300]}; tensor memory is not measured", RuntimeWarning, stacklevel=2)
            return _error
        _error = _module.install() or None
        return _error


def _build():
    from suite.extensions import load

    return load(_NAME, _SOURCE, "the counting CPU allocator", ["-O2"])


def status() -> str:
    """For records: "counting" or why tensor memory is not measured on the CPU."""
    if _module is not None and _module.active():
        return "counting"
    return _error or "not installed"


def counts() -> dict[str, int] | None:
    """Raw counters (bytes): current, peak since reset, step rise, allocations; None if not counting."""
    if _module is None or not _module.active():
        return None
    current, peak, step, allocations = _module.read()
    return {"current": current, "peak": peak, "step": step, "allocations": allocations}


def counted_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct CPU storages behind `tensors` that the counting allocator holds
    (views of one storage count once; storages it did not make count 0)."""
    if _module is None:
        return 0
    seen, total = set(), 0
    for t in tensors:
        if t.device.type != "cpu":
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr and ptr not in seen:
            seen.add(ptr)
            total += max(_module.block_bytes(ptr), 0)
    return total


def _model_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


class TensorMemory:
    """Per-epoch tensor memory: ``reset()`` / ``step()`` at each step's end / ``read()``.

    `exclude`: tensors held throughout that are not training state (the data splits), left out of
    `peak_tensor_mb`. `model`: checked to be counted (made after installation); if some of its
    tensors are not, the figures are None and `method` says why.
    """

    def __init__(self, device: torch.device, exclude: Iterable[torch.Tensor] = (),
                 model: torch.nn.Module | None = None):
        self.device = torch.device(device)
        self.exclude = [t for t in exclude if isinstance(t, torch.Tensor)]
        self._excluded = 0
        if self.device.type == "cuda":
            self.method = "cuda max_memory_allocated (no step figure)"
            return
        why = install()
        if why is None and model is not None:
            missing = sum(t.untyped_storage().nbytes() for t in _model_tensors(model) if t.device.type == "cpu"
                          and t.untyped_storage().nbytes() and counted_bytes([t]) == 0)
            if missing:
                why = (f"{missing / MIB:.1f} MiB of the model's tensors were allocated before the counting allocator "
                       "was installed (make TensorMemory before building the model)")
        self.method = "cpu allocator (counting)" if why is None else f"unavailable: {why}"

    @property
    def counting(self) -> bool:
        return self.method == "cpu allocator (counting)" and status() == "counting"

    def reset(self) -> None:
        if self.counting:
            self._excluded = counted_bytes(self.exclude)
            _module.reset()

    def step(self) -> None:
        """A step boundary (the end of one step, the start of the next); O(1), no device sync."""
        if self.counting:
            _module.mark_step()

    def read(self) -> dict[str, float | None]:
        if self.device.type == "cuda":
            return {"peak_tensor_mb": torch.cuda.max_memory_allocated(self.device) / MIB, "step_tensor_mb": None}
        c = counts() if self.counting else None
        if c is None:
            return {"peak_tensor_mb": None, "step_tensor_mb": None}
        return {"peak_tensor_mb": (c["peak"] - self._excluded) / MIB, "step_tensor_mb": c["step"] / MIB}
