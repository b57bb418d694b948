"""Recording the benchmarks' figures: the interleaved samples (suite/interleaved.py) and their ratios
in pytest-benchmark's extra_info, for the regression gate to judge (no assertion on a time here)."""

from __future__ import annotations

import torch

from suite.interleaved import interleaved

__all__ = ["interleaved", "record"]


def record(benchmark, samples: dict, reps: dict, ratios: list[tuple[str, str]], **info) -> dict:
    """Store the samples (seconds per call, one per timed chunk), the calls per chunk and each ratio
    A_over_B = min(A) / min(B) in the benchmark's extra_info; print a one-line summary."""
    out = {f"{a}_over_{b}": min(samples[a]) / min(samples[b]) for a, b in ratios}
    benchmark.extra_info.update({"samples": samples, "calls_per_chunk": reps, "torch_threads": torch.get_num_threads(),
                                 **out, **info})
    fastest = min(samples, key=lambda k: min(samples[k]))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the fixture wants a call; the figures are above
    line = ", ".join(f"{k} {1e6 * min(v):.1f} us" for k, v in samples.items())
    print(f"\n{benchmark.name}: {line}; " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()) + f" (fastest {fastest})")
    return out
