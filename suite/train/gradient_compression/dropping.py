"""Gradient dropping (Aji and Heafield; EMNLP 2017, "Sparse Communication for Distributed Gradient
Descent") as a DDP communication hook: each rank sends only the largest (100 - R)% of its
gradient's absolute values, as (value, index) pairs, and keeps the rest as residuals that are
added to its next gradient. The paper's Algorithm 1 (quoted in Zhou's slides "Neural Network
Approximation", Megvii 2019):

    function GRADDROP(grad, R)
        grad += residuals
        select threshold: R% of |grad| is smaller
        dropped <- 0
        dropped[i] <- grad[i]  for all i: |grad[i]| > threshold
        residuals <- grad - dropped
        return sparse(dropped)

The residuals are this rank's own (local); the ranks' sparse gradients are averaged (W ranks: the
sum of the W messages scattered into a dense gradient, divided by W).

Where the algorithm is silent, the authors' code decides (Marian, github marian-nmt/marian,
src/training/dropper.cu `GradientDropBase::dropGraph` and graph_group_async_drop.cpp): the
threshold is taken over a contiguous shard of the flat gradient of all layers (one threshold for
many layers): here `scope = "bucket"`, DDP's bucket being the flat chunk the hook is given;
`scope = "layer"` takes one threshold per parameter tensor instead. The message is float32 values
with int32 indices (their SparseTensor), 8 bytes per value sent.

Departures: the threshold is exact (torch.topk: exactly k = ceil((1 - R) n) values, ties broken by
topk) where Marian estimates it from a sample of at most 100000 |g| (so its message size varies
from step to step); a fixed k gives every rank a message of the same size, which all-gather needs.
The authors train asynchronously through a parameter server with a warm-up of dense steps and no
momentum correction by default; here the exchange is synchronous (DDP) from the first step. For
why an all-gather and not an all-reduce: the ranks' index sets differ, so their sparse messages
cannot be summed element by element without making them dense again.

nccl: values, indices and residuals stay on the bucket's device; index_add_ per rank touches each
index at most once, so the CUDA sum is deterministic too. Untested here (CPU only).
"""

from __future__ import annotations

import math

import torch

from suite.train.gradient_compression import packing
from suite.train.gradient_compression.base import CompressionHook

SCOPES = ("bucket", "layer")


def kept(n: int, rate: float) -> int:
    """How many of n values are sent at drop rate R (a fraction): ceil((1 - R) n), at least 1."""
    return max(1, math.ceil(round((1.0 - rate) * n, 9)))


class GradientDropping(CompressionHook):
    name = "gradient_dropping"

    def __init__(self, rate: float = 0.99, scope: str = "bucket"):
        super().__init__()
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"rate (the drop rate R as a fraction) must be in [0, 1), got {rate!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.rate, self.scope = float(rate), scope
        self.residuals: dict[int, torch.Tensor] = {}  # parameter index -> this rank's residual

    def options(self) -> dict:
        return {"rate": self.rate, "scope": self.scope}

    def select(self, acc: torch.Tensor, segs) -> torch.Tensor:
        """Indices (int64, into the bucket) of the values sent: the largest |acc| per scope."""
        if self.scope == "bucket":
            return torch.topk(acc.abs(), kept(acc.numel(), self.rate), sorted=False).indices
        return torch.cat([torch.topk(acc[s.start:s.end].abs(), kept(s.numel, self.rate), sorted=False).indices
                          + s.start for s in segs])

    def communicate(self, bucket) -> torch.futures.Future:
        buf = bucket.buffer()
        segs = self.segments(bucket)
        acc = buf.clone()
        for s in segs:  # grad += residuals
            r = self.residuals.get(s.index)
            if r is not None:
                acc[s.start:s.end] += r.to(acc.device)  # a no-op on the CPU; after a resume on a GPU
        idx = self.select(acc, segs)
        values = acc[idx]
        acc[idx] = 0  # residuals <- grad - dropped
        for s in segs:
            self.residuals[s.index] = acc[s.start:s.end].clone()
        self.count("values", values)
        index32 = idx.to(torch.int32)
        self.count("indices", index32)
        value_bytes = packing.pad_to_words(packing.as_bytes(values))  # 16-bit buckets: keep int32 aligned
        pad = value_bytes.numel() - values.numel() * values.element_size()
        if pad:
            self._current["padding"] = self._current.get("padding", 0) + pad
        payload = torch.cat([value_bytes, packing.as_bytes(index32)])
        fut, gathered = self.all_gather_bytes(payload, part=None)
        k = idx.numel()
        return fut.then(lambda _: self.decode(gathered, buf, k, value_bytes.numel()))

    def decode(self, gathered: torch.Tensor, buf: torch.Tensor, k: int, vbytes: int) -> torch.Tensor:
        """The W sparse messages scattered and summed in rank order, divided by W."""
        out = torch.zeros_like(buf)
        for r in range(self.world):
            values = gathered[r, :k * buf.element_size()].view(buf.dtype)
            index = gathered[r, vbytes:vbytes + 4 * k].view(torch.int32).to(torch.int64)
            out.index_add_(0, index, values)
        return out.div_(self.world)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {**super().state_dict(), "residuals": {i: r.cpu() for i, r in self.residuals.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.residuals = dict(state["residuals"])  # moved to the bucket's device at first use below
