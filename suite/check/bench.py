"""The benchmark gate: speed ratios measured within one process by the benchmarks in benchmarks/
(pytest-benchmark's JSON), against the committed ``results/reference/benchmarks.json``.

Each benchmark stores in its ``extra_info`` the time of every timed chunk of every candidate,
``samples = {candidate: [seconds, ...]}``, the candidates run interleaved round by round, and names
the ratios it measures, ``A_over_B`` (a quantized layer's step over its float twin's, the harness's
epoch over a bare loop). A ratio's samples are the per-round ratios A_i / B_i (the two chunks ran
side by side, so the machine's speed cancels). Each is judged against the reference's samples by
`suite.check.stats.judge`: it fails when it is above ``BOUND`` x the reference's median ratio with
95% confidence; it passes when that is ruled out; when the samples cannot decide, the benchmark is
run again (``RERUNS``) and the samples pooled, and after that the verdict is "not judged: too noisy"
with the interval. Absolute times are never compared.

A benchmark names in ``extra_info["unlike_work"]`` the ratios whose two sides do different kinds of
work (popcount kernels against float BLAS, a factorized network against a dense one). Those move
with the machine's balance (popcount against multiply-add throughput, memory bandwidth, cache), not
only with its speed: on another host reporting the same CPU model, 2026-12-02, a batch-1 XNOR
product over oneDNN's float linear read 2.9x its reference while every float-over-float ratio stayed
within 1.06x. So they are judged against ``UNLIKE_WORK_BOUND`` (a kernel that lost its vector code
or its blocking), and only against a reference made on the same CPU design.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from suite.check import stats
from suite.check.compare import Row
from suite.errors import UserError
from suite.run.measure import made_on_this_cpu

BOUND = 1.2  # ours / reference, for the median of a ratio's samples
# A ratio of two workloads moves with the CPU's design (vector width, popcount, cache), not only its
# speed: against a reference made on another CPU model only a gross slowdown is judged.
FOREIGN_CPU_BOUND = 1.5
UNLIKE_WORK_BOUND = 4.0  # ... for a ratio of unlike work (see above), on the same CPU design
RERUNS = 2  # a benchmark whose ratios cannot decide runs again, up to this many times


def ratio_samples(bench_json: Path) -> dict[str, dict]:
    """'test id :: ratio name' -> {"samples": per-round ratios, "value": the benchmark's own figure,
    "unlike": whether its two sides do unlike work}."""
    try:
        data = json.loads(Path(bench_json).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{bench_json}: not a pytest-benchmark JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise UserError(f"{bench_json}: benchmarks: expected pytest-benchmark's list of benchmarks")
    out = {}
    for b in data["benchmarks"]:
        info = b.get("extra_info", {}) if isinstance(b, dict) else {}
        samples = info.get("samples", {})
        unlike = set(info.get("unlike_work", []))
        for name, value in sorted(info.items()):
            if "_over_" not in name or not isinstance(value, int | float):
                continue
            a, _, c = name.partition("_over_")
            pairs = list(zip(samples.get(a, []), samples.get(c, []), strict=False))
            out[f"{b['fullname']} :: {name}"] = {"value": value, "samples": [x / y for x, y in pairs if y > 0],
                                                 "unlike": name in unlike}
    return out


def _rerun(tests: set[str], project: Path) -> dict[str, dict]:
    """The given benchmark tests run again (pytest), their ratio samples."""
    with tempfile.TemporaryDirectory(prefix="suite-bench-") as tmp:
        out = Path(tmp) / "bench.json"
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *sorted(tests),
                               f"--benchmark-json={out}"], cwd=project).returncode
        if code != 0 or not out.exists():
            return {}
        return ratio_samples(out)


def _row(key: str, ours: list[float], ref: list[float], value: float, final: bool, limit: float = BOUND,
         why: str = "") -> Row | None:
    test, name = key.split(" :: ")
    test = test.split("::")[-1]
    j = stats.judge(ours, ref, limit)
    shown_ref = f"{statistics.median(ref):.3f}"
    shown = f"{statistics.median(ours):.3f} (n={len(ours)})"
    bound = f"≤ {limit:g}x ref (95% CI){why}"
    if j.decision == "ok":
        return Row("benchmarks", test, name, shown_ref, shown, bound, f"ok ({j.describe()})", True, j.high / limit)
    if j.decision == "slower":
        return Row("benchmarks", test, name, shown_ref, shown, bound, f"SLOWER ({j.describe()})", False, j.low / limit)
    if not final:
        return None
    return Row("benchmarks", test, name, shown_ref, shown, bound, f"not judged: too noisy to decide ({j.describe()})",
               True, 1.0)


def check_benchmarks(bench_json: Path, reference: Path, update: bool = False, project: Path | None = None) -> list[Row]:
    """Judge every ratio of `bench_json` against `reference` (or, with `update`, store them as the
    reference). `project`: where to rerun undecided benchmarks (None: no reruns)."""
    from suite.check.reference import provenance_meta

    ours = ratio_samples(bench_json)
    if update:
        if not ours or not all(len(v["samples"]) >= stats.MIN_SAMPLES for v in ours.values()):
            raise UserError(f"{bench_json}: every *_over_* ratio needs its candidates' samples in extra_info "
                            f"(at least {stats.MIN_SAMPLES}); nothing stored")
        meta = {"about": "speed ratios of the benchmarks (benchmarks/), remade on a quiet machine by: python -m "
                         "pytest benchmarks -m 'not extended' --benchmark-json=bench.json && python -m suite "
                         "check --benchmarks bench.json --update",
                "bound": f"median ratio <= {BOUND} x the reference's (95% CI); a ratio of unlike work <= "
                         f"{UNLIKE_WORK_BOUND} x on the same CPU design",
                **provenance_meta(), "ratios": ours}
        reference.parent.mkdir(parents=True, exist_ok=True)
        reference.write_text(json.dumps(meta, indent=1) + "\n")
        return [Row("benchmarks", "", "reference", "", f"{len(ours)} ratios", "", f"written to {reference}", True)]
    if not reference.exists():
        return [Row("benchmarks", "", "reference", "none", "", "", "no benchmark reference (run check --benchmarks "
                    "BENCH.json --update)", True)]
    try:
        meta = json.loads(reference.read_text())
        ref = {k: v["samples"] for k, v in meta["ratios"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{reference}: not a benchmark reference ({type(e).__name__}); remake it with check "
                        "--benchmarks BENCH.json --update") from None
    same_cpu, ref_cpu = made_on_this_cpu(meta.get("provenance"))

    def limit(key: str) -> tuple[float | None, str]:
        """The bound for a ratio (None: not judged here) and what the table says about it."""
        if ours[key].get("unlike"):
            if same_cpu:
                return UNLIKE_WORK_BOUND, "; unlike work"
            return None, f"unlike work, compared only on the reference's CPU design ({ref_cpu})"
        return (BOUND, "") if same_cpu else (FOREIGN_CPU_BOUND, f"; reference made on another CPU ({ref_cpu})")

    for _ in range(RERUNS if project else 0):
        undecided = {k.split(" :: ")[0] for k in ref if k in ours and limit(k)[0] is not None
                     and _row(k, ours[k]["samples"], ref[k], ours[k]["value"], False, *limit(k)) is None}
        if not undecided:
            break
        for key, more in _rerun(undecided, project).items():
            if key in ours:
                ours[key]["samples"] += more["samples"]
    rows = []
    for key, samples in ref.items():
        if key not in ours:
            test, name = key.split(" :: ")
            # on another CPU design a kernel build the reference had may not exist here: not a failure
            foreign = not same_cpu
            why_missing = "not measured on this CPU (the reference's was another)" if foreign else \
                "MISSING (benchmark not run or renamed; update the reference)"
            rows.append(Row("benchmarks", test.split("::")[-1], name, f"{statistics.median(samples):.3f}",
                            "not measured", "", why_missing, foreign))
            continue
        bound, why = limit(key)
        if bound is None:
            test, name = key.split(" :: ")
            rows.append(Row("benchmarks", test.split("::")[-1], name, f"{statistics.median(samples):.3f}",
                            f"{statistics.median(ours[key]['samples']):.3f} (n={len(ours[key]['samples'])})", "",
                            f"not judged: {why}", True))
            continue
        rows.append(_row(key, ours[key]["samples"], samples, ours[key]["value"], True, bound, why))
    rows += [Row("benchmarks", k.split(" :: ")[0].split("::")[-1], k.split(" :: ")[1], "none", f"{v['value']:.3f}", "",
                 "no reference for this ratio", True) for k, v in ours.items() if k not in ref]
    return rows
