"""The regression check's rules: one fresh attempt of a spec's profile against its reference,
variant by variant, each comparison a `Row` (what, reference, ours, bound, verdict).

- **test error** (%, at the best validation epoch) and **final training loss**: our mean must lie
  in ``reference mean ± max(K_SIGMA x reference std, floor)``, the std being the spread of single
  runs across the reference's seeds; floors ``ERROR_FLOOR`` percentage points and ``LOSS_FLOOR`` x
  the reference mean (they cover a spread of 0 and cross-machine float noise). Both directions
  fail: a silent improvement is a change too. With the reference's own seeds an unchanged checkout
  on the same machine and torch gives identical numbers (the verdict says so).
- **time**: the variant's fixed unit of training work over the calibration loop, sampled round by
  round (`suite/check/timing.py`); fails when the median ratio is above ``TIME_BOUND`` x the
  reference's with 95% confidence (`suite/check/stats.py`); "not judged" when the samples cannot
  decide.
- **peak memory**: the largest per-epoch resident-set peak; fails above ``MEMORY_BOUND`` x. Tensor
  memory (peak and per-step, exact counts): fails above ``TENSOR_BOUND`` x + ``TENSOR_SLACK_MB``.
- **study specs** (no training epochs): every number of the summary (timings aside) within the
  accuracy rule, floor ``STUDY_FLOOR`` x its mean; one row names the number closest to its bound.
- **status**: a run that failed or diverged where the reference's completed fails the check.
- **config**: a reference made with other settings (spec edited, other data) is stale: it fails,
  naming the keys, until ``--update`` remakes it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from suite.check import stats
from suite.check.timing import CALIBRATION
from suite.records import flat, record_config
from suite.run.measure import made_on_this_cpu

K_SIGMA = 3.0  # accuracy bound: reference mean ± K_SIGMA x the single-run std across seeds ...
ERROR_FLOOR = 1.0  # ... but at least this many percentage points of test error
LOSS_FLOOR = 0.05  # ... and this fraction of the reference's mean final training loss
STUDY_FLOOR = 0.05  # ... and this fraction of each number of a study's summary (studies have no epochs)
TIME_BOUND = 1.5  # a unit of training work over the calibration loop: ours / reference
# ... against a reference made on another CPU model: the low-bit kernels' builds differ between CPUs
# (AVX-512 VPOPCNTDQ, AVX-512BW, AVX2), so their share of the work moves more than the calibration
FOREIGN_CPU_TIME_BOUND = 2.0
MEMORY_BOUND = 1.5  # peak resident set: ours / reference
# Tensor memory is an exact count (suite/tensor_memory.py): the same code and torch give the same
# bytes, so its bound is tight: ours <= TENSOR_BOUND x reference + TENSOR_SLACK_MB.
TENSOR_BOUND, TENSOR_SLACK_MB = 1.02, 0.5
# ... on the same CPU design only: on another, oneDNN picks other memory layouts and scratch buffers
# for the same convolution (they come from torch's allocator, so they are counted)
FOREIGN_CPU_TENSOR_BOUND, FOREIGN_CPU_TENSOR_SLACK_MB = 1.25, 2.0


@dataclass
class Row:
    """One comparison, as printed: what was compared, both values, the bound and the verdict."""

    spec: str
    variant: str
    metric: str
    reference: str
    ours: str
    bound: str
    verdict: str
    ok: bool
    margin: float | None = None  # the share of the bound used (1.0 = at the bound): how close it came


@dataclass
class Attempt:
    """One run of a profile: its records and how it ran (calibration, threads, machine load)."""

    meta: dict
    records: list[dict]
    timing: dict[str, list[float]] = field(default_factory=dict)  # variant -> time samples (timing.py)

    def of(self, variant: str) -> list[dict]:
        return sorted((r for r in self.records if r["variant"] == variant), key=lambda r: r["seed"])


def config_differences(ref: dict, ours: dict) -> list[str]:
    """'key: ref -> ours' for every setting that differs. A key absent on one side (an option added
    or removed since) counts as equal when the other side holds its default or an empty value: a
    new option left at its default changes nothing."""
    from suite.spec.schema import defaults as spec_defaults

    missing, defaults = object(), spec_defaults()

    def neutral(key, v):
        return v is None or v is False or v == [] or v == {} or (key in defaults and v == defaults[key])

    diffs = []
    for key in sorted(set(ref) | set(ours)):
        a, b = ref.get(key, missing), ours.get(key, missing)
        if a == b or (a is missing and neutral(key, b)) or (b is missing and neutral(key, a)):
            continue
        diffs.append(f"{key}: {'(absent)' if a is missing else a!r} -> {'(absent)' if b is missing else b!r}")
    return diffs


def _test_error(r: dict):
    return r["summary"].get("test_error_at_best_val")


def _final_loss(r: dict):
    return r["epochs"][-1].get("train_loss") if r["epochs"] else None


ACCURACY = (("test error %", _test_error, lambda mean: ERROR_FLOOR),
            ("final train loss", _final_loss, lambda mean: LOSS_FLOOR * abs(mean)))


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _accuracy_row(spec, variant, metric, get, floor, ref: list[dict], ours: list[dict]) -> Row | None:
    ref_v, our_v = _finite(get(r) for r in ref), _finite(get(r) for r in ours)
    if not ref_v or not our_v:
        return None
    mean = statistics.fmean(ref_v)
    std = statistics.stdev(ref_v) if len(ref_v) > 1 else 0.0
    tol = max(K_SIGMA * std, floor(mean))
    ours_mean = statistics.fmean(our_v)
    why = f"{K_SIGMA:g}σ" if K_SIGMA * std >= floor(mean) else "floor"
    ref_by_seed = {r["seed"]: get(r) for r in ref}
    paired = [(ref_by_seed[r["seed"]], get(r)) for r in ours if r["seed"] in ref_by_seed]
    ok = abs(ours_mean - mean) <= tol
    if not ok:
        verdict = f"OUTSIDE ({'worse' if ours_mean > mean else 'better'}: {ours_mean - mean:+.4g})"
    elif len(paired) == len(ours) and all(a == b for a, b in paired):
        verdict = "ok (identical)"
    else:
        verdict = f"ok ({ours_mean - mean:+.3g})"
    return Row(spec, variant, metric, f"{mean:.4g} ± {std:.2g} (n={len(ref_v)})", f"{ours_mean:.4g} (n={len(our_v)})",
               f"[{mean - tol:.4g}, {mean + tol:.4g}] ({why})", verdict, ok, abs(ours_mean - mean) / tol)


def time_row(spec: str, variant: str, ref: Attempt, ours: Attempt, final: bool = True) -> Row | None:
    """The variant's unit of training work over the calibration loop, ours against the reference's
    samples (`stats.judge`). An undecided judgement is "not judged" when `final`, else None is
    returned for the caller to measure more rounds."""
    ref_t, our_t = ref.timing.get(variant), ours.timing.get(variant)
    if not our_t:
        return None
    same_cpu, ref_cpu = made_on_this_cpu(ref.meta.get("provenance"))
    limit = TIME_BOUND if same_cpu else FOREIGN_CPU_TIME_BOUND
    metric = "training work ÷ calibration"
    bound = f"≤ {limit:g}x ref (95% CI)" + ("" if limit == TIME_BOUND else
                                            f"; reference made on another CPU ({ref_cpu})")
    ours_shown = f"{statistics.median(our_t):.3g} (median of {len(our_t)})"
    if not ref_t or ref.meta.get("calibration") != CALIBRATION:
        return Row(spec, variant, metric, "no samples", ours_shown, bound, "not judged: the reference has no "
                   f"time samples of this workload (remake it with check {spec} --update)", True)
    j = stats.judge(our_t, ref_t, limit)
    ref_shown = f"{statistics.median(ref_t):.3g} (median of {len(ref_t)})"
    if j.decision == "ok":
        return Row(spec, variant, metric, ref_shown, ours_shown, bound, f"ok ({j.describe()})", True,
                   j.high / limit)
    if j.decision == "slower":
        return Row(spec, variant, metric, ref_shown, ours_shown, bound, f"SLOWER ({j.describe()})", False,
                   j.low / limit)
    if not final:
        return None
    load = ours.meta.get("other_load")
    busy = f"; other processes used {load:.1f} CPUs" if load is not None else ""
    return Row(spec, variant, metric, ref_shown, ours_shown, bound, f"not judged: too noisy to decide ({j.describe()}"
               f"{busy})", True, 1.0)


def _study_numbers(record: dict) -> dict[str, float]:
    """A study's summary numbers, flattened (its timings aside: they are not results)."""
    return {k: v for k, v in flat(record["summary"]).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and "seconds" not in k}


def _study_row(spec, variant, ref, ours) -> Row | None:
    """A study (no training epochs): every number of its summary within the accuracy rule, mean
    ± max(K_SIGMA x std, STUDY_FLOOR x |mean|); one row naming the number closest to its bound."""
    if any(r["epochs"] for r in ref + ours):
        return None
    worst = None  # (margin, key, ref mean, our mean)
    keys = sorted(set.intersection(*(set(_study_numbers(r)) for r in ref + ours)))
    for key in keys:
        a = _finite(_study_numbers(r)[key] for r in ref)
        b = _finite(_study_numbers(r)[key] for r in ours)
        if not a or not b:
            continue
        mean, ours_mean = statistics.fmean(a), statistics.fmean(b)
        tol = max(K_SIGMA * (statistics.stdev(a) if len(a) > 1 else 0.0), STUDY_FLOOR * abs(mean), 1e-12)
        margin = abs(ours_mean - mean) / tol
        if worst is None or margin > worst[0]:
            worst = (margin, key, mean, ours_mean)
    if worst is None:
        return None
    margin, key, mean, ours_mean = worst
    ok = margin <= 1.0
    return Row(spec, variant, f"study summary ({len(keys)} numbers)", f"{key} = {mean:.4g} (n={len(ref)})",
               f"{ours_mean:.4g} (n={len(ours)})", f"each: mean ± max({K_SIGMA:g}σ, {STUDY_FLOOR:.0%})",
               "ok (identical)" if margin == 0 else f"ok (closest: {key}, {margin:.0%} of its bound)" if ok
               else f"OUTSIDE ({key}: {ours_mean - mean:+.4g})", ok, margin)


def _memory_row(spec, variant, ref, ours) -> Row | None:
    a = _finite(r["summary"].get("peak_rss_mb") for r in ref)
    b = _finite(r["summary"].get("peak_rss_mb") for r in ours)
    if not a or not b:
        return None
    ratio = max(b) / max(a)
    ok = ratio <= MEMORY_BOUND
    verdict = f"ok ({ratio:.2f}x)" if ok else f"MORE MEMORY ({ratio:.2f}x > {MEMORY_BOUND:g}x)"
    return Row(spec, variant, "peak RSS MiB", f"{max(a):.0f}", f"{max(b):.0f}", f"≤ {MEMORY_BOUND:g}x ref", verdict, ok,
               ratio / MEMORY_BOUND)


def _tensor_rows(spec, variant, ref, ours, same_cpu: bool = True) -> list[Row]:
    """Peak and per-step tensor memory (exact counts), where both sides counted them."""
    bound, slack = (TENSOR_BOUND, TENSOR_SLACK_MB) if same_cpu else (FOREIGN_CPU_TENSOR_BOUND,
                                                                     FOREIGN_CPU_TENSOR_SLACK_MB)
    rows = []
    for key, metric in (("peak_tensor_mb", "peak tensor MiB"), ("step_tensor_mb", "step tensor MiB")):
        a = [r["summary"].get(key) for r in ref]
        b = [r["summary"].get(key) for r in ours]
        if not a or not b or None in a or None in b:
            continue
        limit = bound * max(a) + slack
        ok = max(b) <= limit
        verdict = f"ok ({max(b) - max(a):+.2f} MiB)" if ok else f"MORE MEMORY ({max(b) - max(a):+.2f} MiB)"
        rows.append(Row(spec, variant, metric, f"{max(a):.2f}", f"{max(b):.2f}",
                        f"≤ {bound:g}x ref + {slack:g}" + ("" if same_cpu else "; reference made on another CPU"),
                        verdict, ok, max(b) / limit))
    return rows


def _variants(records: list[dict]) -> list[str]:
    """The variants run, in the spec's order."""
    ran = {r["variant"] for r in records}
    order = [v.get("name") for r in records[:1] for v in r["spec"].get("resolved", {}).get("variants", [])]
    return [v for v in order if v in ran] + sorted(ran - set(order))


def compare(spec: str, ref: Attempt, first: Attempt, only: list[str] | None = None, final: bool = True) -> list[Row]:
    """The rows of one spec: per variant (all, or `only` these) its config, status, accuracy,
    memory and time. With `final` False, a time row that cannot yet decide is left out (the caller
    measures more rounds)."""
    rows = []
    same_cpu = made_on_this_cpu(ref.meta.get("provenance"))[0]
    ref_variants, our_variants = _variants(ref.records), _variants(first.records)
    for variant in ref_variants + [v for v in our_variants if v not in ref_variants]:
        if only and variant not in only:
            continue
        r_runs, o_runs = ref.of(variant), first.of(variant)
        if not o_runs:
            rows.append(Row(spec, variant, "runs", f"{len(r_runs)} run(s)", "not run", "", "NOT RUN (reference stale? "
                            f"run check {spec} --update)", False))
            continue
        if not r_runs:
            rows.append(Row(spec, variant, "runs", "none", f"{len(o_runs)} run(s)", "", "no reference for this variant "
                            f"(run check {spec} --update)", True))
            continue
        diffs = config_differences(record_config(r_runs[0]), record_config(o_runs[0]))
        if diffs:
            rows.append(Row(spec, variant, "config", "", "", "same settings", "STALE REFERENCE: " + "; ".join(diffs)
                            + f" (run check {spec} --update)", False))
        ref_status, our_status = [r["status"] for r in r_runs], [r["status"] for r in o_runs]
        broken = [s for s in our_status if s not in ref_status]
        if broken:
            rows.append(Row(spec, variant, "status", ", ".join(sorted(set(ref_status))), ", ".join(our_status),
                            "as the reference", f"RUN {broken[0].upper()}", False))
        for metric, get, floor in ACCURACY:
            row = _accuracy_row(spec, variant, metric, get, floor, r_runs, o_runs)
            rows += [row] if row else []
        rows += _tensor_rows(spec, variant, r_runs, o_runs, same_cpu)
        for row in (time_row(spec, variant, ref, first, final), _memory_row(spec, variant, r_runs, o_runs),
                    _study_row(spec, variant, r_runs, o_runs)):
            rows += [row] if row else []
    return rows
