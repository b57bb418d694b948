"""Training speed, as ratios measured in one run (never absolute times): BinaryConnect's training
step against the float model's, and the harness's training epoch against a bare PyTorch loop doing
the same work (the harness's own cost: batch plan, timers, peak-memory reset and read).

Candidates run interleaved in chunks of a few steps (benchmarks/timing.py); every chunk's time goes
into the pytest-benchmark JSON, judged by `python -m suite check --benchmarks` against the reference.
"""

import torch
from timing import interleaved_samples, record

from suite.data import Splits, batch_indices
from suite.models import build_model
from suite.nn import clip_latent_weights, latent_clip_targets
from suite.paths import reproductions_dir
from suite.run.plan import Run
from suite.run.trainer import Trainer
from suite.spec import load_spec
from suite.train.backprop import train_epoch
from suite.train.losses import squared_hinge
from suite.train.optim import make_optimizer

BATCH = 200  # the paper's MNIST batch; the full-size 3 x 1024 MLP (2.9M weights)
STEPS = 5  # steps per timed chunk
ROUNDS = 30


def _spec():
    return load_spec(reproductions_dir() / "binaryconnect-mnist.toml", "quick", {"train.batch_size": BATCH})


def synthetic(n: int) -> Splits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n + 200, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (n + 200,), generator=g)
    return Splits(x[:n], y[:n], x[n:n + 100], y[n:n + 100], x[n + 100:], y[n + 100:], 10, {"source": "synthetic"})


def steps_fn(spec, variant, data):
    """STEPS training steps of the variant, exactly as the harness runs them (train_epoch)."""
    torch.manual_seed(0)
    v = spec.variant(variant)
    model = build_model(spec.model_for(v), num_classes=10, in_shape=data.in_shape, quant=v.quant_config())
    opt = make_optimizer(spec.train, model)
    clips = latent_clip_targets(model)
    gen = torch.Generator().manual_seed(0)

    def run():
        batches = batch_indices(len(data.train_x), BATCH, gen, "cpu")[:STEPS]
        train_epoch(model, opt, squared_hinge, data.train_x, data.train_y, batches, clips).item()

    return run


def test_binaryconnect_step_vs_float(benchmark):
    spec, data = _spec(), synthetic(10_000)
    fns = {v: steps_fn(spec, v, data) for v in ("float", "det", "stoch")}
    samples = interleaved_samples(fns, ROUNDS)
    ratios = record(benchmark, samples, [("det", "float"), ("stoch", "float")], per_chunk=STEPS)
    benchmark.pedantic(fns["det"], rounds=3, iterations=1)
    print(f"\ndet {ratios['det_over_float']:.3f}x float, stoch {ratios['stoch_over_float']:.3f}x float")


def bare_epoch_fn(spec, data):
    """What a user would write by hand: same model and optimizer, shuffle, step, clip."""
    torch.manual_seed(1)
    v = spec.variant("det")
    model = build_model(spec.model_for(v), num_classes=10, in_shape=data.in_shape, quant=v.quant_config())
    opt = make_optimizer(spec.train, model)
    clips = latent_clip_targets(model)
    n = len(data.train_x)

    def run():
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = squared_hinge(model(data.train_x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clip_latent_weights(clips)
        loss.item()

    return run


def test_harness_epoch_vs_bare_loop(benchmark):
    """The harness's training epoch against a bare loop, on a short epoch of STEPS steps: the
    per-epoch bookkeeping is amortised over 5 steps here instead of 250 in a real MNIST epoch, so
    this overstates it."""
    spec = _spec()
    data = synthetic(STEPS * BATCH)
    trainer = Trainer(Run(spec, spec.variant("det"), 1), data, torch.device("cpu"))
    fns = {"bare": bare_epoch_fn(spec, data), "harness": lambda: trainer.train_one_epoch()[0].item()}
    samples = interleaved_samples(fns, ROUNDS)
    ratios = record(benchmark, samples, [("harness", "bare")], per_chunk=STEPS)
    benchmark.pedantic(fns["harness"], rounds=3, iterations=1)
    print(f"\n{STEPS}-step epoch: harness {ratios['harness_over_bare']:.3f}x a bare loop")
