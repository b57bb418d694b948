"""Images kept as uint8 on the host and made model inputs one batch at a time, on the device.

A data set too large to hold as float tensors (ImageNet: 1.28 M images of 3 x 224 x 224, 150 GB
as float32) stays a uint8 tensor over a memory-mapped cache file, and `load_splits` hands the
training loop a `LazyImages` in its place: indexing it with a batch of indices (a CPU index
tensor) gathers those images on the host, moves them to the device and applies the batch
transform there (to float, scale, normalise), so the training loops' ``x[idx]`` is unchanged. A
slice is a view (nothing read: a distributed rank's part of the test set, an evaluation batch),
made a batch by `load()`. In-memory data sets never see this class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class LazyImages:
    """uint8 images N x C x H x W on the host; ``self[index]`` is the transformed batch on `device`."""

    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device | str = "cpu"):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.device.type != "cpu":
            raise ValueError(f"LazyImages holds uint8 N x C x H x W images on the CPU, got {images.dtype} "
                             f"{tuple(images.shape)} on {images.device}")
        self.images, self.transform, self.device = images, transform, torch.device(device)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def __getitem__(self, index) -> torch.Tensor | LazyImages:
        """A slice: a view of those images (nothing read); index tensor (on the CPU): the batch."""
        if isinstance(index, slice):
            return LazyImages(self.images[index], self.transform, self.device)
        if isinstance(index, torch.Tensor) and index.device.type != "cpu":
            raise ValueError("LazyImages gathers on the host: index it with CPU indices "
                             "(Splits.index_device gives where batch indices belong)")
        return self.transform(self.images[index].to(self.device, non_blocking=True))

    def load(self) -> torch.Tensor:
        """All these images as one transformed batch on the device (for a view of batch size)."""
        return self.transform(self.images.to(self.device, non_blocking=True))

    def to(self, device) -> LazyImages:
        """The same images (still on the host), batches made on `device`."""
        move = getattr(self.transform, "to", None)
        return LazyImages(self.images, move(device) if move else self.transform, device)

    def __repr__(self) -> str:
        return f"LazyImages({tuple(self.images.shape)} uint8 on the host, batches on {self.device})"
