"""Forward gradient vs backprop, time per training step, as ratios within one process.

The targets (issue "memory measured at the tensor level"): one direction costs at most one
backprop step (MNIST MLP and VGG16-BN at batch 128), ten directions carried together at most
1.1 x (1 + 2k) / 3 = 7.7 backprop steps (one primal and 2k tangent products against backprop's
three). Two MNIST MLPs: the fwdgrad-vs-backprop-mnist spec's (2 x 1024, batch 64; in the gate) and
the memory-training spec's (3 x 1024 with BatchNorm, batch 200, squared hinge loss; `extended`).
A forward-gradient step does per-parameter work backprop does not (drawing the direction, scaling
it by the derivative), while its products cost the same FLOPs.

No assert on a time: the candidates run interleaved in chunks of steps, the order rotating
every round (benchmarks/timing.py), and `benchmark.extra_info` keeps every chunk's seconds
(`samples`) and each ratio ``A_over_B``; the regression gate judges them. VGG16's ten directions
(about a minute) and the memory-training MLP are marked `extended`: measured on request
(`-m extended`), not by the gate.

Run on a quiet machine: ``pytest benchmarks/test_forward_gradient_speed.py --benchmark-json=out.json``.
"""

import pytest
import torch
import torch.nn.functional as F
from timing import interleaved_samples, record

from suite.models import MODELS
from suite.nn import QuantConfig
from suite.spec import TrainSpec
from suite.train import METHODS, directions
from suite.train.losses import LOSSES


def _trainer(model_name: str, method: str, k: int = 1, batched: bool = False, fused_adam: bool = False):
    torch.manual_seed(0)
    loss = F.cross_entropy
    if model_name == "vgg16":
        model = MODELS["vgg"](num_classes=10, in_shape=(3, 32, 32), quant=QuantConfig(), depth=16)
        shape, batch, steps = (3, 32, 32), 128, 1
    elif model_name == "mlp3x1024":  # the memory-training spec's MNIST MLP
        model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), quant=QuantConfig(), hidden=[1024] * 3)
        shape, batch, steps, loss = (1, 28, 28), 200, 5, LOSSES["squared_hinge"]
    else:  # the fwdgrad-vs-backprop-mnist spec's MLP: 2 x 1024, no BatchNorm, batch 64
        model = MODELS["mlp"](num_classes=10, in_shape=(1, 28, 28), quant=QuantConfig(), hidden=[1024, 1024],
                              batchnorm=False)
        shape, batch, steps = (1, 28, 28), 64, 10
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * steps, *shape, generator=g)
    y = torch.randint(0, 10, (batch * steps,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True if fused_adam else None)
    train = TrainSpec(epochs=1, batch_size=batch, lr_start=1e-4, method=method, num_directions=k,
                      batched_directions=batched)
    trainer = METHODS[method](model, opt, loss, train, [])
    batches = list(torch.arange(len(x)).split(batch))
    def run():
        return trainer.epoch(x, y, batches).item()

    run.parameters = sum(p.numel() for p in model.parameters())  # a direction's length
    run.steps = len(batches)  # steps a call
    return run


@pytest.mark.parametrize("model_name,rounds", [("mlp", 20), ("vgg16", 8)])
def test_forward_gradient_step_vs_backprop(benchmark, model_name, rounds):
    fns = {"backprop": _trainer(model_name, "backprop"), "fg1": _trainer(model_name, "forward_gradient")}
    if model_name == "mlp":  # VGG16's ten directions: test_ten_directions_vgg16 (not in the gate: ~1 minute)
        fns["fg10_batched"] = _trainer(model_name, "forward_gradient", 10, True)
    samples = benchmark.pedantic(interleaved_samples, args=(fns, rounds), rounds=1, iterations=1)
    print(record(benchmark, samples, [(k, "backprop") for k in fns if k != "backprop"]))


@pytest.mark.extended
def test_forward_gradient_step_vs_backprop_mlp3x1024(benchmark):
    """The memory-training spec's MLP at its batch of 200: one direction, and ten carried together."""
    fns = {"backprop": _trainer("mlp3x1024", "backprop"), "fg1": _trainer("mlp3x1024", "forward_gradient"),
           "fg10_batched": _trainer("mlp3x1024", "forward_gradient", 10, True)}
    samples = benchmark.pedantic(interleaved_samples, args=(fns, 20), rounds=1, iterations=1)
    print(record(benchmark, samples, [("fg1", "backprop"), ("fg10_batched", "backprop")]))


@pytest.mark.extended
def test_forward_gradient_step_vs_backprop_mlp_fused_adam(benchmark):
    """The gate's MNIST MLP with torch's fused Adam for both methods (one kernel over all parameters;
    on the CPU torch's default Adam loops over the parameters tensor by tensor): the optimizer's share
    of a step shrinks, so the forward gradient's own extra work (drawing the direction) weighs more.
    The default-Adam pair runs beside it, and `draw`: the step's gaussian direction alone (one draw per
    step of a chunk), work backprop does not do, as a share of a backprop step."""
    fns = {"backprop": _trainer("mlp", "backprop"), "fg1": _trainer("mlp", "forward_gradient"),
           "backprop_fused": _trainer("mlp", "backprop", fused_adam=True),
           "fg1_fused": _trainer("mlp", "forward_gradient", fused_adam=True)}
    d, steps = fns["fg1"].parameters, fns["fg1"].steps
    direction = torch.empty(d)
    fns["draw"] = lambda: [directions.fill(direction, key, 0, "gaussian") for key in range(steps)]  # one a step
    samples = benchmark.pedantic(interleaved_samples, args=(fns, 20), rounds=1, iterations=1)
    print(record(benchmark, samples, [("fg1", "backprop"), ("fg1_fused", "backprop_fused"),
                                      ("backprop_fused", "backprop"), ("draw", "backprop"),
                                      ("draw", "backprop_fused")], direction_numbers=d,
                 direction_sampler=directions.status()))


@pytest.mark.extended
def test_ten_directions_vgg16(benchmark):
    fns = {"backprop": _trainer("vgg16", "backprop"), "fg10_batched": _trainer("vgg16", "forward_gradient", 10, True)}
    samples = benchmark.pedantic(interleaved_samples, args=(fns, 4), rounds=1, iterations=1)
    print(record(benchmark, samples, [("fg10_batched", "backprop")]))
