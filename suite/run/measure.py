"""Measurement: device choice, wall-clock timers that wait for the device, per-epoch peak memory,
and the provenance every record carries."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import psutil
import torch

from suite.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """auto: the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (torch "
                        f"{torch.__version__}); use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall time of a block, with the device synchronized at both ends."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0

    def __enter__(self):
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0


_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Peak memory of one interval (an epoch): CPU resident-set high-water mark and CUDA peak
    allocation, both reset at `reset()`.

    CPU: on Linux, writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so VmHWM
    read at the end is this interval's peak, with no sampling thread. Elsewhere the RSS at the
    end is reported (a lower bound), and `cpu_method` says which.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_method = "VmHWM" if self._can_reset_hwm() else "rss_at_end"

    @staticmethod
    def _can_reset_hwm() -> bool:
        try:
            _CLEAR_REFS.write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.cpu_method == "VmHWM":
            _CLEAR_REFS.write_text("5")
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict:
        out = {"peak_rss_mb": self._rss_peak_bytes() / 2**20, "peak_cuda_mb": None}
        if self.device.type == "cuda":
            synchronize(self.device)
            out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out

    def _rss_peak_bytes(self) -> int:
        if self.cpu_method == "VmHWM":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return psutil.Process().memory_info().rss


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) if commit else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), as records and references name it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction sets that decide which kernel builds run (suite/kernels/dispatch.py) and so how
# fast low-bit work is against float work.
_ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vpopcntdq", "avx512_vnni")


def cpu_signature() -> str:
    """The CPU's design, finer than its model name (a virtual machine may report only "AMD EPYC"
    for several generations): model name, family and model numbers, and the instruction sets the
    kernels dispatch on. References made on another signature are judged with wider bounds."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "flags") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block is enough
    except OSError:
        return cpu_model()
    flags = set(fields.get("flags", "").split())
    isa = " ".join(f for f in _ISA_FLAGS if f in flags) or "no AVX2"
    return f"{cpu_model()} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}; {isa})"


def made_on_this_cpu(provenance: dict | None) -> tuple[bool, str]:
    """(whether a reference's provenance names this machine's CPU design, how it names it): by the
    CPU signature where the reference has one, else by the model name; no provenance counts as
    this CPU (nothing says otherwise)."""
    p = provenance or {}
    if p.get("cpu"):
        return p["cpu"] == cpu_signature(), p["cpu"]
    name = p.get("device_name")
    return name in (None, cpu_model()), str(name)


def provenance(device: torch.device) -> dict:
    """Where and with what a run ran (no hostname)."""
    import numpy
    import torchvision

    import suite
    from suite import tensor_memory
    from suite.quant import fused
    from suite.run import allocator
    from suite.train import directions

    return {
        "git_commit": _git_commit(),
        "suite": suite.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_signature(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "fused_cpu_kernels": fused.status(),  # the binary quantizers' CPU path (suite/quant/fused.py)
        "malloc": allocator.state(),  # suite/run/allocator.py
        "tensor_memory": tensor_memory.status(),  # the counting CPU allocator (suite/tensor_memory.py)
        "direction_kernels": directions.status(),  # forward-gradient directions (suite/train/directions.py)
    }
