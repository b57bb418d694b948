"""Data-parallel training under torchrun: detect the launch, join the process group, and the few
collectives the harness needs. Without torchrun every helper is a no-op for a world of one, so the
harness has a single code path.

Launch: ``torchrun --nproc_per_node=N -m suite run SPEC ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT (`launched`). One process per device: cuda:LOCAL_RANK with the nccl backend on
GPUs, the CPU with gloo otherwise.

The choices, and why:

- Data: every rank holds the whole in-memory dataset and draws the same permutation (same seed);
  rank r trains on the r-th 1/W slice of each global batch (`shard_batches`): DistributedSampler's
  effect without a sampler, and the global batch stays ``train.batch_size``.
- Seeds: every rank is seeded identically. Weights start equal (DDP also broadcasts rank 0's),
  and a stochastic quantizer draws the same noise on every rank, so a step binarizes the weights
  once for the whole global batch, exactly as one process does. DDP averages the gradients and
  latent-weight clipping is deterministic, so the weights stay equal; the record states the
  largest difference across ranks at the end (`max_weight_difference`). Dropout masks repeat at
  the same position of each rank's shard (still independent of the samples).
- BatchNorm: per-rank statistics in training (DDP keeps rank 0's running statistics), or synced
  over the global batch with ``train.sync_batchnorm`` (torch's SyncBatchNorm: GPUs only).
- Evaluation: sharded over the ranks, on rank 0's BatchNorm statistics; wrong counts are summed.
- Forward gradient: supported. Every rank draws the same directions (same seed), so averaging the
  per-rank estimates (`DistributedForwardGradient`) gives the single-process estimate of the
  global batch; the all-reduce moves one parameter-sized vector per step, as DDP does.
- Failure: ``SUITE_DIST_TIMEOUT_MINUTES`` (default 30) bounds the process group's set-up and every
  collective, so a hung rank stops the run; a dead rank is noticed at once (its connections close)
  and torchrun stops the others. Rank 0 checkpoints every epoch and no rank starts the next epoch
  before that checkpoint is written, so a rerun continues from it.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from suite import settings
from suite.errors import UserError
from suite.run.measure import pick_device
from suite.train import gradient_compression
from suite.train.forward_gradient import ForwardGradient

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


def launched() -> bool:
    """Whether torchrun (or any launcher setting its environment) started this process."""
    return all(k in os.environ for k in TORCHRUN_ENV)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes records, checkpoints and tables."""
    return rank() == 0


def describe() -> dict:
    """The record's ``distributed`` field."""
    return {"world_size": world(), "backend": dist.get_backend() if active() else None}


def timeout() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.dist_timeout_minutes())


def setup(device_name: str = "auto") -> torch.device:
    """The device to run on; under torchrun this rank's device, with the process group joined."""
    device = pick_device(device_name)
    if not launched():
        return device
    if device.type == "cuda":
        if device.index is not None and int(os.environ["WORLD_SIZE"]) > 1:
            raise UserError(f"--device {device_name}: under torchrun each rank uses cuda:LOCAL_RANK; "
                            "pass --device cuda (or auto)")
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout(),
                                device_id=device if device.type == "cuda" else None)
    return device


def cleanup() -> None:
    """Leave together: a barrier first, so no rank tears gloo down while another still talks to it
    (a rank leaving early made its peer abort with "terminate called without an active exception")."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (picklable objects)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _collective_device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo CPU tensors.
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if not active():
        return value
    out = value.detach().to(_collective_device(), copy=True)
    dist.all_reduce(out)
    return out.div_(world())


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    if not active():
        return value
    out = value.detach().to(_collective_device(), copy=True)
    dist.all_reduce(out)
    return out


def max_over_ranks(values: dict[str, float | None]) -> dict[str, float | None]:
    """Each number's maximum over the ranks (times, peak memory: a straggler shows), one collective."""
    if not active():
        return values
    keys = list(values)
    t = torch.tensor([-float("inf") if values[k] is None else values[k] for k in keys], dtype=torch.float64,
                     device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return {k: (None if values[k] is None else v) for k, v in zip(keys, t.tolist(), strict=True)}


def check_batch_size(batch_size: int, where: str) -> None:
    if batch_size % world():
        raise UserError(f"{where}: train.batch_size = {batch_size}: not divisible by the {world()} ranks of this "
                        "torchrun launch; the global batch is split evenly over the ranks")


def shard_batches(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """This rank's slice of each global batch (views; all ranks hold the same permutation)."""
    if not active():
        return batches
    w, r = world(), rank()
    return [b.view(w, -1)[r] for b in batches]


def shard(n: int) -> slice:
    """This rank's contiguous part of n samples (evaluation)."""
    w, r = world(), rank()
    return slice(r * n // w, (r + 1) * n // w)


def broadcast_module(module: nn.Module, params: bool = True, buffers: bool = True) -> None:
    """Rank 0's parameters and/or buffers (e.g. BatchNorm running statistics) on every rank."""
    if not active():
        return
    tensors = [*(module.parameters() if params else ()), *(module.buffers() if buffers else ())]
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0)


def max_weight_difference(module: nn.Module) -> float:
    """The largest |w_rank - w_rank0| over all parameters and ranks: 0.0 when the ranks agree."""
    flat = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().to(torch.float64)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return diff.item()


def share_cuda_rng(device: torch.device) -> None:
    """After a resume: rank 0's CUDA generator state on every rank's device (a checkpoint holds rank
    0's devices' states, and each rank draws from its own device)."""
    if active() and device.type == "cuda":
        state = broadcast_object(torch.cuda.get_rng_state(device))
        torch.cuda.set_rng_state(state, device)


def sync_batchnorm(model: nn.Module, device: torch.device, where: str) -> nn.Module:
    """BatchNorm over the global batch (train.sync_batchnorm); a single process already has it."""
    if not active():
        return model
    if device.type != "cuda":
        raise UserError(f"{where}: train.sync_batchnorm = true: torch's SyncBatchNorm runs on GPUs only; on the CPU "
                        "(gloo) set it to false (each rank then normalizes over its own shard)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


class DistributedForwardGradient(ForwardGradient):
    """Forward gradient on each rank's shard, the estimates averaged over the ranks: with the same
    directions on every rank (same seed) this is the estimate of the global batch."""

    def estimate(self, x, y):
        loss, derivs = super().estimate(x, y)
        dist.all_reduce(self.grad_flat)
        self.grad_flat.div_(world())
        return loss, derivs


def for_ranks(method: type, model: nn.Module, device: torch.device,
              compression: str = gradient_compression.NONE) -> tuple[type, nn.Module, object]:
    """The training method, the module it trains and the gradient-compression hook's state (or
    None) when distributed: backprop through DDP (its gradient all-reduce, or the hook that
    replaces it), forward gradient averaging its estimates over the ranks."""
    if not active():
        return method, model, None
    if issubclass(method, ForwardGradient):
        broadcast_module(model)
        return DistributedForwardGradient, model, None
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  forward_sync_buffers=True)  # rank 0's BatchNorm statistics at each step
    return method, ddp, gradient_compression.attach(ddp, compression)


def join_alone() -> None:
    """A process group of one rank (gloo, a file store in a temporary folder): a run whose spec
    asks for a gradient-compression hook runs it, and counts its bytes, also outside torchrun."""
    import tempfile

    if not active():
        store = tempfile.mkdtemp(prefix="suite-rank0-")
        dist.init_process_group("gloo", init_method=f"file://{store}/store", rank=0, world_size=1,
                                timeout=timeout())


def gather_to_main(obj) -> list | None:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
    if not active():
        return [obj]
    out = [None] * world() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out
