"""When is a pruned layer faster as a sparse matrix? The deck's "Burden of Sparseness": "Matrices
with less than 70% zero values, better to treat as dense matrices" (Zhou, "Neural Network
Approximation: Low rank, Sparsity, and Quantization", 2019), measured on this CPU with torch's
formats.

A `rows` x `cols` Gaussian weight matrix is pruned to each density (fraction of nonzeros) and
multiplied with a dense (cols x batch) input, y = W X, in each format:

- dense: W with its zeros, torch.mm (the CPU's BLAS);
- CSR: torch's sparse CSR tensor (crow indices, column indices, values: the deck's IA, JA, A)
  of the same magnitude-pruned W (an unstructured, random-looking pattern);
- BSR: torch's block-sparse rows, `block` x `block` blocks, of a W pruned by blocks to the same
  density (the blocks of largest norm kept): block-structured pruning, as BSR needs; an
  unstructured pattern leaves almost every block nonempty.

All formats of one (density, batch) cell are timed interleaved in one process, the order
rotating every round (suite/timing.py); the table shows each format's time over the dense time
(ratio of minimums), and the crossover: the density at which the sparse format stops being
faster, interpolated between the measured densities (in log density).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from suite.errors import UserError
from suite.studies.labels import variant_label
from suite.timing import per_call_samples, torch_threads

FORMATS = ("dense", "csr", "bsr")


@dataclass(frozen=True)
class Params:
    rows: int = 4096
    cols: int = 4096
    densities: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    batches: list[int] = field(default_factory=lambda: [1, 100])
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    block: int = 8  # BSR block size
    rounds: int = 9
    sample_seconds: float = 0.02
    threads: int = 0  # torch threads while timing (0: leave the process's setting)


def check(p: Params, where: str) -> None:
    if p.rows < 1 or p.cols < 1 or p.block < 1 or p.rows % p.block or p.cols % p.block:
        raise UserError(f"{where}.rows / cols / block: positive, the block dividing both, got {p.rows}, {p.cols}, "
                        f"{p.block}")
    if not p.densities or not all(0 < d <= 1 for d in p.densities):
        raise UserError(f"{where}.densities: fractions in (0, 1], got {p.densities}")
    if not p.batches or min(p.batches) < 1 or p.rounds < 1 or not p.sample_seconds > 0 or p.threads < 0:
        raise UserError(f"{where}: batches, rounds and sample_seconds must be positive, threads >= 0")
    bad = [f for f in p.formats if f not in FORMATS]
    if bad or "dense" not in p.formats:
        raise UserError(f"{where}.formats: 'dense' and any of {', '.join(FORMATS[1:])}, got {p.formats}")


def magnitude_pruned(w: torch.Tensor, density: float) -> torch.Tensor:
    """W with all but its round(density x numel) largest magnitudes set to 0."""
    k = max(1, round(density * w.numel()))
    threshold = w.abs().flatten().kthvalue(w.numel() - k + 1).values
    return w * (w.abs() >= threshold)


def block_pruned(w: torch.Tensor, density: float, block: int) -> torch.Tensor:
    """W with all but the round(density x blocks) blocks of largest Frobenius norm set to 0."""
    r, c = w.shape
    norms = w.reshape(r // block, block, c // block, block).square().sum((1, 3))
    keep = torch.zeros(norms.numel(), dtype=torch.bool)
    keep[norms.flatten().argsort(descending=True)[: max(1, round(density * norms.numel()))]] = True
    mask = keep.view_as(norms).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return w * mask


def storage_bytes(t: torch.Tensor) -> int:
    if t.layout == torch.sparse_csr:
        return sum(x.numel() * x.element_size() for x in (t.crow_indices(), t.col_indices(), t.values()))
    if t.layout == torch.sparse_bsr:
        return sum(x.numel() * x.element_size() for x in (t.crow_indices(), t.col_indices(), t.values()))
    return t.numel() * t.element_size()


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    with torch_threads(p.threads):
        return _measure(p, seed, progress)


def _measure(p: Params, seed: int, progress: bool) -> dict:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(p.rows, p.cols, generator=gen)
    xs = {b: torch.randn(p.cols, b, generator=gen) for b in p.batches}
    cells = []
    for d in p.densities:
        pruned = magnitude_pruned(w, d)
        dense_of = {"dense": pruned, "csr": pruned}
        if "bsr" in p.formats:
            dense_of["bsr"] = block_pruned(w, d, p.block)
        mats = {"dense": pruned, "csr": pruned.to_sparse_csr()}
        if "bsr" in p.formats:
            mats["bsr"] = dense_of["bsr"].to_sparse_bsr((p.block, p.block))
        for b, x in xs.items():
            fns = {}
            for f in p.formats:
                ref = dense_of[f] @ x
                err = float((mats[f] @ x - ref).abs().max() / ref.abs().max())
                if err > 1e-4:  # the formats must compute the same product
                    raise AssertionError(f"{f} product differs from the dense one by {err:.1e}")
                fns[f] = lambda m=mats[f], x=x: torch.mm(m, x)
            samples = per_call_samples(fns, p.rounds, p.sample_seconds)
            cell = {"density": d, "batch": b, "seconds": samples,
                    "bytes": {f: storage_bytes(mats[f]) for f in p.formats},
                    "over_dense": {f: min(samples[f]) / min(samples["dense"]) for f in p.formats}}
            cells.append(cell)
            if progress:
                print(f"density {d:g}, batch {b}: " + ", ".join(f"{f} {v:.2f}x dense" for f, v in
                                                                 cell["over_dense"].items()), flush=True)
    crossover = {f"{f}_b{b}": crossover_density([c for c in cells if c["batch"] == b], f)
                 for f in p.formats if f != "dense" for b in p.batches}
    summary = {"dense_bytes": p.rows * p.cols * 4}
    return {"summary": summary, "tables": {"cells": cells, "crossover": crossover, "threads": torch.get_num_threads()}}


def crossover_density(cells: list[dict], fmt: str) -> dict:
    """Where `fmt` stops beating dense: the first density (ascending) at which its time ratio
    reaches 1, interpolated in log density from the last one below; 'faster at every density' or
    'slower at every density' otherwise."""
    pts = sorted((c["density"], c["over_dense"][fmt]) for c in cells)
    if not pts:
        return {"kind": "none"}
    if pts[0][1] >= 1:
        return {"kind": "never faster", "at": pts[0][0]}
    for (d0, r0), (d1, r1) in zip(pts, pts[1:], strict=False):
        if r0 < 1 <= r1:
            t = (0 - math.log(r0)) / (math.log(r1) - math.log(r0))
            return {"kind": "crossover", "density": math.exp(math.log(d0) + t * (math.log(d1) - math.log(d0))),
                    "between": [d0, d1]}
    return {"kind": "always faster", "up_to": pts[-1][0]}


def _crossover_text(c: dict) -> str:
    if c["kind"] == "crossover":
        return (f"sparse faster below ≈{100 * c['density']:.0f}% nonzeros (≈{100 * (1 - c['density']):.0f}% zeros; "
                f"between the measured {100 * c['between'][0]:g}% and {100 * c['between'][1]:g}%)")
    if c["kind"] == "never faster":
        return f"never faster than dense (already slower at {100 * c['at']:g}% nonzeros)"
    if c["kind"] == "always faster":
        return f"faster at every measured density (up to {100 * c['up_to']:g}%)"
    return "not measured"


def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    out = []
    for r in records:
        p, cells = r["params"], r["tables"]["cells"]
        threads = r["tables"].get("threads")
        fmts = [f for f in p["formats"] if f != "dense"]
        for b in p["batches"]:
            rows = []
            for c in [c for c in cells if c["batch"] == b]:
                dense_ms = 1e3 * min(c["seconds"]["dense"])
                row = {"nonzeros": f"{100 * c['density']:g}%", "dense (ms)": f"{dense_ms:.3f}"}
                for f in fmts:
                    row[f"{f.upper()} (ms)"] = f"{1e3 * min(c['seconds'][f]):.3f}"
                    row[f"{f.upper()} / dense"] = f"{c['over_dense'][f]:.2f}"
                    row[f"{f.upper()} bytes / dense"] = f"{c['bytes'][f] / c['bytes']['dense']:.3f}"
                rows.append(row)
            out += [f"### {variant_label(r)}: {p['rows']} x {p['cols']} weight times a ({p['cols']} x {b}) input "
                    f"({'matrix-vector' if b == 1 else 'matrix-matrix'}), seed {r['seed']}", "",
                    f"Minimum over {len(cells[0]['seconds']['dense'])} interleaved samples per format, {threads} torch "
                    f"thread{'s' if threads != 1 else ''}; BSR: {p['block']} x {p['block']} blocks of a block-pruned "
                    "matrix of the same density:", "",
                    pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
            crossover = r["tables"]["crossover"]
            out += [f"- {f.upper()}, batch {b}: {_crossover_text(crossover[f'{f}_b{b}'])}." for f in fmts]
            out.append("")
    if baselines is not None and "sparse-deck-70pct-zeros" in baselines.index:
        b = baselines.loc["sparse-deck-70pct-zeros"]
        out += [f"The deck's rule of thumb ({b['table']}): {b['value']}. Source: {b['paper']} "
                f"(confidence {b['confidence']}).", ""]
    return "\n".join(out)
