"""The cost of binary and low-bit layers on this CPU (GitHub issue 21, item 4): per layer shape of
the paper models and per batch (1 and the paper's training batch), the float layer, the emulated
binary layer, the packed binary layer and the packed DoReFa W1A2 / W1A4 / W2A2 layers: time per
forward pass, ratio to float, operations per second, weight bytes; XNOR-Net's theoretical ~58x /
~32x beside them (suite/nn/costs.py says what is measured).

    python scripts/lowbit_cost_table.py                       # every shape, batches 1 and the paper's
    python scripts/lowbit_cost_table.py --max-batch 32 --json costs.json --only "MNIST MLP" "AlexNet"

Run it on a quiet machine (times are minima over interleaved rounds; ratios within one process).
The paper's training batches make AlexNet's layers take seconds each in float: --max-batch caps them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tabulate import tabulate

from suite.kernels import status
from suite.nn import costs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from timing import chunked, interleaved_samples  # noqa: E402  (the benchmarks' interleaved timer)


def timer(rounds: int, chunk_seconds: float = 0.005):
    """{name: fn} -> {name: [seconds per call, one per round]}: chunks of equal calls, interleaved."""
    def time_candidates(fns):
        chunks, n = chunked(fns, chunk_seconds)
        return {k: [t / n for t in v] for k, v in interleaved_samples(chunks, rounds).items()}
    return time_candidates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", nargs="*", default=["1", "train"], help="batch sizes; 'train' = the paper's batch")
    p.add_argument("--max-batch", type=int, default=None, help="cap the paper's training batches")
    p.add_argument("--only", nargs="*", default=None, help="models or layers whose name contains one of these")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    rows = []
    for shape in costs.SHAPES:
        if args.only and not any(o in shape.model or o in shape.name for o in args.only):
            continue
        for b in args.batches:
            batch = shape.train_batch if b == "train" else int(b)
            batch = min(batch, args.max_batch) if args.max_batch else batch
            print(f"{shape.model} {shape.name}, batch {batch}", file=sys.stderr, flush=True)
            rows += costs.layer_costs(shape, batch, timer(args.rounds))
    table = [[r["model"], r["layer"], r["batch"], r["candidate"], f"{r['ms']:.3f}", f"{r['float_over_this']:.2f}x",
              f"{r['gops_per_s']:.0f}", f"{r['weight_bytes'] / 1024:.0f} KiB", f"{r['float_bytes_over_this']:.1f}x"]
             for r in rows]
    print(f"kernels: {status()}; torch threads: {torch.get_num_threads()}; XNOR-Net's theoretical figures: "
          f"~{costs.XNOR_NET_SPEEDUP}x faster, ~{costs.XNOR_NET_MEMORY}x less memory (binary weights and inputs)\n")
    print(tabulate(table, headers=["model", "layer", "batch", "candidate", "ms", "speed-up vs float",
                                   "(G)ops/s (2 MACs)", "weights", "memory vs float"], tablefmt="github"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernels": status(), "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
