"""Packed arithmetic in whole models and training steps, against float and the emulated arithmetic,
as ratios measured in one process (benchmarks/timing.py).

- BNN MLP (784 - 3 x 1024 - 10, binary weights and activations) inference over the MNIST test set
  (real MNIST where found, else the embedded subset, said in extra_info), batches of 1000: the float
  twin (same network, no quantizers), the emulated BNN, the BNN with packed layers (weights packed
  once, cached), and the exported model (suite/nn/inference.py: BatchNorm and sign folded into
  thresholds, 8-bit pixels through the bit-serial kernel). Predictions and bytes recorded.
- A BNN 1024 x 1024 linear layer's training step at batch 200 (binary weights and inputs, forward
  and backward): float layer, emulated, packed forward.
"""

import copy
import dataclasses
import os
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from timing import chunked, interleaved_samples, page_faults, record_chunks

import suite.kernels as K
from suite.data import load_splits
from suite.kernels import build
from suite.models import mlp
from suite.nn import QuantConfig, QuantLinear
from suite.nn.inference import PackedLinear, export, packed_bytes
from suite.nn.packed import arithmetic_summary
from suite.quant import build_quantizer

pytestmark = pytest.mark.skipif(build.load() is None, reason="the bit-packed kernels could not be built")

BNN = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", clip_weights=1.0)
PIXELS = K.Codes(8, 2 / 255, -1.0)


def _mnist():
    root = Path(os.environ.get("SUITE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    full = (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").exists()
    spec = types.SimpleNamespace(dataset="mnist", source="full" if full else "embedded", train_size=10000,
                                 val_size=0, test_size=None, preprocessing="pm1", image_size=None, test_set="standard")
    return load_splits(spec, root if full else None, download=False), "full" if full else "embedded subset"


def _set_arithmetic(model, arithmetic):
    for m in model.modules():
        if hasattr(m, "arithmetic"):
            m.arithmetic = arithmetic
    return model


def test_bnn_mlp_inference_on_mnist(benchmark):
    splits, source = _mnist()
    torch.manual_seed(0)
    bnn = mlp(num_classes=10, in_shape=(1, 28, 28), hidden=[1024] * 3, activation="identity", quant=BNN)
    opt = torch.optim.Adam(bnn.parameters(), 1e-3)
    for _ in range(100):  # a briefly trained model: predictions worth comparing
        idx = torch.randint(0, len(splits.train_x), (100,))
        loss = nn.functional.cross_entropy(bnn(splits.train_x[idx]), splits.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in bnn.modules():
                if isinstance(m, QuantLinear) and m.clip_value:
                    m.weight.clamp_(-1, 1)
    bnn.eval()
    emulated = _set_arithmetic(copy.deepcopy(bnn), "emulated")
    floats = mlp(num_classes=10, in_shape=(1, 28, 28), hidden=[1024] * 3).eval()
    exported = export(bnn, PIXELS)
    batches = list(splits.test_x.split(1000))

    def over_test_set(model):
        def run():
            with torch.no_grad():
                return torch.cat([model(b).argmax(1) for b in batches])
        return run

    fns = {"float": over_test_set(floats), "emulated": over_test_set(emulated), "packed_layers": over_test_set(bnn),
           "exported": over_test_set(exported)}
    preds = {k: fns[k]() for k in ("emulated", "packed_layers", "exported")}
    fns, n = chunked(fns, 0.05)
    samples = interleaved_samples(fns, 10)
    float_bytes = 4 * sum(m.weight.numel() for m in floats.modules() if isinstance(m, nn.Linear))
    stored = packed_bytes(exported)["packed_layers"]
    weight_bits = sum(m.words.numel() * 8 for m in exported.modules() if isinstance(m, PackedLinear))
    record_chunks(benchmark, samples, n, [("exported", "float"), ("packed_layers", "float"), ("emulated", "float"),
                                      ("exported", "emulated")], unlike=("exported", "packed_layers"),
           data=source, test_images=len(splits.test_x), kernels=K.status(),
           test_accuracy=float((preds["emulated"] == splits.test_y).float().mean()),
           predictions_differing_exported=int((preds["exported"] != preds["emulated"]).sum()),
           predictions_differing_packed_layers=int((preds["packed_layers"] != preds["emulated"]).sum()),
           float_weight_bytes=float_bytes, packed_weight_bytes=weight_bits, packed_layer_bytes=stored,
           weights_times_smaller_packed=float_bytes / weight_bits,
           weights_times_smaller_with_scales=float_bytes / stored)


def test_bnn_linear_training_step(benchmark):
    """Forward and backward of a 1024 x 1024 BNN layer (binaryconnect weights, bnn_sign input) at
    batch 200, five steps a call, against the float layer's step."""
    torch.manual_seed(0)
    x = torch.randn(200, 1024, requires_grad=True)

    def layer(**q):
        torch.manual_seed(0)
        return QuantLinear(1024, 1024, **q)

    g = torch.randn(200, 1024)
    per_call = 5  # steps
    float_layer = layer()
    packed = layer(weight_quantizer=build_quantizer("binaryconnect"), input_quantizer=build_quantizer("bnn_sign"))
    emulated = layer(weight_quantizer=build_quantizer("binaryconnect"), input_quantizer=build_quantizer("bnn_sign"),
                     arithmetic="emulated")

    def steps(m):
        def run():
            for _ in range(per_call):
                m.weight.grad = m.bias.grad = x.grad = None
                m(x).backward(g)
        return run

    raw = {"float": steps(float_layer), "packed": steps(packed), "emulated": steps(emulated)}
    raw["packed"]()
    assert packed.arithmetic_used.startswith("packed")
    fns, n = chunked(raw, 0.05)
    samples = interleaved_samples(fns, 15)
    faults = {k: v / per_call for k, v in page_faults(raw).items()}
    record_chunks(benchmark, samples, n, [("packed", "float"), ("emulated", "float"), ("packed", "emulated")],
                  unlike=("packed",), kernels=K.status(), steps_per_call=per_call, minor_page_faults_per_step=faults)


def test_bnn_mnist_quick_training_steps(benchmark):
    """The bnn-mnist spec's quick profile (784 - 3 x 1024 - 10 MLP, identity activation before the next
    layer's sign, dropout 0.2 on the pixels and 0.5 after each sign, Glorot LR scales, Adam, squared
    hinge loss, latent weights clipped to [-1, 1]) at its batch of 100: 20 training steps a call (the
    epoch loop's own step, suite/train/backprop.py), for the float variant (the same network with
    ReLU, no quantizers), the BNN with packed products and the BNN emulated. An epoch is 500 steps."""
    from suite.nn import latent_clip_targets
    from suite.train.backprop import train_epoch
    from suite.train.losses import squared_hinge
    from suite.train.optim import param_groups

    splits, source = _mnist()
    x, y = splits.train_x, splits.train_y
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(x), (100,), generator=g) for _ in range(20)]
    bnn = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign", clip_weights=1.0,
                      lr_scale="glorot")
    configs = {"float": (QuantConfig(), "relu"), "packed": (bnn, "identity"),
               "emulated": (dataclasses.replace(bnn, arithmetic="emulated"), "identity")}
    raw, models = {}, {}
    for name, (quant, activation) in configs.items():
        torch.manual_seed(1)
        model = mlp(num_classes=10, in_shape=(1, 28, 28), hidden=[1024] * 3, activation=activation, dropout=0.5,
                    input_dropout=0.2, bn_eps=1e-4, quant=quant)
        opt = torch.optim.Adam(param_groups(model, 0.003))
        clip = latent_clip_targets(model)
        models[name] = model
        raw[name] = (lambda m, o, c: lambda: train_epoch(m, o, squared_hinge, x, y, batches, c))(model, opt, clip)
    raw["packed"]()
    used = arithmetic_summary(models["packed"])
    fns, n = chunked(raw, 0.2)
    samples = interleaved_samples(fns, 8)
    faults = {k: v / len(batches) for k, v in page_faults(raw).items()}  # where a step's new tensors cost page faults
    record_chunks(benchmark, samples, n, [("packed", "float"), ("emulated", "float"), ("packed", "emulated")],
                  unlike=("packed",), kernels=K.status(), data=source, steps_per_call=len(batches), batch=100,
                  arithmetic_used=used, minor_page_faults_per_step=faults)
