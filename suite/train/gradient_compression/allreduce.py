"""The float32 reference: DDP's own exchange (one all-reduce of each bucket, then divided by the
world size), as a hook so that its bytes are counted like the compressed methods'."""

from __future__ import annotations

import torch
import torch.distributed as dist

from suite.train.gradient_compression.base import CompressionHook


class AllReduce(CompressionHook):
    """Sum of the ranks' float gradients, divided by W: 4 bytes per value (float32 buckets)."""

    name = "allreduce"

    def communicate(self, bucket) -> torch.futures.Future:
        buf = bucket.buffer()
        self.count("float", buf)
        work = dist.all_reduce(buf, group=self.group, async_op=True)
        world = self.world
        return work.get_future().then(lambda fut: fut.value()[0].div_(world))
