"""Optimizer and learning-rate schedule from a TrainSpec, with per-layer LR scales."""

from __future__ import annotations

import torch
import torch.nn as nn


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """One group per distinct layer LR scale (BinaryConnect's Glorot scale); scale 1 otherwise.

    Scaling a layer's LR is exactly the authors' W <- W + scale * (W_new - W) for SGD and Adam,
    whose updates are linear in the LR, and costs nothing per step.
    """
    scaled: dict[float, list] = {}
    plain = []
    for m in model.modules():
        scale = getattr(m, "lr_scale", None)
        for _, p in m.named_parameters(recurse=False):
            if scale is not None and p is getattr(m, "weight", None):
                scaled.setdefault(scale, []).append(p)
            else:
                plain.append(p)
    groups = [{"params": plain, "lr": lr}] if plain else []
    groups += [{"params": ps, "lr": lr * s, "lr_scale": s} for s, ps in scaled.items()]
    return groups


def make_optimizer(train, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, train.lr_start)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr_start, momentum=train.momentum,
                               weight_decay=train.weight_decay)
    return torch.optim.Adam(groups, lr=train.lr_start, weight_decay=train.weight_decay)


def make_scheduler(train, optimizer):
    """Per-epoch exponential decay from lr_start to lr_end over the run's epochs (authors' code:
    lr *= (lr_end / lr_start) ** (1 / epochs)); None for a constant LR."""
    if train.lr_schedule == "constant":
        return None
    gamma = (train.lr_end / train.lr_start) ** (1.0 / train.epochs)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
