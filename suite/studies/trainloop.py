"""What the multi-stage studies (deep compression, low rank) share: their data, a model from a
builder, and a plain training loop whose learning rate may change every iteration.

Not a study itself (not in STUDIES). The data are the harness's own splits (suite/data), read
from $SUITE_DATA_DIR or the download cache: a study's `run` is not handed --data-dir.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite.data import Splits, batch_indices, load_splits
from suite.models import ModelSpec, build_model
from suite.nn import QuantConfig
from suite.train.backprop import error_percent


@dataclass(frozen=True)
class DataParams:
    """A training study's data and model fields (what `study_data` and `study_model` read); a
    study's Params extends it, overriding a default where its paper differs."""
    dataset: str = "mnist"
    source: str = "full"
    train_size: int = 60000
    val_size: int = 0
    test_size: int | None = None
    preprocessing: str = "unit"
    test_set: str = "standard"
    image_size: int | None = None
    model: str = "mlp"
    model_args: dict = field(default_factory=dict)


def study_data(p, device: torch.device) -> Splits:
    """The splits a study's Params name: it carries a data spec's fields (dataset, source, sizes,
    preprocessing, image_size, test_set), which is all load_splits reads (studies sit below suite.spec)."""
    return load_splits(p).to(device)


def study_model(p, data: Splits, device: torch.device) -> nn.Module:
    return build_model(ModelSpec(p.model, dict(p.model_args)), num_classes=data.num_classes, in_shape=data.in_shape,
                       quant=QuantConfig()).to(device)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's Linear and Conv2d layers in order (the layers a compression method acts on)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def inverse_decay(lr: float, gamma: float, power: float):
    """Caffe's "inv" policy, per iteration: lr (1 + gamma it)^(-power) (its LeNet solver's)."""
    return lambda it: (1 + gamma * it) ** (-power)


def train(model: nn.Module, data: Splits, epochs: int, optimizer: torch.optim.Optimizer, batch_size: int,
          generator: torch.Generator, lr_lambda=None) -> dict:
    """`epochs` passes of cross-entropy training; the LR follows lr_lambda(iteration) if given.
    Returns the mean loss of the last epoch and the seconds spent."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda) if lr_lambda else None
    device = data.train_y.device
    index_device = data.index_device(device)  # the host for images gathered there (ImageNet)
    last = float("nan")
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        batches = batch_indices(len(data.train_x), batch_size, generator, index_device)
        for idx in batches:
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.detach()
        last = float(total / max(len(batches), 1))
    return {"loss": last, "seconds": time.perf_counter() - t0}


def errors(model: nn.Module, data: Splits, batch_size: int) -> dict:
    """Test error (and validation error when there is a validation split), in %."""
    out = {"test_error": error_percent(model, data.test_x, data.test_y, batch_size)}
    if len(data.val_x):
        out["val_error"] = error_percent(model, data.val_x, data.val_y, batch_size)
    return out
