"""Speed, as ratios measured in one run (never absolute times): BinaryConnect's training step vs
the float model's, and the harness's training epoch vs a bare PyTorch loop doing the same work.

Method (a shared 2-core VM is noisy: the same step takes 27 to 60 ms): the candidates run
interleaved (A, B, C, A, B, C, ...) in short chunks of a few steps, and each ratio compares the
minimum chunk time of each candidate, the time the work takes when nothing interferes. The
figures go into the pytest-benchmark JSON (extra_info) and are printed.
"""


import pytest
import torch
from timing import more_rounds_while

from suite.data import Splits, batch_indices
from suite.harness import Run, Trainer, quant_config
from suite.models import build_model
from suite.nn import clip_latent_weights, latent_clip_targets
from suite.spec import load_spec, reproductions_dir
from suite.train.backprop import train_epoch
from suite.train.losses import squared_hinge
from suite.train.optim import make_optimizer

BATCH = 200  # the paper's MNIST batch; the full-size 3 x 1024 MLP (2.9M weights)
STEPS = 5  # steps per timed chunk
ROUNDS = 30
EXTRA_SECONDS = 20.0  # more rounds while a ratio is over its bound (tests/timing.py)


@pytest.fixture(scope="module")
def spec():
    return load_spec(reproductions_dir() / "binaryconnect-mnist.toml", "quick", {"train.batch_size": BATCH})


def synthetic(n: int) -> Splits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n + 200, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (n + 200,), generator=g)
    return Splits(x[:n], y[:n], x[n:n + 100], y[n:n + 100], x[n + 100:], y[n + 100:], 10, {"source": "synthetic"})


def steps_fn(spec, variant, data):
    """STEPS training steps of the variant, exactly as the harness runs them (train_epoch)."""
    torch.manual_seed(0)
    model = build_model(spec.model, num_classes=10, in_shape=data.in_shape, quant=quant_config(spec.variant(variant)))
    opt = make_optimizer(spec.train, model)
    clips = latent_clip_targets(model)
    gen = torch.Generator().manual_seed(0)

    def run():
        batches = batch_indices(len(data.train_x), BATCH, gen, "cpu")[:STEPS]
        train_epoch(model, opt, squared_hinge, data.train_x, data.train_y, batches, clips).item()

    return run


def test_binaryconnect_step_vs_float(benchmark, spec):
    data = synthetic(10_000)
    fns = {v: steps_fn(spec, v, data) for v in ("float", "det", "stoch")}
    best, _ = more_rounds_while(lambda b: b["det"] > 1.15 * b["float"] or b["stoch"] > 1.5 * b["float"], fns,
                                ROUNDS, EXTRA_SECONDS)
    ratios = {v: best[v] / best["float"] for v in ("det", "stoch")}
    benchmark.extra_info.update({f"{v}_ms_per_step": 1000 * s / STEPS for v, s in best.items()})
    benchmark.extra_info.update({f"{v}_over_float": r for v, r in ratios.items()})
    benchmark.pedantic(fns["det"], rounds=3, iterations=1)
    print("\nms/step: " + ", ".join(f"{v} {1000 * s / STEPS:.1f}" for v, s in best.items())
          + f"; det {ratios['det']:.3f}x float, stoch {ratios['stoch']:.3f}x float")
    assert ratios["det"] <= 1.15, f"deterministic BinaryConnect step {ratios['det']:.3f}x float (limit 1.15)"
    assert ratios["stoch"] <= 1.5, f"stochastic BinaryConnect step {ratios['stoch']:.3f}x float (limit 1.5)"


def bare_epoch_fn(spec, data):
    """What a user would write by hand: same model and optimizer, shuffle, step, clip."""
    torch.manual_seed(1)
    model = build_model(spec.model, num_classes=10, in_shape=data.in_shape, quant=quant_config(spec.variant("det")))
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


def test_harness_epoch_vs_bare_loop(benchmark, spec):
    """The harness's training epoch (batch plan, peak-memory reset and read, timers, the loop)
    against a bare loop, on a short epoch of STEPS steps: the per-epoch bookkeeping is amortised
    over 5 steps here instead of 250 in a real MNIST epoch, so this overstates it."""
    data = synthetic(STEPS * BATCH)
    trainer = Trainer(Run(spec, spec.variant("det"), 1), data, torch.device("cpu"))
    fns = {"bare": bare_epoch_fn(spec, data), "harness": lambda: trainer.train_one_epoch()[0].item()}
    best, _ = more_rounds_while(lambda b: b["harness"] >= 1.05 * b["bare"], fns, ROUNDS, EXTRA_SECONDS)
    ratio = best["harness"] / best["bare"]
    benchmark.extra_info.update({"bare_seconds": best["bare"], "harness_seconds": best["harness"],
                                 "harness_over_bare": ratio})
    benchmark.pedantic(fns["harness"], rounds=3, iterations=1)
    print(f"\n{STEPS}-step epoch: bare {1000 * best['bare']:.1f} ms, harness {1000 * best['harness']:.1f} ms, "
          f"ratio {ratio:.3f}")
    assert ratio < 1.05, f"the harness adds {100 * (ratio - 1):.1f}% to a bare loop (limit 5%)"
