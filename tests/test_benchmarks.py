"""Speed, as ratios measured in one run (never absolute times): BinaryConnect epochs vs float,
and the harness vs a bare PyTorch loop doing the same work.

Each ratio compares the minimum over interleaved rounds (A, B, C, A, B, C, ...), which is what
survives a shared, noisy machine. The figures go into the pytest-benchmark JSON (extra_info).
"""

import time

import pytest
import torch

from suite.data import Splits, batch_indices
from suite.harness import Run, execute, quant_config
from suite.models import build_model
from suite.nn import clip_latent_weights, latent_clip_targets
from suite.spec import load_spec, reproductions_dir
from suite.train.backprop import error_percent, train_epoch
from suite.train.losses import squared_hinge
from suite.train.optim import make_optimizer

N_TRAIN = 10_000  # one "epoch" here: 50 steps of the paper's batch of 200 on the full-size MLP


@pytest.fixture(scope="module")
def spec():
    return load_spec(reproductions_dir() / "binaryconnect-mnist.toml", "quick", {"train.batch_size": 200})


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N_TRAIN + 2000, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (N_TRAIN + 2000,), generator=g)
    return Splits(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:N_TRAIN + 1000], y[N_TRAIN:N_TRAIN + 1000],
                  x[N_TRAIN + 1000:], y[N_TRAIN + 1000:], 10, {"source": "synthetic"})


def interleaved_min(fns: dict, rounds: int) -> dict:
    best = {k: float("inf") for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def epoch_fn(spec, variant, data):
    torch.manual_seed(0)
    model = build_model(spec.model, num_classes=10, in_shape=data.in_shape, quant=quant_config(spec.variant(variant)))
    opt = make_optimizer(spec.train, model)
    clips = latent_clip_targets(model)
    gen = torch.Generator().manual_seed(0)

    def run():
        batches = batch_indices(N_TRAIN, 200, gen, "cpu")
        train_epoch(model, opt, squared_hinge, data.train_x, data.train_y, batches, clips).item()

    return run


def test_binaryconnect_epoch_vs_float(benchmark, spec, data):
    fns = {v: epoch_fn(spec, v, data) for v in ("float", "det", "stoch")}
    best = interleaved_min(fns, rounds=5)
    ratios = {v: best[v] / best["float"] for v in ("det", "stoch")}
    benchmark.extra_info.update({f"{v}_seconds": s for v, s in best.items()})
    benchmark.extra_info.update({f"{v}_over_float": r for v, r in ratios.items()})
    benchmark.pedantic(fns["float"], rounds=1, iterations=1)
    print(f"\nepoch of {N_TRAIN} samples: " + ", ".join(f"{v} {s:.3f}s" for v, s in best.items())
          + f"; det {ratios['det']:.3f}x float, stoch {ratios['stoch']:.3f}x float")
    assert ratios["det"] <= 1.15, f"deterministic BinaryConnect epoch {ratios['det']:.3f}x float (limit 1.15)"
    assert ratios["stoch"] <= 1.5, f"stochastic BinaryConnect epoch {ratios['stoch']:.3f}x float (limit 1.5)"


def bare_loop(spec, data, epochs):
    """What a user would write by hand: the same model and optimizer, train + evaluate per epoch."""
    torch.manual_seed(1)
    v = spec.variant("det")
    model = build_model(spec.model, num_classes=10, in_shape=data.in_shape, quant=quant_config(v))
    opt = make_optimizer(spec.train, model)
    clips = latent_clip_targets(model)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(N_TRAIN)
        for i in range(0, N_TRAIN, 200):
            idx = perm[i:i + 200]
            loss = squared_hinge(model(data.train_x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clip_latent_weights(clips)
        error_percent(model, data.val_x, data.val_y, 1000)
        error_percent(model, data.test_x, data.test_y, 1000)


def test_harness_overhead_vs_bare_loop(benchmark, spec, data, tmp_path):
    epochs = 2
    s = load_spec(reproductions_dir() / "binaryconnect-mnist.toml", "quick",
                  {"train.batch_size": 200, "train.epochs": epochs})
    run = Run(s, s.variant("det"), 1)
    fns = {"bare": lambda: bare_loop(s, data, epochs),
           "harness": lambda: execute(run, data, torch.device("cpu"), tmp_path, progress=False)}
    best = interleaved_min(fns, rounds=4)
    ratio = best["harness"] / best["bare"]
    benchmark.extra_info.update({"bare_seconds": best["bare"], "harness_seconds": best["harness"],
                                 "harness_over_bare": ratio})
    benchmark.pedantic(fns["bare"], rounds=1, iterations=1)
    print(f"\n{epochs} epochs: bare {best['bare']:.3f}s, harness {best['harness']:.3f}s, ratio {ratio:.3f}")
    assert ratio < 1.05, f"the harness adds {100 * (ratio - 1):.1f}% to a bare loop (limit 5%)"
