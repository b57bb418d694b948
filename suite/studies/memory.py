"""Memory of a training step, measured at the tensor level (suite/tensor_memory.py): per model and
training method, the bytes of parameters, optimizer state, activations saved for the backward
pass, and the peak of all bytes held by tensors over a few training steps.

Methods (`methods`, per variant; each built fresh, one warm-up step so that the optimizer state
exists, then `steps` measured steps on random data of the model's input shape):

- ``backprop``: the model in float32, torch's Adam (`suite.train.Backprop`);
- ``fg1``, ``fg10``: forward gradient with 1 / 10 directions, one after another
  (`suite.train.ForwardGradient`); ``fg10_batched``: the 10 directions carried together;
- ``bnn``: BNN (binary weights and activations: binaryconnect + bnn_sign, BNN's MLP: identity
  activation, dropout 0.2 / 0.5, Glorot LR scale, clip 1), float32 latent weights, every saved
  tensor in float32 (the bnn-mnist spec's `bnn` variant);
- ``bnn_lean``: the same network saving in bits (``packed`` quantizers, `suite/quant/packing.py`),
  8-bit latent weights (`suite/nn/latent.py`) and Adam with 8-bit moments run inside the backward
  pass layer by layer (`suite/train/lean_optim.py`).

Columns: parameters = the bytes of the model's parameters and buffers (latent codes included);
optimizer state = torch's optimizer state plus the 8-bit moments where used; saved activations =
the bytes held after the forward pass above those held when the step began (what autograd keeps
for the backward pass, and the loss); forward gradient keeps none (it has no backward pass: its
figure is what the pass holds at once, `step`); peak = the largest total held during the measured
steps (``peak_tensor_mb``), step = the largest rise within a step (``step_tensor_mb``).
Tensor memory counts exactly: one seed suffices (the figures do not vary between runs).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import pandas as pd
import torch

from suite.errors import UserError

METHODS = ("backprop", "fg1", "fg10", "fg10_batched", "bnn", "bnn_lean")
MODELS = ("mlp", "vgg", "bnn_mlp")
MIB = 2**20


@dataclass(frozen=True)
class Params:
    model: str = "mlp"  # mlp (BinaryConnect's MNIST MLP) | vgg (VGG16-BN, CIFAR-10) | bnn_mlp (BNN's MNIST MLP)
    hidden: list[int] = field(default_factory=lambda: [1024, 1024, 1024])  # mlp, bnn_mlp
    width: float = 1.0  # vgg
    batch: int = 200
    methods: list[str] = field(default_factory=lambda: ["backprop", "fg1", "fg10"])
    steps: int = 2  # measured steps (after one warm-up step)
    lr: float = 1e-3


def check(p: Params, where: str) -> None:
    if p.model not in MODELS:
        raise UserError(f"{where}.model: expected one of {', '.join(MODELS)}, got {p.model!r}")
    bad = [m for m in p.methods if m not in METHODS]
    if bad or not p.methods:
        raise UserError(f"{where}.methods: expected a list of {', '.join(METHODS)}, got {p.methods!r}")
    if any(m.startswith("bnn") for m in p.methods) and p.model != "bnn_mlp":
        raise UserError(f"{where}.methods: bnn and bnn_lean train the bnn_mlp model")
    for key in ("batch", "steps"):
        if getattr(p, key) < 1:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")


def _model(p: Params, method: str):
    from suite.models import ModelSpec, build_model
    from suite.nn import QuantConfig

    if p.model == "vgg":
        return build_model(ModelSpec("vgg", {"depth": 16, "width": p.width}), num_classes=10, in_shape=(3, 32, 32),
                           quant=QuantConfig()), (3, 32, 32), "cross_entropy"
    if p.model == "mlp":
        return build_model(ModelSpec("mlp", {"hidden": list(p.hidden)}), num_classes=10, in_shape=(1, 28, 28),
                           quant=QuantConfig()), (1, 28, 28), "squared_hinge"
    lean = method == "bnn_lean"
    opt = "(packed=true)" if lean else ""
    quant = QuantConfig(weight_quantizer="binaryconnect" + opt, input_quantizer="bnn_sign" + opt, clip_weights=1.0,
                        lr_scale="glorot", latent_bits=8 if lean else 32)
    args = {"hidden": list(p.hidden), "activation": "identity", "input_dropout": 0.2, "dropout": 0.5,
            "bn_momentum": 0.1, "bn_eps": 1e-4}
    if method not in ("bnn", "bnn_lean"):  # the spec's float variant: the same network, no binarization
        quant, args["activation"] = QuantConfig(), "relu"
    return build_model(ModelSpec("mlp", args), num_classes=10, in_shape=(1, 28, 28), quant=quant), (1, 28, 28), \
        "squared_hinge"


def measure(p: Params, method: str, seed: int) -> dict:
    """One method's figures (bytes), the counting allocator installed before anything is built."""
    from suite import tensor_memory
    from suite.nn.storage import optimizer_tensors, storage_bytes
    from suite.train import METHODS as TRAIN
    from suite.train.config import TrainSpec
    from suite.train.lean_optim import LeanLatentAdam
    from suite.train.losses import LOSSES
    from suite.train.optim import make_optimizer

    why = tensor_memory.install()
    if why is not None:
        raise UserError(f"memory study: tensor memory is not measurable here ({why})")
    gc.collect()  # what the previous method left (reference cycles) is freed, and what remains ...
    base = tensor_memory.counts()["current"]  # ... is not this method's: subtracted from its peak
    torch.manual_seed(seed)
    model, in_shape, loss_name = _model(p, method)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p.batch * (p.steps + 1), *in_shape, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    k = {"fg1": 1, "fg10": 10, "fg10_batched": 10}.get(method, 1)
    train = TrainSpec(epochs=1, batch_size=p.batch, lr_start=p.lr, optimizer="adam",
                      method="forward_gradient" if method.startswith("fg") else "backprop",
                      num_directions=k, batched_directions=method == "fg10_batched")
    optimizer = make_optimizer(train, model)
    if method == "bnn_lean":
        LeanLatentAdam(model, optimizer)
    from suite.nn import latent_clip_targets

    trainer = TRAIN[train.method](model, optimizer, LOSSES[loss_name], train, latent_clip_targets(model))
    meter = tensor_memory.TensorMemory("cpu", exclude=[x, y], model=model)
    optimizer.register_step_post_hook(lambda *_: meter.step())
    batches = list(torch.arange(len(x)).split(p.batch))
    trainer.epoch(x, y, batches[:1])  # warm-up: the optimizer state now exists
    saved = None
    if train.method == "backprop":  # what one forward pass leaves for the backward pass
        model.train()
        before = tensor_memory.counts()["current"]
        loss = LOSSES[loss_name](model(x[batches[1]]), y[batches[1]])
        saved = tensor_memory.counts()["current"] - before
        del loss
    meter.reset()
    trainer.epoch(x, y, batches[1:])
    figures = meter.read()
    state = storage_bytes(optimizer_tensors(optimizer))  # bnn-lean's 8-bit moments live there too
    return {"method": method, "parameter_bytes": storage_bytes([*model.parameters(), *model.buffers()]),
            "optimizer_state_bytes": state, "saved_activation_bytes": saved,
            "peak_tensor_mb": figures["peak_tensor_mb"] - base / MIB, "step_tensor_mb": figures["step_tensor_mb"]}


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    if device.type != "cpu":
        raise UserError("memory study: tensor memory is counted on the CPU (--device cpu)")
    rows = [measure(p, m, seed) for m in p.methods]
    return {"summary": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
            "tables": {"memory": rows}}


LABELS = {"backprop": "float backprop", "fg1": "forward gradient, 1 direction",
          "fg10": "forward gradient, 10 directions (one after another)",
          "fg10_batched": "forward gradient, 10 directions (together)",
          "bnn": "BNN, float-saved (float32 latent weights, Adam)",
          "bnn_lean": "bnn-lean (saved in bits, 8-bit latent weights, 8-bit Adam in the backward pass)"}


def _mib(b) -> str:
    return "–" if b is None else f"{b / MIB:.1f}"


def table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        labels = {v["name"]: v.get("label") or v["name"] for v in r["spec"]["resolved"]["variants"]}
        label = labels.get(r["variant"], r["variant"])
        base = None
        for row in r["tables"]["memory"]:
            if base is None:
                base = row
            rows.append({
                "model": label, "method": LABELS.get(row["method"], row["method"]),
                "parameters (MiB)": _mib(row["parameter_bytes"]),
                "optimizer state (MiB)": _mib(row["optimizer_state_bytes"]),
                "saved activations (MiB)": _mib(row["saved_activation_bytes"]) if row["saved_activation_bytes"]
                is not None else "none (no backward pass)",
                "peak tensor (MiB)": f"{row['peak_tensor_mb']:.1f}",
                "step tensor (MiB)": f"{row['step_tensor_mb']:.1f}",
                "peak × first row": f"{row['peak_tensor_mb'] / base['peak_tensor_mb']:.2f}",
                "step × first row": f"{row['step_tensor_mb'] / base['step_tensor_mb']:.2f}",
            })
    return pd.DataFrame(rows)


def render(records: list[dict], baselines=None) -> str:
    df = table(sorted(records, key=lambda r: r["variant"]))
    return "\n".join([
        "Bytes held by tensors during training steps, counted by the CPU allocator (exact); MiB = 2^20 bytes. "
        "peak = all bytes held at the steps' peak (parameters, optimizer state, gradients, saved activations, "
        "temporaries; the random input data left out); step = the largest rise within one step above what it "
        "started with. The × columns compare each method with the model's first row.",
        "", df.to_markdown(index=False)])
