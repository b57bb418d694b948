"""Timing for the benchmarks: candidates interleaved in timed chunks, the order rotating every round
(none always follows the same neighbour), every chunk kept; ratios of minimums within one process."""

from __future__ import annotations

import time

import torch


def calibrate(fn, seconds: float) -> int:
    """Calls per chunk so that a chunk takes about `seconds` (at least 1)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, round(seconds / once))


def interleaved(fns: dict, rounds: int, chunk_seconds: float = 0.02) -> tuple[dict, dict]:
    """({candidate: [seconds per call in each timed chunk, ...]}, {candidate: calls per chunk}).

    A chunk repeats one candidate `reps` times (calibrated to about `chunk_seconds`); each sample is
    the chunk's time divided by its calls, so candidates of different speeds compare per call."""
    reps = {k: calibrate(f, chunk_seconds) for k, f in fns.items()}  # also the warm-up
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


def record(benchmark, samples: dict, reps: dict, ratios: list[tuple[str, str]], **info) -> dict:
    """Store the samples, the calls per chunk and each ratio A_over_B = min(A) / min(B) in the
    benchmark's extra_info (no assertion on any of them); print a one-line summary."""
    out = {f"{a}_over_{b}": min(samples[a]) / min(samples[b]) for a, b in ratios}
    benchmark.extra_info.update({"samples": samples, "calls_per_chunk": reps, "torch_threads": torch.get_num_threads(),
                                 **out, **info})
    fastest = min(samples, key=lambda k: min(samples[k]))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the fixture wants a call; the figures are above
    line = ", ".join(f"{k} {1e6 * min(v):.1f} us" for k, v in samples.items())
    print(f"\n{benchmark.name}: {line}; " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()) + f" (fastest {fastest})")
    return out
