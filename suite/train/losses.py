"""Losses by spec name."""

import torch
import torch.nn.functional as F


def squared_hinge(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L2-SVM loss of BinaryConnect's code: mean over batch and classes of max(0, 1 - t * y)^2,
    with targets t in {-1, +1} (one-hot scaled)."""
    t = F.one_hot(labels, output.shape[1]).to(output.dtype).mul_(2.0).sub_(1.0)
    return torch.clamp(1.0 - t * output, min=0.0).square().mean()


LOSSES = {"squared_hinge": squared_hinge, "cross_entropy": F.cross_entropy}
