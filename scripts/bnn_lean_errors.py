"""Test error of bnn-lean against BNN with float-saved tensors on bnn-mnist's quick profile, per
seed, through the harness's Trainer (the same data, model, schedule and model selection).

bnn-lean is bnn-mnist's `bnn` variant with ``packed`` quantizers (saved tensors in bits), 8-bit
latent weights and Adam with 8-bit moments inside the backward pass (suite/train/lean_optim.py).
The last part has no spec key yet (see the report: ``train.optimizer_state_bits`` and
``train.optimizer_in_backward``), hence this script rather than a variant of the spec.

    python scripts/bnn_lean_errors.py --seeds 1 2 3 --variants bnn bnn-lean --out errors.json
"""

import argparse
import dataclasses
import json
import time

from suite.allocator import keep_freed_memory
from suite.harness import Run, Trainer, summarize
from suite.measure import pick_device

from suite.data import load_splits
from suite.spec import load_spec, reproductions_dir
from suite.train.lean_optim import LeanLatentAdam


def lean_variant(spec):
    bnn = spec.variant("bnn")
    return dataclasses.replace(bnn, name="bnn-lean", label="bnn-lean", weight_quantizer="binaryconnect(packed=true)",
                               input_quantizer="bnn_sign(packed=true)", latent_bits=8, baseline=None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--variants", nargs="+", default=["bnn", "bnn-lean"])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    keep_freed_memory()
    spec = load_spec(reproductions_dir() / "bnn-mnist.toml", args.profile)
    data = load_splits(spec.data)
    results = []
    for seed in args.seeds:
        for name in args.variants:
            variant = lean_variant(spec) if name == "bnn-lean" else spec.variant(name)
            trainer = Trainer(Run(spec, variant, seed), data, pick_device("cpu"))
            if name == "bnn-lean":
                LeanLatentAdam(trainer.model, trainer.optimizer)
            t0 = time.perf_counter()
            epochs = [trainer.epoch(n) for n in range(1, spec.train.epochs + 1)]
            s = summarize(epochs)
            results.append({"variant": name, "seed": seed, "test_error_at_best_val": s["test_error_at_best_val"],
                            "final_test_error": s["final_test_error"], "seconds": time.perf_counter() - t0,
                            "train_loss": [e["train_loss"] for e in epochs]})
            print(json.dumps(results[-1]), flush=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
