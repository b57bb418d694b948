"""One run's training: the Trainer (model, optimizer, schedule, method; one epoch at a time,
the training part timed and its peak memory measured apart from evaluation), the epoch loop with
divergence detection, and the summary a record keeps (model selection as the papers' code does).
"""

from __future__ import annotations

import gc
import math
import random
import statistics

import numpy as np
import torch
from tqdm.auto import tqdm

from suite import tensor_memory
from suite.data import Splits, batch_indices
from suite.models import build_model
from suite.nn import latent_clip_targets, weight_memory
from suite.nn.packed import arithmetic_summary
from suite.nn.storage import run_storage
from suite.run import distributed
from suite.run.checkpoint import restore_rng_states, rng_states
from suite.run.measure import PeakMemory, Stopwatch
from suite.run.plan import Run
from suite.tensor_memory import TensorMemory
from suite.train import METHODS
from suite.train.backprop import count_wrong
from suite.train.losses import LOSSES
from suite.train.optim import make_optimizer, make_scheduler


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return the generator that orders the training batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Trainer:
    """One run's training state, and one epoch at a time: train (timed, peak memory), evaluate
    (timed separately), return the epoch's measurements."""

    def __init__(self, run: Run, data: Splits, device: torch.device):
        # The variant's training settings: train.* with its own overrides (method, LR, directions, ...).
        spec, self.train_spec = run.spec, run.spec.train_for(run.variant)
        self.data, self.device = data, device
        self.generator = seed_everything(run.seed)
        tensor_memory.install()  # before the model exists: every tensor of the run is counted
        gc.collect()  # what earlier runs in this process left is freed before this one is measured
        self.model = build_model(spec.model_for(run.variant), num_classes=data.num_classes, in_shape=data.in_shape,
                                 quant=run.variant.quant_config()).to(device)
        distributed.check_batch_size(self.train_spec.batch_size, spec.path)
        if self.train_spec.sync_batchnorm:
            self.model = distributed.sync_batchnorm(self.model, device, spec.path)
        self.optimizer = make_optimizer(self.train_spec, self.model)
        # tensor memory: the data splits are held throughout and are not training state
        self.tensors = TensorMemory(device, exclude=[data.train_x, data.train_y, data.val_x, data.val_y, data.test_x,
                                                     data.test_y], model=self.model)
        self.optimizer.register_step_post_hook(lambda *_: self.tensors.step())  # O(1), no device sync
        self.scheduler = make_scheduler(self.train_spec, self.optimizer)
        self.loss_fn = LOSSES[self.train_spec.loss]
        self.clip_targets = latent_clip_targets(self.model)
        # Under torchrun: backprop trains the model through DDP; self.model stays the plain module.
        method, trained, self.exchange = distributed.for_ranks(METHODS[self.train_spec.method], self.model, device,
                                                               self.train_spec.gradient_compression)
        self.method = method(trained, self.optimizer, self.loss_fn, self.train_spec, self.clip_targets)
        self.peak = PeakMemory(device)

    def model_summary(self) -> dict:
        mem = weight_memory(self.model)
        return {"parameters": sum(r["count"] for r in mem["layers"] if not r.get("derived")),  # latent codes too
                "weight_memory_bytes": mem["total_bytes"], "float32_weight_bytes": mem["float32_bytes"],
                "weight_memory_saving": mem["saving"], "quantized_weight_saving": mem["quantized_saving"]}

    def arithmetic(self) -> dict:
        """Which arithmetic the quantized layers ran in their last forward pass (for the record):
        "packed" if any ran on the bit-packed kernels, else "emulated"; and the count per kind."""
        layers = arithmetic_summary(self.model)
        return {"arithmetic": "packed" if any(k.startswith("packed") for k in layers) else "emulated",
                "arithmetic_layers": layers}

    def train_one_epoch(self) -> tuple[torch.Tensor, float, dict, int]:
        """Mean loss (a device tensor: no sync here), training seconds, peak memory, samples."""
        t = self.train_spec
        batches = batch_indices(len(self.data.train_x), t.batch_size, self.generator,
                                self.data.index_device(self.device))  # the host for images gathered there
        batches = distributed.shard_batches(batches)  # this rank's slice of each global batch
        self.peak.reset()
        self.tensors.reset()
        with Stopwatch(self.device) as clock:
            loss = self.method.epoch(self.data.train_x, self.data.train_y, batches)
        return loss, clock.seconds, {**self.peak.read(), **self.tensors.read()}, len(batches) * t.batch_size

    def evaluate(self) -> tuple[float | None, float, float | None, float]:
        """Validation error, test error, test top-5 error (None unless the data set reports it), seconds."""
        d, bs = self.data, self.train_spec.eval_batch_size
        k = 2 if d.top5 else 1  # misses counted per set: top-1 (and top-5)
        with Stopwatch(self.device) as clock:
            # Distributed: each rank a part of each set, all on rank 0's BatchNorm statistics.
            distributed.broadcast_module(self.model, params=False)
            val, test = distributed.shard(len(d.val_x)), distributed.shard(len(d.test_x))
            wrong = torch.cat([count_wrong(self.model, d.val_x[val], d.val_y[val], bs, d.top5).view(k),
                               count_wrong(self.model, d.test_x[test], d.test_y[test], bs, d.top5).view(k)])
            counts = distributed.sum_over_ranks(wrong).tolist()
        val_error = 100.0 * counts[0] / len(d.val_x) if len(d.val_x) else None
        test_top5 = 100.0 * counts[k + 1] / max(len(d.test_x), 1) if d.top5 else None
        return val_error, 100.0 * counts[k] / max(len(d.test_x), 1), test_top5, clock.seconds

    def state_dict(self) -> dict:
        """Everything the next epoch depends on: weights, optimizer, schedule, method, RNGs, and
        each rank's gradient-exchange state (a collective under torchrun: every rank calls it)."""
        exchange = distributed.gather_to_main(self.exchange.state_dict()) if self.exchange is not None else None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "method": self.method.state_dict(), "rng": rng_states(self.generator), "exchange": exchange}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        restore_rng_states(state["rng"], self.generator)
        if self.exchange is not None and state.get("exchange"):
            self.exchange.load_state_dict(state["exchange"][distributed.rank()])

    def epoch(self, number: int) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        loss, train_seconds, memory, samples = self.train_one_epoch()
        val_error, test_error, test_top5, eval_seconds = self.evaluate()
        if self.scheduler is not None:
            self.scheduler.step()
        # Distributed: the loss averaged over the ranks; time and memory of the slowest / largest rank.
        loss = distributed.mean_over_ranks(loss)
        worst = distributed.max_over_ranks({"train_seconds": train_seconds, "eval_seconds": eval_seconds, **memory})
        out = {"epoch": number, "lr": lr, "train_loss": loss.item(), "val_error": val_error,
               "test_error": test_error, "test_error_top5": test_top5, **worst,
               "samples_per_second": samples / worst["train_seconds"]}
        if self.exchange is not None:  # bytes each rank sent per step (counted from the tensors sent)
            out["bytes_sent_per_step"] = self.exchange.bytes_per_step
        return out


def train_epochs(trainer: Trainer, run: Run, record: dict, progress: bool, save_progress) -> None:
    """Epochs from the first one not in the record to the last; checkpoint after each but the last."""
    epochs = run.spec.train.epochs
    max_loss = run.spec.train.max_loss
    first = len(record["epochs"]) + 1
    bar = tqdm(range(first, epochs + 1), desc=f"{run.spec.name}/{run.variant.name}/s{run.seed}",
               unit="epoch", disable=not progress, leave=False, initial=first - 1, total=epochs)
    for number in bar:
        e = trainer.epoch(number)
        record["epochs"].append(e)
        val = e["val_error"] if e["val_error"] is not None else float("nan")
        bar.set_postfix(loss=f"{e['train_loss']:.4f}", val=f"{val:.2f}%", test=f"{e['test_error']:.2f}%")
        loss = e["train_loss"]
        if not math.isfinite(loss) or (max_loss is not None and loss > max_loss):
            record["status"] = "diverged"
            why = "not finite" if not math.isfinite(loss) else f"above train.max_loss = {max_loss}"
            record["error"] = f"training loss {loss} ({why}) at epoch {number}"
            record["diverged_at_epoch"] = number
            break
        record["summary"] = summarize(record["epochs"])
        if number < epochs:
            save_progress()
    else:
        record["status"] = "completed"
    # + the bytes the weights and the optimizer state occupy after training (measured, not computed)
    record["summary"] = {**summarize(record["epochs"]), **run_storage(trainer.model, trainer.optimizer)}
    if trainer.exchange is not None:
        record["communication"] = trainer.exchange.summary()


def best_validation_epoch(epochs: list[dict]) -> dict:
    """The epoch of best validation error, the LAST of tied ones: BinaryConnect's and BinaryNet's
    trainers keep an epoch when ``val_err <= best_val_err`` (MatthieuCourbariaux/BinaryConnect
    binary_connect.py, BinaryNet Train-time/binary_net.py); the last epoch without a validation split."""
    best = None
    for e in epochs:
        if e["val_error"] is not None and (best is None or e["val_error"] <= best["val_error"]):
            best = e
    return best if best is not None else epochs[-1]


def summarize(epochs: list[dict]) -> dict:
    """Model selection as in the papers' code: the test error at the epoch of best validation
    error (the last of tied epochs; the last epoch when there is no validation split); medians for time."""
    if not epochs:
        return {"epochs_run": 0}
    best = best_validation_epoch(epochs)
    cuda = [e["peak_cuda_mb"] for e in epochs if e["peak_cuda_mb"] is not None]
    tensor = {k: [e.get(k) for e in epochs] for k in ("peak_tensor_mb", "step_tensor_mb")}
    return {
        "epochs_run": len(epochs),
        "best_epoch": best["epoch"],
        "best_val_error": best["val_error"],
        "test_error_at_best_val": best["test_error"],
        "test_error_top5_at_best_val": best.get("test_error_top5"),  # None where the dataset has no top-5
        "final_test_error": epochs[-1]["test_error"],
        "min_test_error": min(e["test_error"] for e in epochs),  # selected on the test set: DoReFa's protocol only
        "median_epoch_seconds": statistics.median(e["train_seconds"] for e in epochs),
        "median_samples_per_second": statistics.median(e["samples_per_second"] for e in epochs),
        "peak_rss_mb": max(e["peak_rss_mb"] for e in epochs),
        "peak_cuda_mb": max(cuda) if cuda else None,
        # tensor memory: the largest over the epochs, or None where an epoch could not count it
        **{k: (max(v) if v and None not in v else None) for k, v in tensor.items()},
        **({"bytes_sent_per_step": epochs[-1]["bytes_sent_per_step"]} if "bytes_sent_per_step" in epochs[-1] else {}),
    }
