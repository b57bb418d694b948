"""What binary and low-bit layers cost on this CPU: the paper models' layer shapes, each at batch 1
and at its paper's training batch, timed as the float layer, the emulated binary layer (float32
arithmetic on +-1 values: what every training table of the suite measures) and the packed layers
(suite/kernels: XNOR-popcount for binary, bit-serial for DoReFa's W1A2, W1A4, W2A2), with the
weight bytes of each; XNOR-Net's and BNN's own figures beside them from the spec's baselines.

One forward pass in evaluation (no autograd), the weights packed once as deployed, the input
packed on every call; every candidate of one (layer, batch) cell timed interleaved in one process,
the order rotating every round (suite/timing.py); a cell's figures are minima over the rounds and
its ratios are within the cell (`suite/nn/costs.py` builds the layers and says what is counted).

`whole_models` adds whole networks (suite/studies/lowbit_cost_models.py): bnn-mnist's BNN MLP and
xnor-nin-cifar10's XNOR-Net NIN, a training step and a pass over test images each, float twin against
emulated and packed (and the exported BNN MLP), with the packed networks' predictions compared to the
emulated one's.

Timings are not results the regression check compares (they move with the machine): the summary
holds what does not, the number of layers that ran packed, the weight bytes saved and the
predictions in which a packed network differs from the emulated one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from suite.errors import UserError
from suite.kernels import status as kernel_status
from suite.nn import costs
from suite.studies import lowbit_cost_models
from suite.studies.labels import variant_label
from suite.timing import per_call_samples, torch_threads

CANDIDATES = tuple(costs.VARIANTS)  # packed variants, timed beside float and emulated binary
COLUMN = {"binary": "packed binary", "dorefa_w1a2": "packed W1A2", "dorefa_w1a4": "packed W1A4",
          "dorefa_w2a2": "packed W2A2"}
PAPER_ROWS = ("speedup", "memory_saving", "layerwise_speedup")  # baseline metrics listed under a table


@dataclass(frozen=True)
class Params:
    models: list[str] = field(default_factory=list)  # the models of suite/nn/costs.py SHAPES whose name
    layers: list[str] = field(default_factory=list)  # ... and layers whose name contains one of these ([]: all)
    batches: list[int] = field(default_factory=lambda: [1])
    train_batch: bool = True  # also each layer's paper training batch
    max_batch: int = 0  # the training batch capped at this (0: no cap)
    candidates: list[str] = field(default_factory=lambda: list(CANDIDATES))
    rounds: int = 7
    sample_seconds: float = 0.005  # one sample: back-to-back calls for about this long
    threads: int = 0  # torch threads while timing (0: leave the process's setting)
    whole_models: list[str] = field(default_factory=list)  # keys of lowbit_cost_models.MODELS
    model_steps: int = 10  # training steps per timed call of a whole model
    test_images: int = 1000  # test images of the inference pass (0: all)
    eval_batch: int = 1000
    model_rounds: int = 3


def shapes(p: Params) -> list[costs.Shape]:
    return [s for s in costs.SHAPES
            if (not p.models or any(m in s.model for m in p.models))
            and (not p.layers or any(x in s.name for x in p.layers))]


def batches(p: Params, shape: costs.Shape) -> list[int]:
    out = list(p.batches)
    if p.train_batch:
        out.append(min(shape.train_batch, p.max_batch) if p.max_batch else shape.train_batch)
    return sorted(set(out))


def check(p: Params, where: str) -> None:
    if not shapes(p):
        known = sorted({s.model for s in costs.SHAPES})
        raise UserError(f"{where}.models / layers: no layer matches {p.models} / {p.layers}; models: {known}")
    if any(b < 1 for b in p.batches) or (not p.batches and not p.train_batch) or p.max_batch < 0:
        raise UserError(f"{where}.batches: positive batch sizes (or train_batch = true), max_batch >= 0, got "
                        f"{p.batches}, max_batch {p.max_batch}")
    bad = [c for c in p.candidates if c not in CANDIDATES]
    if bad:
        raise UserError(f"{where}.candidates: any of {', '.join(CANDIDATES)}, got {bad}")
    if p.rounds < 1 or not p.sample_seconds > 0 or p.threads < 0:
        raise UserError(f"{where}: rounds and sample_seconds must be positive, threads >= 0")
    bad = [m for m in p.whole_models if m not in lowbit_cost_models.MODELS]
    if bad:
        raise UserError(f"{where}.whole_models: any of {', '.join(lowbit_cost_models.MODELS)}, got {bad}")
    if p.model_steps < 1 or p.test_images < 0 or p.eval_batch < 1 or p.model_rounds < 1:
        raise UserError(f"{where}: model_steps, eval_batch and model_rounds must be positive, test_images >= 0, got "
                        f"{p.model_steps}, {p.eval_batch}, {p.model_rounds}, {p.test_images}")


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    if device.type != "cpu":
        raise UserError("the low-bit kernels run on the CPU: run this study with --device cpu")
    with torch_threads(p.threads):
        cells = [(s, b) for s in shapes(p) for b in batches(p, s)]
        rows = []
        for shape, batch in tqdm(cells, desc=desc, disable=not progress, leave=False):
            rows += costs.layer_costs(shape, batch, lambda fns: per_call_samples(fns, p.rounds, p.sample_seconds),
                                      variants=tuple(p.candidates))
        whole = []
        for name in tqdm(p.whole_models, desc=f"{desc} (whole models)", disable=not progress, leave=False):
            whole += lowbit_cost_models.model_costs(name, seed, p.model_steps, p.test_images or None, p.eval_batch,
                                                    lambda fns: per_call_samples(fns, p.model_rounds, 0.001))
        threads = torch.get_num_threads()
    packed = [r for r in rows if r["candidate"].startswith("packed")]
    summary = {"layers": len(shapes(p)), "cells": len(cells),
               "packed_cells_run_packed": sum(r["arithmetic"].startswith("packed") for r in packed),
               "packed_cells": len(packed)}
    for c in p.candidates:  # bytes: fixed by the shapes
        mine = [r["float_bytes_over_this"] for r in packed if r["candidate"] == f"packed {c}"]
        summary[f"weights_times_smaller_{c}_min"] = min(mine)
        summary[f"weights_times_smaller_{c}_max"] = max(mine)
    for r in whole:  # identical predictions: what the packed arithmetic promises
        if r["candidate"] != "emulated" and r.get("predictions_differing") is not None:
            summary[f"predictions_differing_{r['candidate']}_{r['network']}"] = r["predictions_differing"]
    return {"summary": summary, "tables": {"rows": rows, "models": whole, "kernels": kernel_status(),
                                           "threads": threads}}


# --- report -------------------------------------------------------------------------------------

def _speedup(row: dict) -> str:
    return f"{row['float_over_this']:.2f}x"


def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    out = []
    for r in records:
        t, p = r["tables"], r["params"]
        rows = pd.DataFrame(t["rows"])
        table = []
        for (layer, batch), cell in rows.groupby(["layer", "batch"], sort=False):
            by = {row["candidate"]: row for row in cell.to_dict("records")}
            line = {"layer": layer, "batch": str(batch), "float (ms)": f"{by['float']['ms']:.3f}",
                    "emulated binary": _speedup(by["emulated binary"])}
            for c in p["candidates"]:
                row = by[f"packed {c}"]
                mark = "" if row["arithmetic"].startswith("packed") else " (ran emulated)"
                line[COLUMN[c]] = _speedup(row) + mark
            binary = by.get("packed binary")
            if binary is not None:
                line["packed binary, G ops/s"] = f"{binary['gops_per_s']:.0f}"
                line["packed binary weights, x fewer bytes"] = f"{binary['float_bytes_over_this']:.1f}"
            table.append(line)
        threads = t.get("threads")
        where = f"on {r['provenance'].get('device_name', 'this CPU')}; kernels: {t['kernels']}"
        out += [f"### {variant_label(r)}", "",
                "Speed-up over the float32 layer (its time per forward pass over this one's; below 1x: slower), "
                f"minimum over {p['rounds']} interleaved rounds, {threads} torch thread{'s' if threads != 1 else ''}, "
                f"{where}. Ops/s: 2 x multiply-adds per second; weight bytes: float32 against the packed bits with "
                "one float scale per output channel:", "",
                pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
        out += _model_lines(t.get("models") or [], p)
    out += _paper_lines(baselines)
    return "\n".join(out)


def _model_lines(rows: list[dict], p: dict) -> list[str]:
    """The whole networks: speed-up over the float twin per measure, and the predictions in which
    the packed networks differ from the emulated one."""
    if not rows:
        return []
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        cells.setdefault((row["model"], row["measure"]), {})[row["candidate"]] = row
    table = []
    for (model, measure), by in cells.items():
        line = {"model": model, "measure": measure, "float (ms)": f"{by['float']['ms']:.1f}"}
        for k, column in (("emulated", "emulated binary"), ("packed", "packed binary"), ("exported", "exported")):
            row = by.get(k)
            line[column] = _speedup(row) if row is not None else ""
        differing = [f"{k} {by[k]['predictions_differing']}" for k in ("packed", "exported")
                     if by.get(k, {}).get("predictions_differing") is not None]
        line["predictions differing from emulated"] = ", ".join(differing)
        line["packed layers"] = by["packed"]["arithmetic"]
        line["data"] = by["float"]["data"]
        table.append(line)
    exported = next((r for r in rows if r["candidate"] == "exported" and r.get("weight_bytes")), None)
    note = (f" The exported network stores {exported['weight_bytes'] / 1e6:.2f} MB against the float twin's "
            f"{exported['float_bytes_over_this'] * exported['weight_bytes'] / 1e6:.2f} MB of parameters "
            f"({exported['float_bytes_over_this']:.1f}x fewer bytes, scales, thresholds and float layers included)."
            if exported else "")
    return ["Whole networks: speed-up over the float twin (the same network without quantizers; time per "
            f"training step or per pass over the test images over this one's), minimum over {p['model_rounds']} "
            f"interleaved rounds of {p['model_steps']} steps or one pass; the binary networks start from the same "
            "weights, and the inference pass uses them after the timed training steps." + note, "",
            pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]


def _paper_lines(baselines: pd.DataFrame | None) -> list[str]:
    if baselines is None:
        return []
    rows = baselines[baselines["metric"].isin(PAPER_ROWS)]
    if rows.empty:
        return []
    out = ["The papers' figures (context, not compared: an operation count or another machine):", ""]
    for _, b in rows.iterrows():
        what = b["method"] if isinstance(b["method"], str) and b["method"] else b["model"]
        note = f"; {b['note']}" if isinstance(b["note"], str) and b["note"] else ""
        out.append(f"- {b['paper']}, {b['table']}: {what}: {b['value']} {b['unit']} "
                   f"(confidence {b['confidence']}){note}.")
    return out + [""]


def plot(records: list[dict]):
    """Packed binary speed-up over float per layer and batch (log scale), with 1x marked: a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for r in records for row in r["tables"]["rows"] if row["candidate"].startswith("packed")]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame["cell"] = frame["layer"] + ", b=" + frame["batch"].astype(str)
    cells = list(dict.fromkeys(frame["cell"]))
    cands = list(dict.fromkeys(frame["candidate"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(cells) * len(cands) / 2), 4.5))
    width = 0.8 / len(cands)
    for i, c in enumerate(cands):
        sub = frame[frame["candidate"] == c].set_index("cell").reindex(cells)
        ax.bar([j + i * width for j in range(len(cells))], sub["float_over_this"], width, label=c)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(costs.XNOR_NET_SPEEDUP, color="grey", linestyle="--", linewidth=0.8,
               label=f"XNOR-Net's ~{costs.XNOR_NET_SPEEDUP}x (an operation count)")
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cells))])
    ax.set_xticklabels(cells, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("speed-up over float32 (x)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
