"""Optimizer and learning-rate schedule from a TrainSpec, with per-layer LR scales."""

from __future__ import annotations

import torch
import torch.nn as nn

from suite.errors import UserError
from suite.train.latent_optim import LatentUpdate, latent_groups
from suite.train.lean_optim import LeanLatentAdam


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


# train.optimizer name -> torch optimizer from (param groups, train settings). "lean_adam": Adam
# whose k-bit latent layers (latent_bits = 8) keep 8-bit block-wise moments and are updated inside
# the backward pass, layer by layer (suite/train/lean_optim.py); other parameters: torch's Adam.
OPTIMIZERS = {
    "sgd": lambda groups, t: torch.optim.SGD(groups, lr=t.lr_start, momentum=t.momentum, weight_decay=t.weight_decay),
    "adam": lambda groups, t: torch.optim.Adam(groups, lr=t.lr_start, weight_decay=t.weight_decay),
    "lean_adam": lambda groups, t: torch.optim.Adam(groups, lr=t.lr_start, weight_decay=t.weight_decay),
}
SCHEDULES = ("exponential", "constant")  # train.lr_schedule (make_scheduler)


def make_optimizer(train, model: nn.Module) -> torch.optim.Optimizer:
    """torch's SGD or Adam; layers with k-bit latent weights join it as ``latent`` groups that a
    step post-hook updates (`suite/train/latent_optim.py`; none in a float32-latent model)."""
    groups = param_groups(model, train.lr_start) + latent_groups(model, train.lr_start)
    optimizer = OPTIMIZERS[train.optimizer](groups, train)
    if any(g.get("latent") for g in groups):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # DDP averages parameter gradients only: each rank's codes would follow its own gradient
            raise UserError("latent_bits < 32: k-bit latent weights train in one process only, not under torchrun")
        optimizer.register_step_post_hook(LatentUpdate(model, adam=train.optimizer in ("adam", "lean_adam")))
    if train.optimizer == "lean_adam":
        LeanLatentAdam(model, optimizer)
    return optimizer


def make_scheduler(train, optimizer):
    """Per-epoch exponential decay from lr_start to lr_end over the run's epochs (authors' code:
    lr *= (lr_end / lr_start) ** (1 / epochs)); None for a constant LR."""
    if train.lr_schedule == "constant":
        return None
    gamma = (train.lr_end / train.lr_start) ** (1.0 / train.epochs)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
