"""Timing candidates against each other in one process: interleaved timed chunks, the order rotating
every round (none always follows the same neighbour), every chunk kept. Ratios of minimums."""

from __future__ import annotations

import time


def calibrate(fn, seconds: float) -> int:
    """Calls per chunk so that a chunk takes about `seconds` (at least 1); calls fn twice (warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, round(seconds / once))


def interleaved(fns: dict, rounds: int, chunk_seconds: float = 0.02) -> tuple[dict, dict]:
    """({candidate: [seconds per call in each timed chunk, ...]}, {candidate: calls per chunk}).

    A chunk repeats one candidate `reps` times (calibrated to about `chunk_seconds`); each sample is
    the chunk's time divided by its calls, so candidates of different speeds compare per call."""
    reps = {k: calibrate(f, chunk_seconds) for k, f in fns.items()}
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            f, n = fns[k], reps[k]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            samples[k].append((time.perf_counter() - t0) / n)
    return samples, reps
