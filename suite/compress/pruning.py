"""Magnitude pruning with masks kept through retraining (Han, Pool, Tran, Dally, "Learning both
Weights and Connections for Efficient Neural Networks", NIPS 2015; stage 1 of Deep Compression,
Han, Mao, Dally, ICLR 2016, Section 2).

"We start by learning the connectivity via normal network training. Next, we prune the
small-weight connections: all connections with weights below a threshold are removed from the
network. Finally, we retrain the network to learn the final weights for the remaining sparse
connections." Iterated, with a growing pruned fraction: prune, retrain, prune more.

Here the threshold of each layer is set by its target rate: after step t of T, layer l keeps the
fraction keep_l^(t / T) of its weights with the largest magnitudes (so that the last step keeps
keep_l; Han et al. set the threshold as a quality parameter times the layer's weight std, which
reaches a rate the same way). A pruned weight is 0 and stays 0: its gradient is masked (so the
optimizer's state for it stays 0) and the mask is re-applied after every optimizer step (weight
decay or momentum cannot revive it). Masks only ever shrink: a weight pruned once stays pruned.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def magnitude_mask(weight: torch.Tensor, keep: float, within: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask of the round(keep x numel) weights of largest |w| (ties broken by position), a
    subset of `within` (the current mask) when given."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    n_keep = max(1, round(keep * weight.numel()))
    score = weight.detach().abs().flatten().double()
    if within is not None:
        score = torch.where(within.flatten(), score, torch.full_like(score, -1.0))
        n_keep = min(n_keep, int(within.sum()))
    order = torch.argsort(score, descending=True, stable=True)
    mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[order[:n_keep]] = True
    return mask.view_as(weight)


def schedule(keep: float, step: int, steps: int) -> float:
    """The fraction a layer keeps after pruning step `step` of `steps`: keep^(step / steps)."""
    return keep ** (step / steps)


class Pruner:
    """Masks for named weights; keeps pruned weights at zero through training."""

    def __init__(self, params: dict[str, nn.Parameter]):
        self.params = dict(params)
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self._hooks = []

    @classmethod
    def for_layers(cls, model: nn.Module, names: list[str]) -> Pruner:
        modules = dict(model.named_modules())
        return cls({name: modules[name].weight for name in names})

    @torch.no_grad()
    def prune(self, keep: dict[str, float]) -> None:
        """Each named weight keeps its `keep[name]` fraction of largest magnitudes (within its mask)."""
        for name, fraction in keep.items():
            self.masks[name] = magnitude_mask(self.params[name], fraction, self.masks[name])
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Mask the gradients and re-apply the masks after every step of `optimizer`."""
        self.detach()
        for name, p in self.params.items():
            self._hooks.append(p.register_hook(lambda g, name=name: g * self.masks[name]))
        self._hooks.append(optimizer.register_step_post_hook(lambda *_: self.apply()))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def density(self) -> dict[str, float]:
        return {name: float(m.float().mean()) for name, m in self.masks.items()}
