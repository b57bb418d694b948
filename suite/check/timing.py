"""Time samples for the regression check: a variant's training work against a fixed calibration
loop, interleaved round by round in one process, as ratios (`suite/check/stats.py` decides).

Why not the smoke runs' own epoch times: a smoke epoch lasts ~50 ms, and one such measurement moves
by 1.4x with the machine's mood, so twice the work could read as 1.41x. Here the unit of work is
fixed and longer: `unit_epochs` training epochs of the variant (enough for ~UNIT_SECONDS, fixed
when the reference is made and reused by every check against it), each round timed right after a
calibration chunk. The ratio unit / calibration cancels the machine's speed (another CPU, another
load level), so references travel between machines; its spread over the rounds says how well it
is known.

The calibration is a small training loop (a convolution, linear layers, small batches, SGD with
momentum), because it runs fast where the smoke epochs run fast: a bare matrix-product loop ran
twice as fast on an Intel Xeon (AVX-512) as on an AMD EPYC while the smoke epochs took the same
time on both, so every epoch looked 2x slower against a reference made on the EPYC.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn

CALIBRATION = "train-loop-2"  # which workload `Calibration` times; samples against another are not compared
UNIT_SECONDS = 0.3  # a timed unit of training work lasts about this long
ROUNDS = 12  # rounds of (calibration, unit) per variant and attempt


class Calibration:
    """The machine's speed unit: a fixed small training loop, one chunk per call."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):  # must not move the runs' random state
            torch.manual_seed(0)
            self.model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                       nn.Linear(16 * 16 * 16, 256), nn.ReLU(), nn.Linear(256, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x, self.y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
        self.loss_fn = nn.CrossEntropyLoss()
        self()  # warm-up: first-call allocations

    def __call__(self) -> float:
        """Seconds of one chunk (four training steps)."""
        t0 = time.perf_counter()
        for _ in range(4):
            self.optimizer.zero_grad(set_to_none=True)
            self.loss_fn(self.model(self.x), self.y).backward()
            self.optimizer.step()
        return time.perf_counter() - t0


def unit_epochs(epoch_seconds: float) -> int:
    """How many epochs make one timed unit of about UNIT_SECONDS."""
    return max(1, math.ceil(UNIT_SECONDS / max(epoch_seconds, 1e-6)))


def unit_ratios(train_epoch, epochs: int, rounds: int = ROUNDS) -> list[float]:
    """`rounds` samples of (time of `epochs` calls of train_epoch) / (time of a calibration chunk).
    `train_epoch()` runs one training epoch and returns something to wait for (a loss tensor)."""
    calibration = Calibration()
    train_epoch()  # warm-up
    out = []
    for _ in range(rounds):
        calib = calibration()
        t0 = time.perf_counter()
        for _ in range(epochs):
            loss = train_epoch()
        if isinstance(loss, torch.Tensor):
            loss.item()  # the work queued on a device is part of the unit
        out.append((time.perf_counter() - t0) / calib)
    return out


class OtherLoad:
    """How many CPUs' worth other processes (and the hypervisor: steal) used while we ran, from
    Linux's /proc/stat minus our own CPU time; None elsewhere. Reported beside a verdict: on a
    machine busy with other work every sample is noisier, and the verdict may be "not judged"."""

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system (idle iowait) irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK"), time.process_time(), time.perf_counter()

    def read(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        (b0, c0, w0), (b1, c1, w1) = self._start, end
        return max(0.0, ((b1 - b0) - (c1 - c0)) / max(w1 - w0, 1e-9))
