"""Whole models for the lowbit-cost study: two reproductions' binary networks, timed as the float
twin (the same network, no quantizers), the emulated binary network (float32 arithmetic on +-1
values, what the training tables measure) and the packed one (suite/nn/packed.py), in training
steps and in inference over test images, interleaved in one process.

- `bnn_mlp`: bnn-mnist's quick-profile network (784 - 3 x 1024 - 10, binary weights and
  activations, dropout 0.2 / 0.5, Glorot LR scales, Adam 0.003, squared hinge loss, latent weights
  clipped to [-1, 1]) at its batch of 100, on MNIST (the embedded subset where the files are not
  found); for inference also the exported model (suite/nn/inference.py: BatchNorm and sign folded
  into thresholds, the 8-bit pixels through the bit-serial kernel).
- `xnor_nin`: xnor-nin-cifar10's XNOR-Net variant (NIN, binary weights with alpha and binary
  inputs, first and last layers float, Adam 0.01 with the reimplementation's gradient scale) at its
  batch of 128, on CIFAR-10 (the exact first test images; synthetic look-alike images where the
  files are not found: time only).

The training steps run first and leave the networks trained for that many steps; the inference
pass then compares the packed and exported networks' predictions with the emulated one's (the
same weights): identical predictions are what the packed arithmetic promises, whatever the
accuracy after a few steps. Data is loaded once per model; nothing here is a result the regression
check compares except the prediction counts and the bytes (they do not move with the machine).
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite import settings
from suite.data import load_splits
from suite.kernels import Codes
from suite.models import mlp, nin
from suite.nn import QuantConfig, latent_clip_targets
from suite.nn.inference import export, packed_bytes
from suite.nn.packed import arithmetic_summary
from suite.train.backprop import train_epoch
from suite.train.config import TrainSpec
from suite.train.losses import squared_hinge
from suite.train.optim import make_optimizer


@dataclass(frozen=True)
class WholeModel:
    label: str
    dataset: str
    in_shape: tuple[int, int, int]
    source: str  # load_splits' data.source: where the embedded subset or synthetic data may stand in
    test_set: str
    batch: int
    build: Callable[[QuantConfig, bool], nn.Module]  # (quant, binary) -> model
    binary: QuantConfig
    loss: Callable
    lr: float
    optimizer: str = "adam"  # a train.optimizer (suite/train/optim.py OPTIMIZERS), as the spec names it
    weight_decay: float = 0.0
    input_codes: Codes | None = None  # the exported model's first layer input (None: not exported)


def _bnn_mlp(quant: QuantConfig, binary: bool) -> nn.Module:
    return mlp(num_classes=10, in_shape=(1, 28, 28), hidden=[1024] * 3, activation="identity" if binary else "relu",
               dropout=0.5, input_dropout=0.2, bn_eps=1e-4, quant=quant)


def _xnor_nin(quant: QuantConfig, binary: bool) -> nn.Module:
    return nin(num_classes=10, in_shape=(3, 32, 32), quant=quant, width=1.0, dropout=0.5, init_std=0.05)


MODELS = {
    "bnn_mlp": WholeModel(
        "BNN MLP (bnn-mnist, quick: 784 - 3 x 1024 - 10)", "mnist", (1, 28, 28), "auto", "standard", 100, _bnn_mlp,
        QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", clip_weights=1.0, lr_scale="glorot",
                    weight_init_range=1.0),
        squared_hinge, 0.003, input_codes=Codes(8, 2 / 255, -1.0)),  # pixels in [-1, 1]: 8-bit codes
    "xnor_nin": WholeModel(
        "XNOR-Net NIN (xnor-nin-cifar10)", "cifar10", (3, 32, 32), "auto", "exact_first1000", 128, _xnor_nin,
        QuantConfig(weight_quantizer="xnor_weight(project=true)", input_quantizer="bnn_sign",
                    float_layers=("first", "last")),
        F.cross_entropy, 0.01, optimizer="adam_binop", weight_decay=1e-5),
}


def load(m: WholeModel, train_images: int, test_images: int):
    """The model's data: `train_images` training and at most `test_images` test images, and where
    they came from (real files, the embedded subset, synthetic)."""
    spec = types.SimpleNamespace(dataset=m.dataset, source=m.source, train_size=train_images, val_size=0,
                                 test_size=test_images, preprocessing="pm1" if m.dataset == "mnist" else "standardize",
                                 image_size=None, test_set=m.test_set)
    splits = load_splits(spec, settings.data_dir(), download=False)
    return splits, splits.info.get("source", "unknown")


def _variants(m: WholeModel, seed: int) -> dict[str, nn.Module]:
    out = {}
    for name, quant, binary in (("float", QuantConfig(), False), ("packed", m.binary, True),
                                ("emulated", dataclasses.replace(m.binary, arithmetic="emulated"), True)):
        torch.manual_seed(seed)  # the same initial weights for the two binary networks
        out[name] = m.build(quant, binary)
    return out


def _trainer(m: WholeModel, model: nn.Module, x, y, batches):
    train = TrainSpec(epochs=1, batch_size=m.batch, lr_start=m.lr, optimizer=m.optimizer, weight_decay=m.weight_decay)
    opt = make_optimizer(train, model)  # the spec's optimizer, its LR scales and gradient scale
    clip = latent_clip_targets(model)
    return lambda: train_epoch(model, opt, m.loss, x, y, batches, clip)


def _predictions(model: nn.Module, batches: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    def run():
        with torch.no_grad():
            return torch.cat([model(b).argmax(1) for b in batches])
    return run


def model_costs(name: str, seed: int, steps: int, test_images: int | None, eval_batch: int,
                samples: Callable[[dict], dict[str, list[float]]]) -> list[dict]:
    """Rows for one model: a training step (each candidate `steps` steps a call) and a pass over the
    test images (None: all), as float, emulated, packed (and exported), the networks initialised from
    `seed`, the steps' batches drawn from it too; `samples(fns)` times candidates
    interleaved ({name: [seconds per call]}; the minimum is kept)."""
    m = MODELS[name]
    splits, source = load(m, steps * m.batch, test_images)
    x, y = splits.train_x, splits.train_y
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randint(0, len(x), (m.batch,), generator=g) for _ in range(steps)]
    models = _variants(m, seed)
    train = {k: _trainer(m, model, x, y, batches) for k, model in models.items()}
    rows = _rows(name, f"training step (batch {m.batch})", samples(train), per_call=steps,
                 arithmetic={k: _arithmetic(v) for k, v in models.items()})

    packed = models["packed"].eval()
    emulated = copy.deepcopy(packed)  # the same trained weights, emulated arithmetic
    for layer in emulated.modules():
        if hasattr(layer, "arithmetic"):
            layer.arithmetic = "emulated"
    infer = {"float": models["float"].eval(), "packed": packed, "emulated": emulated}
    if m.input_codes is not None:
        infer["exported"] = export(packed, m.input_codes)
    test = list(splits.test_x.split(eval_batch))
    fns = {k: _predictions(v, test) for k, v in infer.items()}
    predicted = {k: fn() for k, fn in fns.items()}
    arithmetic = {k: _arithmetic(v) for k, v in infer.items()}
    inference = _rows(name, f"inference, {len(splits.test_x)} test images", samples(fns), per_call=1,
                      arithmetic=arithmetic)
    float_bytes = 4 * sum(p.numel() for p in models["float"].parameters())
    for row in inference:
        k = row["candidate"]
        row["predictions_differing"] = int((predicted[k] != predicted["emulated"]).sum()) if k != "float" else None
        row["test_accuracy"] = float((predicted[k] == splits.test_y).float().mean())
        if k == "exported":
            row["weight_bytes"] = sum(packed_bytes(infer[k]).values())
            row["float_bytes_over_this"] = float_bytes / row["weight_bytes"]
    for row in rows + inference:
        row["data"] = source
    return rows + inference


def _arithmetic(model: nn.Module) -> str:
    used = arithmetic_summary(model)
    return ", ".join(f"{k}: {v}" for k, v in sorted(used.items())) or "float"


def _rows(name: str, measure: str, timed: dict[str, list[float]], per_call: int,
          arithmetic: dict[str, str]) -> list[dict]:
    m = MODELS[name]
    ms = {k: 1000 * min(v) / per_call for k, v in timed.items()}
    return [{"network": name, "model": m.label, "measure": measure, "candidate": k, "ms": t,
             "float_over_this": ms["float"] / t, "arithmetic": arithmetic[k]} for k, t in ms.items()]
