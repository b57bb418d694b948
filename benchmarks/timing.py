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

from suite.timing import interleaved_samples  # noqa: F401 (the benchmarks' one interleaving)


def record(benchmark, samples: dict[str, list[float]], ratios: list[tuple[str, str]], per_chunk: int = 1) -> dict:
    """Store the samples and each ratio A_over_B (the median of the per-round ratios) in the
    benchmark's extra_info; return the ratios."""
    out = {f"{a}_over_{b}": statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))
           for a, b in ratios}
    benchmark.extra_info["samples"] = samples
    benchmark.extra_info.update({f"{k}_ms_per_step": 1000 * statistics.median(v) / per_chunk
                                 for k, v in samples.items()})
    benchmark.extra_info.update(out)
    return out
