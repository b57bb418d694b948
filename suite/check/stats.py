"""The decision rule for every timing gate: is ours slower than the reference by more than a bound,
judged from samples rather than from one number?

Samples are ratios measured within one process, each from one round of interleaved work (a
quantized layer's step over its float twin's, an epoch's work over the calibration loop's), so a
slow machine moves both sides of a ratio alike and another process's burst spoils a few rounds,
not the figure. The statistic is the median ratio, ours over the reference's, with a bootstrap
95% confidence interval (scipy.stats.bootstrap, resampling each side's rounds; seeded, so the same
samples always give the same decision):

- ``ok``: the whole interval lies at or below the bound (a real slowdown of that size is ruled out);
- ``slower``: the whole interval lies above it (the slowdown is real, not noise);
- ``undecided``: the interval straddles the bound; the caller measures more rounds and decides
  again, and after its last attempt reports "not judged: too noisy" with the interval: never a
  silent pass of a real slowdown, never a failure on noise.

This is asv's approach (a ratio threshold together with a test of the samples, there Mann-Whitney
U), with an interval in place of the test so that the verdict can say how large the change is.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 3  # fewer samples on either side: no interval can be trusted


@dataclass(frozen=True)
class Judgement:
    decision: str  # "ok" | "slower" | "undecided"
    ratio: float  # median(ours) / median(reference)
    low: float  # the bootstrap interval of that ratio
    high: float
    bound: float

    def describe(self) -> str:
        return f"{self.ratio:.2f}x, 95% CI {self.low:.2f}-{self.high:.2f}, bound {self.bound:g}x"


def _ratio_of_medians(ours, ref, axis=-1):
    return np.median(ours, axis=axis) / np.median(ref, axis=axis)


def ratio_interval(ours: list[float], ref: list[float], seed: int = 0) -> tuple[float, float, float]:
    """(median(ours) / median(ref), low, high): the ratio and its bootstrap confidence interval."""
    from scipy.stats import bootstrap

    ratio = statistics.median(ours) / statistics.median(ref)
    res = bootstrap((np.asarray(ours, float), np.asarray(ref, float)), _ratio_of_medians, n_resamples=RESAMPLES,
                    confidence_level=CONFIDENCE, method="percentile", vectorized=True,
                    rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return ratio, float(min(low, ratio)), float(max(high, ratio))


def judge(ours: list[float], ref: list[float], bound: float) -> Judgement:
    """Whether `ours` is slower than `ref` by more than `bound` (a ratio of medians)."""
    if len(ours) < MIN_SAMPLES or len(ref) < MIN_SAMPLES:
        ratio = statistics.median(ours) / statistics.median(ref) if ours and ref else float("nan")
        return Judgement("undecided", ratio, float("nan"), float("nan"), bound)
    ratio, low, high = ratio_interval(ours, ref)
    decision = "ok" if high <= bound else "slower" if low > bound else "undecided"
    return Judgement(decision, ratio, low, high, bound)
