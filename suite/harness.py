"""The harness: a Spec -> planned runs (variant x seed) -> trained, measured, recorded.

One run: seed everything, build the variant's model, train for the spec's epochs with the
training part and the evaluation timed separately, measure each epoch's peak memory, pick the
test error at the best validation epoch, and write one record.
"""

from __future__ import annotations

import math
import random
import statistics
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from suite.data import Splits, batch_indices
from suite.measure import PeakMemory, Stopwatch, provenance
from suite.models import build_model
from suite.nn import QuantConfig, latent_clip_targets, weight_memory
from suite.records import SCHEMA, new_run_id, now_utc, record_path, write_record
from suite.spec import Spec, VariantSpec, config_hash
from suite.train.backprop import error_percent, train_epoch
from suite.train.losses import LOSSES
from suite.train.optim import make_optimizer, make_scheduler


@dataclass(frozen=True)
class Run:
    spec: Spec
    variant: VariantSpec
    seed: int


def plan(spec: Spec, variants: list[str] | None = None, seeds: list[int] | None = None) -> list[Run]:
    """Variant-major list of runs; `variants` and `seeds` narrow or replace the spec's own."""
    chosen = [spec.variant(v) for v in variants] if variants else list(spec.variants)
    return [Run(spec, v, s) for v in chosen for s in (seeds or spec.train.seeds)]


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return the generator that orders the training batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def quant_config(variant: VariantSpec) -> QuantConfig:
    return QuantConfig(weight_quantizer=variant.weight_quantizer, clip_weights=variant.clip_weights,
                       lr_scale=variant.lr_scale, weight_init_range=variant.weight_init_range)


def run_config_hash(spec: Spec, variant: VariantSpec, data_info: dict) -> str:
    """Records with equal hashes ran the same configuration (seed aside) on the same data."""
    resolved = spec.resolved()
    resolved.pop("overrides")
    resolved["train"].pop("seeds")
    resolved["variants"] = [v for v in resolved["variants"] if v["name"] == variant.name]
    resolved["data_used"] = {k: data_info.get(k) for k in ("source", "n_train", "n_val", "n_test")}
    return config_hash(resolved)


def execute(run: Run, data: Splits, device: torch.device, results_dir: Path,
            progress: bool = True) -> Path:
    """Train and measure one run; write its record (also when it fails) and return its path."""
    spec, variant = run.spec, run.variant
    run_id = new_run_id()
    record = {
        "schema": SCHEMA, "run_id": run_id, "status": "failed", "started": now_utc(), "finished": None,
        "spec": {"name": spec.name, "path": spec.path, "profile": spec.profile,
                 "scaled_down": spec.scaled_down, "config_hash": run_config_hash(spec, variant, data.info),
                 "resolved": spec.resolved()},
        "variant": variant.name, "seed": run.seed, "data": data.info, "model": {}, "epochs": [],
        "summary": {}, "provenance": provenance(device),
    }
    path = record_path(results_dir, spec.name, spec.profile, variant.name, run.seed, run_id)
    try:
        _train(run, data, device, record, progress)
    except Exception as e:  # recorded, then raised again: a failed run is a finding too
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
        record["finished"] = now_utc()
        write_record(path, record)
        raise
    record["finished"] = now_utc()
    write_record(path, record)
    return path


class Trainer:
    """One run's training state, and one epoch at a time: train (timed, peak memory), evaluate
    (timed separately), return the epoch's measurements."""

    def __init__(self, run: Run, data: Splits, device: torch.device):
        spec, self.train_spec = run.spec, run.spec.train
        self.data, self.device = data, device
        self.generator = seed_everything(run.seed)
        self.model = build_model(spec.model, num_classes=data.num_classes, in_shape=data.in_shape,
                                 quant=quant_config(run.variant)).to(device)
        self.optimizer = make_optimizer(self.train_spec, self.model)
        self.scheduler = make_scheduler(self.train_spec, self.optimizer)
        self.loss_fn = LOSSES[self.train_spec.loss]
        self.clip_targets = latent_clip_targets(self.model)
        self.peak = PeakMemory(device)

    def model_summary(self) -> dict:
        mem = weight_memory(self.model)
        return {"parameters": sum(p.numel() for p in self.model.parameters()),
                "weight_memory_bytes": mem["total_bytes"], "float32_weight_bytes": mem["float32_bytes"],
                "weight_memory_saving": mem["saving"], "quantized_weight_saving": mem["quantized_saving"]}

    def train_one_epoch(self) -> tuple[torch.Tensor, float, dict, int]:
        """Mean loss (a device tensor: no sync here), training seconds, peak memory, samples."""
        t = self.train_spec
        batches = batch_indices(len(self.data.train_x), t.batch_size, self.generator, self.device)
        self.peak.reset()
        with Stopwatch(self.device) as clock:
            loss = train_epoch(self.model, self.optimizer, self.loss_fn, self.data.train_x,
                               self.data.train_y, batches, self.clip_targets)
        return loss, clock.seconds, self.peak.read(), len(batches) * t.batch_size

    def evaluate(self) -> tuple[float | None, float, float]:
        d, bs = self.data, self.train_spec.eval_batch_size
        with Stopwatch(self.device) as clock:
            val_error = error_percent(self.model, d.val_x, d.val_y, bs) if len(d.val_x) else None
            test_error = error_percent(self.model, d.test_x, d.test_y, bs)
        return val_error, test_error, clock.seconds

    def epoch(self, number: int) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        loss, train_seconds, memory, samples = self.train_one_epoch()
        val_error, test_error, eval_seconds = self.evaluate()
        if self.scheduler is not None:
            self.scheduler.step()
        return {"epoch": number, "lr": lr, "train_loss": loss.item(), "val_error": val_error,
                "test_error": test_error, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
                "samples_per_second": samples / train_seconds, **memory}


def _train(run: Run, data: Splits, device: torch.device, record: dict, progress: bool) -> None:
    trainer = Trainer(run, data, device)
    record["model"] = trainer.model_summary()
    record["memory_method"] = trainer.peak.cpu_method
    bar = tqdm(range(1, run.spec.train.epochs + 1), desc=f"{run.spec.name}/{run.variant.name}/s{run.seed}",
               unit="epoch", disable=not progress, leave=False)
    for number in bar:
        e = trainer.epoch(number)
        record["epochs"].append(e)
        val = e["val_error"] if e["val_error"] is not None else float("nan")
        bar.set_postfix(loss=f"{e['train_loss']:.4f}", val=f"{val:.2f}%", test=f"{e['test_error']:.2f}%")
        if not math.isfinite(e["train_loss"]):
            record["status"] = "diverged"
            record["error"] = f"training loss {e['train_loss']} at epoch {number}"
            break
    else:
        record["status"] = "completed"
    record["summary"] = summarize(record["epochs"])


def summarize(epochs: list[dict]) -> dict:
    """Model selection as in the papers' code: the test error at the epoch of best validation
    error (the last epoch when there is no validation split); medians for time."""
    if not epochs:
        return {"epochs_run": 0}
    with_val = [e for e in epochs if e["val_error"] is not None]
    best = min(with_val, key=lambda e: e["val_error"]) if with_val else epochs[-1]
    cuda = [e["peak_cuda_mb"] for e in epochs if e["peak_cuda_mb"] is not None]
    return {
        "epochs_run": len(epochs),
        "best_epoch": best["epoch"],
        "best_val_error": best["val_error"],
        "test_error_at_best_val": best["test_error"],
        "final_test_error": epochs[-1]["test_error"],
        "median_epoch_seconds": statistics.median(e["train_seconds"] for e in epochs),
        "median_samples_per_second": statistics.median(e["samples_per_second"] for e in epochs),
        "peak_rss_mb": max(e["peak_rss_mb"] for e in epochs),
        "peak_cuda_mb": max(cuda) if cuda else None,
    }
