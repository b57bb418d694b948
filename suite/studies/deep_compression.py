"""Deep Compression (Han, Mao, Dally, "Deep Compression: Compressing Deep Neural Networks with
Pruning, Trained Quantization and Huffman Coding", ICLR 2016): the three-stage pipeline on one
network, with the error after each stage and the per-layer table of the paper's Tables 2-5.

1. Dense training, then iterative magnitude pruning (suite/compress/pruning.py): `prune_steps`
   times, every layer keeps keep_l^(t / T) of its weights, then `prune_epochs` of retraining
   with the masks kept (Han et al., NIPS 2015, "iterative pruning").
2. Weight sharing (suite/compress/weight_sharing.py): per layer, k-means (linear initialization)
   of the kept weights into 2^b - 1 shared values (code 0 = the zeros, as the authors' decoder),
   then `quant_epochs` of training the centroids, each with the summed gradient of its weights
   (the paper's equation 3); biases train too and stay float32.
3. Storage (suite/compress/huffman.py): each layer's codes written as the paper stores them,
   the relative sparse index (index_bits-bit differences, filler zeros) and the b-bit weight codes,
   fixed-width (P+Q) and Huffman-coded (P+Q+H), plus the 2^b float32 codebook. Every size is the
   length of bytes actually written; the Huffman streams are decoded back and checked.

Compression rates are the paper's: compressed bytes of a layer's weights over its dense float32
bytes (biases aside); the whole-model figure adds the float32 biases to both sides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from suite.compress import huffman
from suite.compress.pruning import Pruner, schedule
from suite.compress.weight_sharing import share_weights
from suite.errors import UserError
from suite.studies import trainloop

STAGES = ("dense", "pruned", "quantized", "final")
STAGE_LABELS = {"dense": "dense (reference)", "pruned": "pruned + retrained (P)",
                "quantized": "weight-shared, before centroid training",
                "final": "P + Q (centroids trained) + H (Huffman: lossless)"}


@dataclass(frozen=True)
class Params(trainloop.DataParams):
    model_args: dict = field(default_factory=lambda: {"hidden": [300, 100], "batchnorm": False,
                                                      "output_batchnorm": False})
    layer_names: list[str] = field(default_factory=lambda: ["ip1", "ip2", "ip3"])
    keep: list[float] = field(default_factory=lambda: [0.08, 0.09, 0.26])  # per layer, after pruning
    weight_bits: list[int] = field(default_factory=lambda: [6, 6, 6])
    index_bits: list[int] = field(default_factory=lambda: [5, 5, 5])
    batch_size: int = 64
    eval_batch_size: int = 1000
    lr: float = 0.01  # SGD, Caffe's "inv" decay per iteration within each stage
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_gamma: float = 1e-4
    lr_power: float = 0.75
    dense_epochs: int = 20
    prune_steps: int = 4
    prune_epochs: int = 4  # retraining after each pruning step
    prune_lr: float = 0.001
    quant_epochs: int = 4
    quant_lr: float = 0.001
    kmeans_init: str = "linear"


def check(p: Params, where: str) -> None:
    n = len(p.layer_names)
    for key in ("keep", "weight_bits", "index_bits"):
        if len(getattr(p, key)) != n:
            raise UserError(f"{where}.{key}: one value per layer of layer_names ({n}), got {getattr(p, key)}")
    if not all(0 < k <= 1 for k in p.keep):
        raise UserError(f"{where}.keep: fractions in (0, 1], got {p.keep}")
    if not all(1 <= b <= 15 for b in p.weight_bits + p.index_bits):
        raise UserError(f"{where}.weight_bits / index_bits: 1 to 15 bits, got {p.weight_bits} / {p.index_bits}")
    for key in ("batch_size", "eval_batch_size", "prune_steps", "lr", "prune_lr", "quant_lr"):
        if not getattr(p, key) > 0:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")
    for key in ("dense_epochs", "prune_epochs", "quant_epochs"):
        if getattr(p, key) < 0:
            raise UserError(f"{where}.{key}: must be >= 0, got {getattr(p, key)}")
    if p.kmeans_init not in ("linear", "density"):
        raise UserError(f"{where}.kmeans_init: 'linear' or 'density', got {p.kmeans_init!r}")
    _check_model(p, where)


def _check_model(p: Params, where: str) -> None:
    """The model builds (on the meta device) and has one Linear/Conv2d per name in layer_names."""
    from suite.data import NUM_CLASSES, in_shape
    from suite.models import MODELS, ModelSpec, build_model
    from suite.nn import QuantConfig

    if p.model not in MODELS:
        raise UserError(f"{where}.model: unknown model {p.model!r}; known: {', '.join(MODELS)}")
    if p.dataset not in NUM_CLASSES:
        raise UserError(f"{where}.dataset: unknown dataset {p.dataset!r}; known: {', '.join(NUM_CLASSES)}")
    shape = in_shape(p)  # Params carries the data spec's dataset and image_size
    with torch.device("meta"):
        model = build_model(ModelSpec(p.model, dict(p.model_args)), num_classes=NUM_CLASSES[p.dataset],
                            in_shape=shape, quant=QuantConfig())
    found = len(trainloop.weight_layers(model))
    if found != len(p.layer_names):
        raise UserError(f"{where}.layer_names: the model has {found} Linear/Conv2d layers, "
                        f"{len(p.layer_names)} names given")


def _sgd(params, lr: float, p: Params, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=p.momentum, weight_decay=weight_decay)


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = trainloop.study_data(p, device)
    model = trainloop.study_model(p, data, device)
    layers = trainloop.weight_layers(model)
    names = [n for n, _ in layers]
    decay = trainloop.inverse_decay(p.lr, p.lr_gamma, p.lr_power)
    stages, seconds = {}, {}

    def log(msg: str) -> None:
        if progress:
            print(f"{desc}: {msg}", flush=True)

    # 1. dense training, then iterative pruning with retraining
    out = trainloop.train(model, data, p.dense_epochs, _sgd(model.parameters(), p.lr, p, p.weight_decay),
                          p.batch_size, gen, decay)
    seconds["dense_seconds"] = out["seconds"]
    stages["dense"] = trainloop.errors(model, data, p.eval_batch_size)
    log(f"dense {stages['dense']}")
    pruner = Pruner.for_layers(model, names)
    after_prune = []
    seconds["prune_seconds"] = 0.0
    for step in range(1, p.prune_steps + 1):
        pruner.prune({n: schedule(k, step, p.prune_steps) for n, k in zip(names, p.keep, strict=True)})
        after_prune.append(trainloop.errors(model, data, p.eval_batch_size)["test_error"])
        opt = _sgd(model.parameters(), p.prune_lr, p, p.weight_decay)
        pruner.attach(opt)
        out = trainloop.train(model, data, p.prune_epochs, opt, p.batch_size, gen, decay)
        seconds["prune_seconds"] += out["seconds"]
        pruner.detach()
        log(f"prune step {step}: density {pruner.density()}, test error before retraining {after_prune[-1]:.2f}%")
    stages["pruned"] = trainloop.errors(model, data, p.eval_batch_size)
    # 2. weight sharing, then centroid (and bias) training
    shared = [share_weights(m, b, init=p.kmeans_init) for (_, m), b in zip(layers, p.weight_bits, strict=True)]
    stages["quantized"] = trainloop.errors(model, data, p.eval_batch_size)
    opt = _sgd(model.parameters(), p.quant_lr, p, 0.0)
    seconds["quant_seconds"] = trainloop.train(model, data, p.quant_epochs, opt, p.batch_size, gen, decay)["seconds"]
    stages["final"] = trainloop.errors(model, data, p.eval_batch_size)
    log(f"quantized {stages['quantized']} -> trained centroids {stages['final']}")
    # 3. storage, from the bytes written
    rows = []
    for label, s, (name, m), b, ib in zip(p.layer_names, shared, layers, p.weight_bits, p.index_bits, strict=True):
        codes = s.codes.long()
        st = huffman.layer_storage(codes, b, ib)
        index, wcodes = huffman.relative_index(codes, ib)
        if not np.array_equal(huffman.decode_relative_index(index, wcodes, codes.numel()),
                              codes.flatten().cpu().numpy()):
            raise AssertionError(f"{name}: the sparse stream does not decode to the layer's codes")
        bias = getattr(m, "bias", None)
        rows.append({"layer": label, "module": name, **st.as_dict(),
                     "bias_bytes": 4 * bias.numel() if bias is not None else 0,
                     "weight_entropy_bits": huffman.entropy_bits(wcodes),
                     "index_entropy_bits": huffman.entropy_bits(index),
                     "distinct_values_used": int(torch.unique(codes[codes != 0]).numel())})
    summary = _summary(rows, stages)
    return {"summary": {**summary, **seconds}, "tables": {"layers": rows, "stages": stages,
                                                          "prune_steps_test_error": after_prune}}


def _summary(rows: list[dict], stages: dict) -> dict:
    dense = sum(r["dense_bytes"] for r in rows)
    bias = sum(r["bias_bytes"] for r in rows)
    kept = sum(r["nonzero"] for r in rows)
    weights = sum(r["weights"] for r in rows)
    pq, pqh = sum(r["pq_bytes"] for r in rows), sum(r["pqh_bytes"] for r in rows)
    out = {f"{s}_test_error": stages[s]["test_error"] for s in STAGES}
    out.update(weights_kept_fraction=kept / weights, pruning_rate=weights / kept, pq_rate=dense / pq,
               pqh_rate=dense / pqh, pqh_bytes=pqh, dense_bytes=dense, model_dense_bytes=dense + bias,
               model_pqh_bytes=pqh + bias, model_pqh_rate=(dense + bias) / (pqh + bias),
               huffman_table_bytes=sum(r["huffman_table_bytes"] for r in rows))
    return out


# --- report -------------------------------------------------------------------------------------

LAYOUT = [  # (column, our value from a layer row, the paper's metric in the baselines file)
    ("#Weights", lambda r: _count(r["weights"]), "weights"),
    ("Weights% (P)", lambda r: f"{100 * r['nonzero'] / r['weights']:.1f}%", "weights_kept_pct"),
    ("Weight bits (P+Q)", lambda r: f"{r['weight_bits']}", "weight_bits_pq"),
    ("Weight bits (P+Q+H)", lambda r: f"{8 * r['huffman_weight_bytes'] / r['entries']:.2f}", "weight_bits_pqh"),
    ("Index bits (P+Q)", lambda r: f"{r['index_bits']}", "index_bits_pq"),
    ("Index bits (P+Q+H)", lambda r: f"{8 * r['huffman_index_bytes'] / r['entries']:.2f}", "index_bits_pqh"),
    ("Compress rate (P+Q)", lambda r: f"{100 * r['pq_bytes'] / r['dense_bytes']:.2f}%", "rate_pq_pct"),
    ("Compress rate (P+Q+H)", lambda r: f"{100 * r['pqh_bytes'] / r['dense_bytes']:.2f}%", "rate_pqh_pct"),
]


def _count(n: float) -> str:
    n = round(n)
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def _total_row(rows: list[dict]) -> dict:
    """The Total line: sums, and bits per stored entry over all layers."""
    total = {k: sum(r[k] for r in rows) for k in ("weights", "nonzero", "entries", "huffman_weight_bytes",
                                                   "huffman_index_bytes", "pq_bytes", "pqh_bytes", "dense_bytes",
                                                   "fixed_weight_bytes")}
    total["weight_bits"] = f"{8 * total.pop('fixed_weight_bytes') / total['entries']:.1f}"  # mean over entries
    bits = {r["index_bits"] for r in rows}
    total["index_bits"] = bits.pop() if len(bits) == 1 else "mixed"
    return total


def _paper(baselines: pd.DataFrame | None, prefix: str | None, key: str) -> str | None:
    if baselines is None or not prefix or f"{prefix}-{key}" not in baselines.index:
        return None
    row = baselines.loc[f"{prefix}-{key}"]
    return str(row["value"]) + ("%" if row["unit"] == "%" and "error" not in key else "")


def _mean_rows(records: list[dict]) -> list[dict]:
    """Per layer, the mean over seeds of every number (one seed: its row)."""
    first = records[0]["tables"]["layers"]
    out = []
    for i, row in enumerate(first):
        merged = dict(row)
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                merged[k] = statistics.fmean(r["tables"]["layers"][i][k] for r in records)
        out.append(merged)
    return out


def render_variant(label: str, prefix: str | None, records: list[dict], baselines: pd.DataFrame | None) -> list[str]:
    n = len(records)
    seeds = f"mean ± std over {n} seeds" if n > 1 else "one seed"

    def stat(key: str, fmt: str = "{:.2f}") -> str:
        vals = [r["summary"][key] for r in records]
        mean = statistics.fmean(vals)
        return fmt.format(mean) + (f" ± {fmt.format(statistics.stdev(vals))}" if n > 1 else "")

    s = records[0]["summary"]
    # the paper's error: test error (MNIST) or top-1 error (ImageNet)
    paper_err = {stage: _paper(baselines, prefix, f"{key}-test_error") or _paper(baselines, prefix, f"{key}-top1_error")
                 for stage, key in (("dense", "ref"), ("final", "compressed"))}
    paper_rate = {"pruned": _paper(baselines, prefix, "total-pruning_rate"),
                  "final": _paper(baselines, prefix, "compress_rate")}
    rows = []
    for stage in STAGES:
        rate = {"dense": "1×", "pruned": f"{stat('pruning_rate', '{:.1f}')}× (weights kept)",
                "quantized": f"{stat('pq_rate', '{:.1f}')}× (P+Q)",
                "final": f"{stat('pqh_rate', '{:.1f}')}× (P+Q+H)"}[stage]
        rows.append({"stage": STAGE_LABELS[stage], "test error (%)": stat(f"{stage}_test_error"),
                     "paper (%)": paper_err.get(stage) or "", "weights' compression": rate,
                     "paper": (paper_rate.get(stage) or "") + ("×" if paper_rate.get(stage) else "")})
    out = [f"### {label}", "", f"Test error after each stage ({seeds}); compression of the layers' weights "
           "(dense float32 bytes over stored bytes; biases aside, as the paper's per-layer tables):", "",
           pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    layer_rows = _mean_rows(records)
    table = []
    for r in layer_rows + [_total_row(layer_rows)]:
        name = r.get("layer", "Total")
        key = name if name != "Total" else "total"
        cells = {"Layer": name}
        for column, ours, metric in LAYOUT:
            value = ours(r)
            paper = _paper(baselines, prefix, f"{key}-{metric}")
            cells[column] = value + (f" / {paper}" if paper is not None else "")
        table.append(cells)
    whole = f"{stat('model_pqh_rate', '{:.1f}')}×"
    out += [f"Per layer, in the paper's layout (cells: ours{' / the paper' if prefix else ''}; ours "
            f"{'averaged over seeds' if n > 1 else 'from one seed'}). Bits per stored entry (filler entries "
            "included); rates are compressed over dense bytes of the weights:", "",
            pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), "",
            f"Whole model with the float32 biases: {s['model_dense_bytes'] / 1024:.0f} KiB dense → "
            f"{s['model_pqh_bytes'] / 1024:.1f} KiB, {whole} (P+Q+H). Huffman code tables (one code length per "
            f"symbol, not in the rates above, nor in the paper's): {s['huffman_table_bytes']} bytes. "
            f"Filler entries: {sum(r['entries'] - r['nonzero'] for r in layer_rows):.0f}. Test error just after "
            f"each pruning step, before retraining (seed {records[0]['seed']}): "
            + ", ".join(f"{e:.2f}%" for e in records[0]['tables']['prune_steps_test_error']) + ".", ""]
    return out


def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    resolved = records[-1]["spec"]["resolved"]
    variants = {v["name"]: v for v in resolved["variants"]}
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    out = []
    for name, recs in by_variant.items():
        v = variants.get(name, {})
        out += render_variant(v.get("label") or name, v.get("baseline"), recs, baselines)
    if baselines is not None:
        prefixes = {v.get("baseline") for v in variants.values() if v.get("baseline")}
        sources = sorted({f"{b['paper']}, {b['table']} (source: {b['source']}; confidence {b['confidence']})"
                          for bid, b in baselines.iterrows() if any(bid.startswith(f"{x}-") for x in prefixes)})
        if sources:
            out += ["Paper numbers from:", ""] + [f"- {s}" for s in sources] + [""]
    return "\n".join(out)
