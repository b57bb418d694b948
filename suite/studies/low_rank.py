"""Low-rank approximation of a trained network by truncated SVD, with and without fine-tuning
(the deck's "Low rank Approximation": A_k = U_k S_k V_k^T; Denton et al. 2014 and Xue et al. 2013
fine-tune after approximating, as the deck's sources do).

One dense network is trained; then for each rank k every Linear layer whose rank-k factors hold
fewer weights than it (k (m + n) < m n) is replaced by its truncated SVD (suite/compress/lowrank.py:
two Linear layers), the test error is measured as it is, and again after `finetune_epochs` of
training the factorized network (a copy per rank: the sweep's points are independent). The
forward time of every network is measured at each batch size, all networks interleaved in one
process with the order rotating every round (suite/timing.py), as a ratio to the dense network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn as nn

from suite.compress.lowrank import factorize, max_useful_rank, relative_error
from suite.errors import UserError
from suite.studies import trainloop
from suite.studies.labels import variant_label
from suite.timing import per_call_samples, torch_threads


@dataclass(frozen=True)
class Params(trainloop.DataParams):
    model_args: dict = field(default_factory=lambda: {"hidden": [1024, 1024], "batchnorm": False,
                                                      "output_batchnorm": False})
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 1000
    lr: float = 0.01  # SGD with momentum, Caffe's "inv" decay per iteration
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_gamma: float = 1e-4
    lr_power: float = 0.75
    ranks: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    finetune_epochs: int = 2
    finetune_lr: float = 0.001
    time_batches: list[int] = field(default_factory=lambda: [1, 100])
    rounds: int = 9
    sample_seconds: float = 0.02
    threads: int = 0  # torch threads while timing (0: leave the process's setting)


def check(p: Params, where: str) -> None:
    if not p.ranks or min(p.ranks) < 1:
        raise UserError(f"{where}.ranks: positive ranks, got {p.ranks}")
    for key in ("epochs", "batch_size", "eval_batch_size", "rounds"):
        if getattr(p, key) < 1:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")
    if p.finetune_epochs < 0 or not p.lr > 0 or not p.finetune_lr > 0 or not p.sample_seconds > 0 or p.threads < 0:
        raise UserError(f"{where}: finetune_epochs >= 0, lr, finetune_lr and sample_seconds > 0, threads >= 0")
    if not p.time_batches or min(p.time_batches) < 1:
        raise UserError(f"{where}.time_batches: positive batch sizes, got {p.time_batches}")


def factorized(model: nn.Module, rank: int) -> tuple[nn.Module, list[dict]]:
    """A copy of `model` with every Linear layer that rank-k factors make smaller replaced by them;
    and, per layer, its shape, whether it was factorized and the relative Frobenius error."""
    out = copy.deepcopy(model)
    layers = []
    for name, m in list(out.named_modules()):
        if not isinstance(m, nn.Linear):
            continue
        rows, cols = m.weight.shape
        info = {"layer": name, "shape": [rows, cols], "factorized": rank <= max_useful_rank(rows, cols)}
        if info["factorized"]:
            info["relative_error"] = relative_error(m.weight, rank)
            parent_name, _, child = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, child, factorize(m, rank))
        layers.append(info)
    return out, layers


def weight_count(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = trainloop.study_data(p, device)
    model = trainloop.study_model(p, data, device)
    decay = trainloop.inverse_decay(p.lr, p.lr_gamma, p.lr_power)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    dense_seconds = trainloop.train(model, data, p.epochs, opt, p.batch_size, gen, decay)["seconds"]
    dense_error = trainloop.errors(model, data, p.eval_batch_size)["test_error"]
    rows, nets = [], {"dense": model}
    for k in p.ranks:
        net, layers = factorized(model, k)
        before = trainloop.errors(net, data, p.eval_batch_size)["test_error"]
        tuned = copy.deepcopy(net)
        if p.finetune_epochs:
            opt = torch.optim.SGD(tuned.parameters(), lr=p.finetune_lr, momentum=p.momentum,
                                  weight_decay=p.weight_decay)
            trainloop.train(tuned, data, p.finetune_epochs, opt, p.batch_size, gen, decay)
        after = trainloop.errors(tuned, data, p.eval_batch_size)["test_error"]
        rows.append({"rank": k, "weights": weight_count(net), "layers": layers, "test_error": before,
                     "finetuned_test_error": after})
        nets[f"rank{k}"] = tuned
        if progress:
            print(f"{desc}: rank {k}: {before:.2f}% -> fine-tuned {after:.2f}%", flush=True)
    timing = _time(nets, data, p)
    for row in rows:
        for b in p.time_batches:
            row[f"over_dense_b{b}"] = min(timing[f"rank{row['rank']}_b{b}"]) / min(timing[f"dense_b{b}"])
    summary = {"dense_test_error": dense_error, "dense_weights": weight_count(model), "dense_seconds": dense_seconds,
               **{f"rank{r['rank']}_test_error": r["test_error"] for r in rows},
               **{f"rank{r['rank']}_finetuned_test_error": r["finetuned_test_error"] for r in rows}}
    return {"summary": summary, "tables": {"ranks": rows, "timing_seconds": timing,
                                           "threads": p.threads or torch.get_num_threads()}}


def _time(nets: dict[str, nn.Module], data, p: Params) -> dict[str, list[float]]:
    fns = {}
    for b in p.time_batches:
        x = data.test_x[:b] if len(data.test_x) >= b else data.test_x[torch.arange(b) % len(data.test_x)]
        for name, net in nets.items():
            net.eval()

            def forward(net=net, x=x):
                with torch.inference_mode():
                    return net(x)
            fns[f"{name}_b{b}"] = forward
    with torch_threads(p.threads):
        return per_call_samples(fns, p.rounds, p.sample_seconds)


# --- report -------------------------------------------------------------------------------------

def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    out = []
    for r in records:
        s, rows, params = r["summary"], r["tables"]["ranks"], r["params"]
        batches = params["time_batches"]
        timing = r["tables"]["timing_seconds"]
        table = [{"network": "dense", "weights": f"{s['dense_weights']:,}", "× fewer": "1.0",
                  "‖W−W_k‖/‖W‖ (per factorized layer)": "", "test error (%)": f"{s['dense_test_error']:.2f}",
                  f"after {params['finetune_epochs']} fine-tuning epochs (%)": "",
                  **{f"time b={b} (ms), × dense": _time_cell(timing[f"dense_b{b}"], 1.0) for b in batches}}]
        for row in rows:
            k = row["rank"]
            errs = ", ".join(f"{x['relative_error']:.2f}" for x in row["layers"] if x["factorized"])
            errs = errs or "none factorized"
            table.append({
                "network": f"rank {k}", "weights": f"{row['weights']:,}",
                "× fewer": f"{s['dense_weights'] / row['weights']:.1f}", "‖W−W_k‖/‖W‖ (per factorized layer)": errs,
                "test error (%)": f"{row['test_error']:.2f}",
                f"after {params['finetune_epochs']} fine-tuning epochs (%)": f"{row['finetuned_test_error']:.2f}",
                **{f"time b={b} (ms), × dense": _time_cell(timing[f"rank{k}_b{b}"], row[f"over_dense_b{b}"])
                   for b in batches}})
        shape = " → ".join(str(x["shape"][1]) for x in rows[0]["layers"]) + f" → {rows[0]['layers'][-1]['shape'][0]}"
        threads = r["tables"].get("threads")
        out += [f"### {variant_label(r)} (seed {r['seed']}): MLP {shape}, {params['dataset']}", "",
                f"Every Linear layer that rank-k factors make smaller is replaced by U_k S_k^1/2 and S_k^1/2 V_k^T; "
                f"forward time of the whole network (no autograd), minimum over {params['rounds']} interleaved "
                f"samples, {threads} torch thread{'s' if threads != 1 else ''}, and its ratio to the dense network's:",
                "", pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(out)


def _time_cell(samples: list[float], ratio: float) -> str:
    return f"{1e3 * min(samples):.3f}, {ratio:.2f}"


def plot(records: list[dict]):
    """Test error against weights, with and without fine-tuning (one line each per seed): a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in records:
        rows = r["tables"]["ranks"]
        w = [row["weights"] for row in rows]
        ax.plot(w, [row["test_error"] for row in rows], "o-", label=f"truncated SVD (seed {r['seed']})")
        ax.plot(w, [row["finetuned_test_error"] for row in rows], "s--", label=f"+ fine-tuning (seed {r['seed']})")
        ax.axhline(r["summary"]["dense_test_error"], color="grey", linestyle=":", label="dense")
        ax.axvline(r["summary"]["dense_weights"], color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weights")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
