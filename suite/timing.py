"""Timing candidates against each other in one process: interleaved rounds, order rotating.

A time in a table here is always a ratio measured within one process: every candidate runs once
per round, the order rotates every round (so that none always follows the same neighbour), and
each candidate's figure is the minimum over its samples (what the machine does when nothing
interferes; another process holding the CPU only ever adds time). Every sample is kept, so a
record shows the spread as well as the minimum. The same discipline as the benchmarks' timing
module (benchmarks/timing.py), written here so that library code (studies) does not import from benchmarks/
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def interleaved_samples(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                        repeat: int = 1) -> dict[str, list[float]]:
    """{name: [seconds per call, one per round]}: `warmup` untimed calls each, then `rounds`
    interleaved rounds whose order rotates; a sample is the mean of `repeat` back-to-back calls
    (for calls too short to time alone)."""
    if rounds < 1 or repeat < 1:
        raise ValueError(f"rounds and repeat must be positive, got {rounds}, {repeat}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[k]
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            samples[k].append((time.perf_counter() - t0) / repeat)
    return samples


def repeats_for(fn: Callable[[], object], target_seconds: float = 0.02, limit: int = 10000) -> int:
    """How many back-to-back calls make one sample of about `target_seconds` (at least 1)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(limit, round(target_seconds / once)))


def per_call_samples(fns: dict[str, Callable[[], object]], rounds: int,
                     sample_seconds: float) -> dict[str, list[float]]:
    """{name: [seconds per call, one per round]} for candidates of any length: each one's sample is
    as many back-to-back calls as take about `sample_seconds` (its own count, `repeats_for`), the
    samples interleaved as in `interleaved_samples`."""
    repeats = {k: repeats_for(fn, sample_seconds) for k, fn in fns.items()}
    timed = interleaved_samples({k: _repeated(fn, repeats[k]) for k, fn in fns.items()}, rounds=rounds)
    return {k: [t / repeats[k] for t in v] for k, v in timed.items()}


def _repeated(fn: Callable[[], object], n: int) -> Callable[[], None]:
    def call():
        for _ in range(n):
            fn()
    return call


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to n within the block (0: left as they are), restored after."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
