"""Forward gradient vs backprop, time per training step, as ratios within one process.

The targets (issue "memory measured at the tensor level"): one direction costs at most one
backprop step (MNIST MLP and VGG16-BN at batch 128), ten directions carried together at most
1.1 x (1 + 2k) / 3 = 7.7 backprop steps (one primal and 2k tangent products against backprop's
three). No assert on a time: the candidates run interleaved in chunks of steps, the order rotating
every round, and `benchmark.extra_info` keeps every chunk's seconds (`samples`) and each ratio
``A_over_B`` = min(A) / min(B); the regression gate judges them.

Run on a quiet machine: ``pytest benchmarks/test_forward_gradient_speed.py --benchmark-json=out.json``.
"""

import time

import pytest
import torch
import torch.nn.functional as F

from suite.models import MODELS
from suite.nn import QuantConfig
from suite.spec import TrainSpec
from suite.train import METHODS


def _trainer(model_name: str, method: str, k: int = 1, batched: bool = False):
    torch.manual_seed(0)
    if model_name == "vgg16":
        model = MODELS["vgg"](num_classes=10, in_shape=(3, 32, 32), quant=QuantConfig(), depth=16)
        shape, batch, steps = (3, 32, 32), 128, 1
    else:  # the fwdgrad-vs-backprop-mnist spec's MLP: 2 x 1024, no BatchNorm, batch 64
        model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), quant=QuantConfig(), hidden=[1024, 1024],
                              batchnorm=False)
        shape, batch, steps = (1, 28, 28), 64, 10
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * steps, *shape, generator=g)
    y = torch.randint(0, 10, (batch * steps,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train = TrainSpec(epochs=1, batch_size=batch, lr_start=1e-4, method=method, num_directions=k,
                      batched_directions=batched)
    trainer = METHODS[method](model, opt, F.cross_entropy, train, [])
    batches = list(torch.arange(len(x)).split(batch))
    return lambda: trainer.epoch(x, y, batches).item()


def _interleaved(fns: dict, rounds: int) -> dict:
    """Every chunk's seconds per candidate; the order rotates every round."""
    for fn in fns.values():
        fn()  # warm-up: optimizer state, first-call allocations
    samples = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - t0)
    return samples


def _record(benchmark, samples: dict, reference: str) -> None:
    benchmark.extra_info["samples"] = samples
    best = {k: min(v) for k, v in samples.items()}
    for k in samples:
        if k != reference:
            benchmark.extra_info[f"{k}_over_{reference}"] = best[k] / best[reference]
    print({k: round(v, 4) for k, v in benchmark.extra_info.items() if k != "samples"})


@pytest.mark.parametrize("model_name,rounds", [("mlp", 20), ("vgg16", 4)])
def test_forward_gradient_step_vs_backprop(benchmark, model_name, rounds):
    fns = {"backprop": _trainer(model_name, "backprop"), "fg1": _trainer(model_name, "forward_gradient")}
    fns["fg10_batched"] = _trainer(model_name, "forward_gradient", 10, True)
    samples = benchmark.pedantic(_interleaved, args=(fns, rounds), rounds=1, iterations=1)
    _record(benchmark, samples, "backprop")
