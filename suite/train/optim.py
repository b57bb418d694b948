"""Optimizer and learning-rate schedule from a TrainSpec, with per-layer LR scales."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def binop_gradient_scale(weight: torch.Tensor) -> float:
    """n (1 - 1/c_in), the factor XNOR-Net-PyTorch multiplies a binarized layer's weight gradient
    by before its optimizer step (github jiecaoyu/XNOR-Net-PyTorch @ebccb50, util.py,
    BinOp.updateBinaryGradWeight: ``.mul(1.0 - 1.0/s[1]).mul(n)``), n = c_in kh kw the weights
    of one filter (in_features for a linear layer). NIN's binarized layers: 191 to 2375."""
    return weight[0].numel() * (1.0 - 1.0 / weight.shape[1])


class GradientScale:
    """A step pre-hook: each binarized layer's weight gradient times its factor, in place, before
    the optimizer's step (in which torch's Adam and SGD add weight_decay * W), one foreach op."""

    def __init__(self, model: nn.Module, factor):
        self.targets = [(m.weight, float(factor(m.weight))) for m in model.modules()
                        if getattr(m, "weight_quantizer", None) is not None]

    def __call__(self, optimizer, args, kwargs) -> None:
        pairs = [(w.grad, f) for w, f in self.targets if w.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [f for _, f in pairs])


def _sgd(groups, t):
    return torch.optim.SGD(groups, lr=t.lr_start, momentum=t.momentum, weight_decay=t.weight_decay)


def _adam(groups, t):
    return torch.optim.Adam(groups, lr=t.lr_start, weight_decay=t.weight_decay)


@dataclass(frozen=True)
class OptimizerChoice:
    """A `train.optimizer`: the torch optimizer, and a factor per binarized layer that its weight
    gradient is multiplied by before each step (None: the gradient as computed)."""

    make: Callable
    adam: bool  # the k-bit latent-weight update follows Adam's rule (suite/train/latent_optim.py)
    gradient_scale: Callable[[torch.Tensor], float] | None = None


# train.optimizer name -> OptimizerChoice. "lean_adam": Adam whose k-bit latent layers
# (latent_bits = 8) keep 8-bit block-wise moments and are updated inside the backward pass, layer by
# layer (suite/train/lean_optim.py); other parameters: torch's Adam. "adam_binop" is
# XNOR-Net-PyTorch's effective update: with L2 inside Adam (g + wd W), scaling g by n (1 - 1/c_in)
# changes the step (Adam normalises the sum, so the decay's relative weight on binarized layers
# drops by that factor): not invariant.
OPTIMIZERS = {
    "sgd": OptimizerChoice(_sgd, adam=False),
    "adam": OptimizerChoice(_adam, adam=True),
    "lean_adam": OptimizerChoice(_adam, adam=True),
    "adam_binop": OptimizerChoice(_adam, adam=True, gradient_scale=binop_gradient_scale),
}
# train.lr_schedule names (make_scheduler). "x0.01_every_4_epochs": the XNOR-Net paper's AlexNet
# schedule (Sec. 4.1: "The learning rate starts at 0.1 and we apply a learning-rate-decay=0.01
# every 4 epochs"), the LR multiplied by 0.01 after epochs 4, 8, 12, ...
SCHEDULES = ("exponential", "constant", "x0.01_every_4_epochs")
STEPS = {"x0.01_every_4_epochs": (4, 0.01)}  # step schedules: (epochs per step, factor)


def make_optimizer(train, model: nn.Module) -> torch.optim.Optimizer:
    """torch's SGD or Adam (with a gradient scale of binarized layers where the choice has one);
    layers with k-bit latent weights join it as ``latent`` groups that a step post-hook updates
    (`suite/train/latent_optim.py`; none in a float32-latent model)."""
    choice = OPTIMIZERS[train.optimizer]
    groups = param_groups(model, train.lr_start) + latent_groups(model, train.lr_start)
    optimizer = choice.make(groups, train)
    if choice.gradient_scale is not None:
        optimizer.register_step_pre_hook(GradientScale(model, choice.gradient_scale))
    if any(g.get("latent") for g in groups):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # DDP averages parameter gradients only: each rank's codes would follow its own gradient
            raise UserError("latent_bits < 32: k-bit latent weights train in one process only, not under torchrun")
        if choice.gradient_scale is not None:
            raise UserError(f"train.optimizer {train.optimizer!r}: its gradient scale acts on float latent weights, "
                            "not on k-bit latent codes")
        optimizer.register_step_post_hook(LatentUpdate(model, adam=choice.adam))
    if train.optimizer == "lean_adam":
        LeanLatentAdam(model, optimizer)
    return optimizer


def make_scheduler(train, optimizer):
    """Per-epoch exponential decay from lr_start to lr_end over the run's epochs (authors' code:
    lr *= (lr_end / lr_start) ** (1 / epochs)); a step schedule of STEPS; None for a constant LR."""
    if train.lr_schedule == "constant":
        return None
    if train.lr_schedule in STEPS:
        every, factor = STEPS[train.lr_schedule]
        return torch.optim.lr_scheduler.StepLR(optimizer, every, factor)
    gamma = (train.lr_end / train.lr_start) ** (1.0 / train.epochs)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
