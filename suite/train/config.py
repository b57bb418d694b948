"""A run's training settings (a spec's [train] table, with a variant's own overrides applied):
what the training methods, optimizers and schedules of this package read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    batch_size: int
    lr_start: float
    lr_end: float | None = None  # None: constant learning rate
    lr_schedule: str = "exponential"  # exponential (per epoch, lr_start -> lr_end) | constant
    method: str = "backprop"
    loss: str = "squared_hinge"
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_batch_size: int = 1000
    max_loss: float | None = None  # a mean epoch loss above this (or not finite) ends the run as diverged
    sync_batchnorm: bool = False  # under torchrun: BatchNorm over the global batch (GPUs); else no effect
    # method = "forward_gradient" only (suite/train/forward_gradient.py):
    num_directions: int = 1  # random directions per step
    direction_distribution: str = "gaussian"  # gaussian | rademacher
    orthogonal_directions: bool = False  # orthonormal within a step and orthogonal to the previous step's
    batched_directions: bool = False  # all directions in one vmap'ed jvp (faster, num_directions x memory)
    # Data-parallel (torchrun): what the ranks exchange, a DDP communication hook
    # (suite/train/gradient_compression/): "none" (DDP's all-reduce), "allreduce", "terngrad(...)", ...
    gradient_compression: str = "none"
