"""Interleaved timing for the benchmarks (suite/timing.py), stored the way the gate reads it.

The candidates run interleaved (A, B, C, A, B, C, ...) in short chunks, the order rotating every
round so that none always follows the same neighbour (a fixed order biased one ratio by up to 5%
from one process to the next). Every chunk's time is kept: a ratio's samples are the per-round
ratios A_i / B_i, the two chunks having run side by side, so a slow moment of the machine moves both.
The regression gate (`python -m suite check --benchmarks`, suite/check/bench.py) judges them against
the committed reference; nothing here asserts a time.
"""

from __future__ import annotations

import statistics
import time

import torch

from suite.timing import interleaved_samples  # noqa: F401 (the benchmarks' one interleaving)


def record(benchmark, samples: dict[str, list[float]], ratios: list[tuple[str, str]], per_chunk: int = 1,
           unlike: tuple[str, ...] = (), **info) -> dict:
    """Store the samples and each ratio A_over_B (the median of the per-round ratios) in the
    benchmark's extra_info, with any other figures in `info`; return the ratios. `unlike`: the
    candidates whose work differs in kind from the others' (popcount kernels, factorized networks):
    a ratio with one of them on one side only is listed in ``unlike_work``, which the gate judges
    with a wider bound (suite/check/bench.py)."""
    out = {f"{a}_over_{b}": statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))
           for a, b in ratios}
    benchmark.extra_info["samples"] = samples
    benchmark.extra_info["unlike_work"] = sorted(f"{a}_over_{b}" for a, b in ratios if (a in unlike) != (b in unlike))
    benchmark.extra_info.update({f"{k}_ms_per_step": 1000 * statistics.median(v) / per_chunk
                                 for k, v in samples.items()})
    benchmark.extra_info.update(out)
    benchmark.extra_info.update(info)
    return out


def chunked(fns: dict, seconds: float) -> tuple[dict, int]:
    """Each function wrapped to run n times a call, n the same for all (so that per-chunk samples
    compare) and such that the fastest one's chunk lasts about `seconds`: a call of microseconds
    is timed over many. Returns (wrapped functions, n) for `record(..., per_chunk=n)`."""
    def once(fn):
        fn()  # warm-up
        t0 = time.perf_counter()
        fn()
        return max(time.perf_counter() - t0, 1e-7)

    n = max(1, round(seconds / min(once(f) for f in fns.values())))

    def repeat(fn):
        def chunk():
            for _ in range(n):
                fn()
        return chunk

    return {k: repeat(f) for k, f in fns.items()}, n


def page_faults(fns: dict, calls: int = 2) -> dict[str, float]:
    """Minor page faults per call of each function, the mean of `calls` calls (getrusage): memory the
    process maps anew on every call, where the C library gave freed memory back to the system and a
    new tensor's first write must fault its pages in again. {} where getrusage is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return {}
    out = {}
    for name, fn in fns.items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(calls):
            fn()
        out[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
    return out


def record_chunks(benchmark, samples: dict, n: int, ratios: list[tuple[str, str]], **info) -> dict:
    """`record` for samples of `chunked` functions (n calls a chunk), with the threads noted and one
    summary line printed (time per call); the fixture's one call is a no-op (the figures are above)."""
    out = record(benchmark, samples, ratios, per_chunk=n, calls_per_chunk=n, torch_threads=torch.get_num_threads(),
                 **info)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    line = ", ".join(f"{k} {1e6 * min(v) / n:.1f} us" for k, v in samples.items())
    print(f"\n{benchmark.name}: {line}; " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out
