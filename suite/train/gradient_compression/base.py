"""The part every gradient-compression hook shares: binding to a DDP model and process group,
the layout of a DDP bucket, one all-gather of a byte message per bucket, and the byte counts.

DDP calls ``hook(state, bucket)`` once per gradient bucket in each backward pass with this rank's
local gradients flattened in ``bucket.buffer()`` (not yet averaged: a registered hook replaces
DDP's own all-reduce and its division by the world size) and expects a Future of the averaged
flat gradient. Byte counts are the sizes of the tensors this rank hands to the collectives
(``numel * element_size``, known on the host: no device sync), added up per backward pass. What a
collective then moves per rank depends on its algorithm: a ring all-gather sends (W - 1) times
the rank's input, a ring all-reduce about 2 (W - 1) / W times it, so with W = 2 both send exactly
the input once, and the counts here are what crosses the wire per rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

# torch >= 2.10 renamed all_gather_into_tensor (deprecated since) to all_gather_single.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass(frozen=True)
class Segment:
    """One parameter's gradient inside a bucket: buffer[start:end], and the parameter's index in
    the module (stable across DDP's bucket rebuilds, unlike positions within buckets)."""
    index: int
    start: int
    end: int

    @property
    def numel(self) -> int:
        return self.end - self.start


class CompressionHook:
    """State of one DDP communication hook (a subclass per method). ``attach`` binds it to the
    model and registers it; ``summary()`` is what a record stores."""

    name = "base"

    def __init__(self):
        self.group = None
        self.world = 1
        self.rank = 0
        self._param_index: dict[int, int] = {}
        self._current: dict[str, int] = {}
        self.last_step: dict[str, int] = {}  # bytes sent in the last complete backward pass, by part
        self.total_bytes_sent = 0
        self.steps = 0

    # ------------------------------------------------------------------ set-up
    def bind(self, module: torch.nn.Module, group=None) -> None:
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self._param_index = {id(p): i for i, p in enumerate(module.parameters())}

    def segments(self, bucket) -> list[Segment]:
        """The bucket's parameters and where their gradients lie in its flat buffer (DDP lays them
        out contiguously in the order of ``bucket.parameters()``)."""
        out, start = [], 0
        for p in bucket.parameters():
            out.append(Segment(self._param_index[id(p)], start, start + p.numel()))
            start += p.numel()
        if start != bucket.buffer().numel():
            raise RuntimeError(f"DDP bucket of {bucket.buffer().numel()} values holds parameters of {start}")
        return out

    # ------------------------------------------------------------------ bytes
    def count(self, part: str, t: torch.Tensor) -> None:
        self._current[part] = self._current.get(part, 0) + t.numel() * t.element_size()

    def end_bucket(self, bucket) -> None:
        """After the last bucket of a backward pass: that pass's counts become `last_step`."""
        if bucket.is_last():
            self.last_step = dict(self._current)
            self.total_bytes_sent += sum(self._current.values())
            self.steps += 1
            self._current = {}

    @property
    def bytes_per_step(self) -> int:
        return sum(self.last_step.values())

    def summary(self) -> dict:
        """For a record: bytes sent per step (total and by part), steps and the method's options."""
        return {"method": self.name, "options": self.options(), "world_size": self.world,
                "bytes_per_step": self.bytes_per_step, "bytes_per_step_by_part": dict(self.last_step),
                "steps": self.steps, "total_bytes_sent": self.total_bytes_sent}

    def options(self) -> dict:
        return {}

    # ------------------------------------------------------------------ communication
    def communicate(self, bucket) -> torch.futures.Future:
        raise NotImplementedError

    def all_gather_bytes(self, payload: torch.Tensor, part: str | None = "payload") -> tuple[torch.Future,
                                                                                          torch.Tensor]:
        """Start gathering every rank's uint8 `payload` (equal sizes on all ranks, a multiple of 4
        bytes) into one (world, size) buffer; returns the collective's future and the buffer.
        `part` names the payload in the byte counts (None: the caller counted it by parts)."""
        if part:
            self.count(part, payload)
        out = payload.new_empty(self.world * payload.numel())
        work = _all_gather_single(out, payload, group=self.group, async_op=True)
        return work.get_future(), out.view(self.world, -1)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"total_bytes_sent": self.total_bytes_sent, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.total_bytes_sent, self.steps = state["total_bytes_sent"], state["steps"]


def ddp_hook(state, bucket):
    """The function DDP calls (``register_comm_hook(state, ddp_hook)``); the state does the work.
    (No annotations: DDP checks them against the objects, and this module's are strings.)"""
    fut = state.communicate(bucket)
    state.end_bucket(bucket)
    return fut
