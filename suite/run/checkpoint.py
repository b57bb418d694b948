"""Checkpoints: a run's whole training state at the end of each epoch, written atomically, so a
killed run continues from its last complete epoch with identical results.

A checkpoint lives at ``results/checkpoints/SPEC/PROFILE/RUN_ID-VARIANT-sSEED.pt`` beside a
``.lock`` file that the running process holds (flock): a rerun resumes the newest checkpoint of
the same spec, profile, variant, seed and configuration that no live process holds, so two runs
at once never share (or clobber) one. A completed run deletes its checkpoint.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def checkpoint_path(results_dir: Path, spec: str, profile: str, variant: str, seed: int, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / spec / profile / f"{run_id}-{variant}-s{seed}.pt"


class RunLock:
    """An exclusive, non-blocking flock held for the life of a run (released by the OS if the
    process dies, so a killed run's checkpoint becomes resumable at once)."""

    def __init__(self, checkpoint: Path):
        self.path = checkpoint.with_suffix(".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def save(path: Path, state: dict) -> None:
    """torch.save to a temporary file in the same folder, fsync, rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def find_resumable(results_dir: Path, spec: str, profile: str, variant: str, seed: int,
                   config_hash: str) -> tuple[Path, RunLock] | None:
    """The newest unlocked checkpoint of this run's configuration, locked for the caller."""
    folder = Path(results_dir) / "checkpoints" / spec / profile
    for path in sorted(folder.glob(f"*-{variant}-s{seed}.pt"), reverse=True):
        try:
            meta = load(path)["meta"]
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is skipped, never resumed
            continue
        if meta.get("config_hash") != config_hash:
            continue
        lock = RunLock(path)
        if lock.acquire():
            return path, lock
    return None


def rng_states(generator: torch.Generator) -> dict:
    """Every random state a run draws from: torch (CPU and CUDA), numpy, random, the batch order."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "batches": generator.get_state(),
    }


def restore_rng_states(states: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    generator.set_state(states["batches"])
