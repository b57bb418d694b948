"""A fully-connected layer against its TT-layer on this CPU: Table 3 of Novikov, Podoprikhin,
Osokin, Vetrov, "Tensorizing Neural Networks" (NIPS 2015), as the deck quotes it:

    "Inference time for a 25088 x 4096 fully-connected layer and its corresponding TT-layer with
    all the TT-ranks equal 4. The memory usage for feeding forward one image is 392MB for the
    fully-connected layer and 0.766MB for the TT-layer."

The TT-layer (suite/compress/tensor_train.py) has cores of shape (4, m_k, n_k, 4) for the modes
25088 = 2 x 7 x 8 x 8 x 7 x 4 and 4096 = 4^6 (the factorization whose first step's output,
4 x 4 x 12544 floats, is exactly the paper's 0.766 MB); the dense layer is the TT-layer's own
matrix, formed once, so both compute the same function (their outputs are compared).

Time: each candidate's forward (no autograd) at each batch size, all candidates interleaved in one
process with the order rotating every round (suite/timing.py); a sample is the mean of enough
back-to-back calls to last `sample_seconds`; the table shows the minimum and the median of the
samples and the ratio of minimums. Memory: the weights' bytes, and what one forward allocates
(suite/forward_memory.py): its largest tensor and the peak of the tensors it holds at once.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from suite.compress.tensor_train import TTLinear
from suite.errors import UserError
from suite.forward_memory import measure_forward
from suite.studies.labels import variant_label
from suite.timing import interleaved_samples, repeats_for, torch_threads


@dataclass(frozen=True)
class Params:
    in_modes: list[int] = field(default_factory=lambda: [2, 7, 8, 8, 7, 4])
    out_modes: list[int] = field(default_factory=lambda: [4, 4, 4, 4, 4, 4])
    rank: int = 4
    batches: list[int] = field(default_factory=lambda: [1, 100])
    rounds: int = 15  # interleaved rounds: samples per candidate
    sample_seconds: float = 0.05  # back-to-back calls per sample add up to about this
    threads: int = 0  # torch threads while timing (0: leave the process's setting)


def check(p: Params, where: str) -> None:
    if len(p.in_modes) != len(p.out_modes) or not p.in_modes or min(p.in_modes + p.out_modes) < 1:
        raise UserError(f"{where}.in_modes / out_modes: two lists of positive integers of the same length, "
                        f"got {p.in_modes} and {p.out_modes}")
    for key in ("rank", "rounds"):
        if getattr(p, key) < 1:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")
    if not p.batches or min(p.batches) < 1:
        raise UserError(f"{where}.batches: positive batch sizes, got {p.batches}")
    if not p.sample_seconds > 0 or p.threads < 0:
        raise UserError(f"{where}.sample_seconds must be positive and threads >= 0")


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    torch.manual_seed(seed)
    with torch_threads(p.threads):
        return _measure(p, seed, device)


def _measure(p: Params, seed: int, device: torch.device) -> dict:
    tt = TTLinear(p.in_modes, p.out_modes, p.rank).to(device)
    with torch.no_grad():
        tt.bias.normal_(0, 0.01)
        weight = tt.weight_matrix().contiguous()  # the dense layer: the TT-layer's own matrix
    bias = tt.bias.detach().clone()
    gen = torch.Generator().manual_seed(seed)
    xs = {b: torch.randn(b, tt.in_features, generator=gen).to(device) for b in p.batches}
    rows, fns = [], {}
    for b, x in xs.items():
        with torch.inference_mode():
            dense_out, tt_out = F.linear(x, weight, bias), tt(x)
        diff = float((dense_out - tt_out).abs().max() / dense_out.abs().max())
        dense_mem = measure_forward(lambda x=x: F.linear(x, weight, bias), x, weight, bias)
        tt_mem = measure_forward(lambda x=x: tt(x), x, *tt.parameters())
        rows.append({"batch": b, "max_relative_difference": diff,
                     "dense_forward_peak_bytes": dense_mem.peak_bytes,
                     "dense_forward_largest_bytes": dense_mem.largest_bytes,
                     "tt_forward_peak_bytes": tt_mem.peak_bytes, "tt_forward_largest_bytes": tt_mem.largest_bytes})

        def dense(x=x):
            with torch.inference_mode():
                return F.linear(x, weight, bias)

        def ttf(x=x):
            with torch.inference_mode():
                return tt(x)

        fns[f"dense_b{b}"], fns[f"tt_b{b}"] = dense, ttf
    repeats = {k: repeats_for(fn, p.sample_seconds) for k, fn in fns.items()}
    # one interleaved schedule, order rotating every round; a sample is `repeats[k]` calls of candidate k
    timed = interleaved_samples({k: _repeat(fn, repeats[k]) for k, fn in fns.items()}, rounds=p.rounds)
    samples = {k: [t / repeats[k] for t in v] for k, v in timed.items()}
    for row in rows:
        b = row["batch"]
        row["dense_seconds"], row["tt_seconds"] = samples[f"dense_b{b}"], samples[f"tt_b{b}"]
        row["dense_over_tt"] = min(row["dense_seconds"]) / min(row["tt_seconds"])
    weight_bytes = {"dense": weight.numel() * weight.element_size(), "tt": sum(g.numel() * g.element_size()
                                                                           for g in tt.cores)}
    summary = {"dense_weight_bytes": weight_bytes["dense"], "tt_weight_bytes": weight_bytes["tt"],
               "tt_weights": tt.num_weights(), "in_features": tt.in_features, "out_features": tt.out_features,
               **{f"{k}_min_seconds": min(v) for k, v in samples.items()}}
    for row in rows:
        summary[f"tt_forward_largest_bytes_b{row['batch']}"] = row["tt_forward_largest_bytes"]
    return {"summary": summary, "tables": {"batches": rows, "repeats": repeats,
                                           "threads": torch.get_num_threads()}}


def _repeat(fn, n: int):
    def call():
        for _ in range(n):
            fn()
    return call


# --- report -------------------------------------------------------------------------------------

PAPER_IDS = {  # (batch, candidate) -> id in the baselines file
    (1, "dense"): "tt-t3-cpu-fc-1im", (1, "tt"): "tt-t3-cpu-tt-1im",
    (100, "dense"): "tt-t3-cpu-fc-100im", (100, "tt"): "tt-t3-cpu-tt-100im",
}


def _paper(baselines, key):
    if baselines is None or key not in baselines.index:
        return None
    return float(baselines.loc[key, "value"])


def _mib(n: float) -> str:
    return f"{n / 2**20:.3f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    out = []
    for r in records:
        rows, s = r["tables"]["batches"], r["summary"]
        shape = f"{s['in_features']} x {s['out_features']}"
        table = []
        for row in rows:
            b = row["batch"]
            pd_ms, pt_ms = (_paper(baselines, PAPER_IDS.get((b, k), "")) for k in ("dense", "tt"))
            dense_ms, tt_ms = 1e3 * min(row["dense_seconds"]), 1e3 * min(row["tt_seconds"])
            table.append({
                "batch": b,
                "dense (ms): min / median": f"{dense_ms:.2f} / {1e3 * statistics.median(row['dense_seconds']):.2f}",
                "TT-layer (ms): min / median": f"{tt_ms:.3f} / {1e3 * statistics.median(row['tt_seconds']):.3f}",
                "dense / TT (ours)": f"{row['dense_over_tt']:.1f}×",
                "paper CPU: dense / TT (ms)": f"{pd_ms:g} / {pt_ms:g}" if pd_ms and pt_ms else "",
                "dense / TT (paper)": f"{pd_ms / pt_ms:.2f}×" if pd_ms and pt_ms else "",
                "TT faster here?": "yes" if row["dense_over_tt"] > 1 else "no",
            })
        threads = r["tables"].get("threads")
        out += [f"### {variant_label(r)} (seed {r['seed']}): {shape} layer, TT-ranks {r['params']['rank']}, modes "
                f"{'x'.join(map(str, r['params']['in_modes']))} -> {'x'.join(map(str, r['params']['out_modes']))}",
                "", f"Forward time on this CPU ({threads} torch thread{'s' if threads != 1 else ''}; "
                f"{len(rows[0]['dense_seconds'])} interleaved samples per candidate; ratio of minimums):", "",
                pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
        mem = []
        paper_mem = {"dense": _paper(baselines, "tt-t3-memory-fc-1im"), "tt": _paper(baselines, "tt-t3-memory-tt-1im")}
        for row in rows:
            for k, label in (("dense", "fully-connected"), ("tt", "TT-layer")):
                mem.append({"batch": row["batch"], "layer": label, "weights": _mib(s[f"{k}_weight_bytes"]),
                            "largest tensor of the forward": _mib(row[f"{k}_forward_largest_bytes"]),
                            "peak held by the forward": _mib(row[f"{k}_forward_peak_bytes"]),
                            "paper ('memory for feeding forward one image')":
                                f"{paper_mem[k]:g} MB" if row["batch"] == 1 and paper_mem[k] else ""})
        out += ["Memory (bytes of tensors, measured; MiB = 2^20 bytes):", "",
                pd.DataFrame(mem).to_markdown(index=False, disable_numparse=True), "",
                f"The paper's 392 MB is the dense weights ({s['dense_weight_bytes']} bytes = "
                f"{s['dense_weight_bytes'] / 2**20:.1f} MiB); its 0.766 MB matches the largest tensor of our TT "
                f"forward at batch 1 ({s.get('tt_forward_largest_bytes_b1', math.nan) / 2**20:.3f} MiB), the first "
                f"core's output. TT weights: {s['tt_weights']} ({s['tt_weight_bytes']} bytes, "
                f"{s['dense_weight_bytes'] / s['tt_weight_bytes']:.0f}× fewer). Outputs agree to a relative "
                f"{max(row['max_relative_difference'] for row in rows):.1e} (the dense layer is the TT-layer's "
                "matrix).",
                ""]
    if baselines is not None:
        gpu = [f"{b['method']}: {b['value']} {b['unit']}" for bid, b in baselines.iterrows() if "-gpu-" in bid]
        src = {f"{b['paper']}, {b['table']} (source: {b['source']}; confidence {b['confidence']})"
               for bid, b in baselines.iterrows() if bid.startswith("tt-t3")}
        if gpu:
            out += ["The paper's GPU cells, for context (not measured here): " + "; ".join(gpu) + ".", ""]
        out += ["Paper numbers from:", ""] + [f"- {x}" for x in sorted(src)] + [""]
    return "\n".join(out)
