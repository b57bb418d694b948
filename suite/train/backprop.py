"""Backpropagation: one epoch of training and the evaluation pass.

The hot loop does only what a bare PyTorch loop does (index a batch, forward, backward, step,
clip latent weights) and keeps the loss sum on the device: no host sync until the epoch ends.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.data.lazy import LazyImages
from suite.nn import clip_latent_weights


def train_epoch(model: nn.Module, optimizer, loss_fn, x, y, batches, clip_targets) -> torch.Tensor:
    """Train over `batches` (index tensors); returns the mean training loss as a 0-d tensor."""
    model.train()
    total = torch.zeros((), device=x.device)
    for idx in batches:
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if clip_targets:
            clip_latent_weights(clip_targets)
        total += loss.detach()
    return total / max(len(batches), 1)


class Backprop:
    """Ordinary backpropagation with the spec's optimizer."""

    def __init__(self, model, optimizer, loss_fn, train_spec, clip_targets):
        self.model, self.optimizer, self.loss_fn, self.clip_targets = model, optimizer, loss_fn, clip_targets

    def epoch(self, x, y, batches) -> torch.Tensor:
        return train_epoch(self.model, self.optimizer, self.loss_fn, x, y, batches, self.clip_targets)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@torch.no_grad()
def count_wrong(model: nn.Module, x, y, batch_size: int, top5: bool = False) -> torch.Tensor:
    """Misclassified samples of (x, y) in eval mode, a 0-d device tensor (summed over ranks when
    distributed); with top5, two counts: top-1 and top-5 misses, from one topk of each batch's
    logits. `x` may be images kept on the host (LazyImages): each batch is made on the device."""
    model.eval()
    wrong = torch.zeros(2 if top5 else (), dtype=torch.long, device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        logits = model(xb.load() if isinstance(xb, LazyImages) else xb)
        if top5:
            hit = logits.topk(min(5, logits.shape[1]), dim=1).indices == yb.unsqueeze(1)
            wrong += torch.stack([(~hit[:, 0]).sum(), (~hit.any(1)).sum()])
        else:
            wrong += (logits.argmax(1) != yb).sum()
    return wrong


def error_percent(model: nn.Module, x, y, batch_size: int) -> float:
    """Classification error in percent over (x, y), evaluated in eval mode."""
    return 100.0 * count_wrong(model, x, y, batch_size).item() / max(len(x), 1)
