"""The regression gate (suite/check/): it fails on real breakage, naming spec and metric, and
passes an unchanged checkout.

End to end: a reference of binaryconnect-mnist's smoke profile (3 seeds) is made once in a
temporary folder, then checked unchanged and with BinaryConnect's straight-through gradient
removed, on accuracy (times are not measured in these: unit tests assert behaviour, and the time
rule is tested deterministically on given samples below). The judgement rules (bounds, stale
configurations, time and benchmark samples) are tested on hand-made records, without training.
"""

import json
import random

import pytest
import torch

from suite import check
from suite.check import bench, check_spec, stats
from suite.check.compare import Attempt, compare, config_differences, time_row
from suite.check.timing import CALIBRATION
from suite.cli import main
from suite.errors import UserError
from suite.quant import binary
from suite.records import record_config

SPEC = "binaryconnect-mnist"
SEEDS = 3
VARIANTS = ["float", "det"]  # the two deterministic variants: identical reruns


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    check_spec(SPEC, "smoke", root, update=True, seeds=SEEDS, attempts=2)
    return root


def run_check(root, capsys) -> tuple[int, list[dict], str]:
    rows = check_spec(SPEC, "smoke", root, variants=VARIANTS, timing=False)
    capsys.readouterr()
    return (1 if check.failing(rows, strict=False) else 0), [r.__dict__ for r in rows], check.format_rows(rows)


def failed(rows) -> list[tuple[str, str, str]]:
    return [(r["spec"], r["variant"], r["metric"]) for r in rows if not r["ok"]]


def test_reference_holds_the_harness_records_and_time_samples(reference):
    meta = json.loads((reference / SPEC / "smoke" / "reference.json").read_text())
    records = sorted((reference / SPEC / "smoke" / "records").glob("*.json"))
    assert meta["seeds"] == [1, 2, 3] and meta["threads"] == 1 and meta["calibration"] == CALIBRATION
    assert len(records) == 3 * SEEDS  # float, det, stoch x 3 seeds
    assert all(json.loads(p.read_text())["status"] == "completed" for p in records)
    for variant in ("float", "det", "stoch"):  # a fixed unit of work, sampled round by round
        timing = meta["timing"][variant]
        assert timing["unit_epochs"] >= 1 and len(timing["samples"]) >= stats.MIN_SAMPLES
        assert all(s > 0 for s in timing["samples"])


def test_unchanged_checkout_passes_with_identical_numbers(reference, capsys):
    code, rows, table = run_check(reference, capsys)
    assert code == 0, table
    accuracy = [r for r in rows if r["metric"] in ("test error %", "final train loss")]
    assert len(accuracy) == 4 and all(r["verdict"] == "ok (identical)" for r in accuracy), table


def test_removed_straight_through_gradient_fails_on_accuracy(reference, capsys, monkeypatch):
    # A real quantizer break: BinaryConnect's backward returns sign's own derivative (zero almost
    # everywhere) instead of passing the gradient through, so the binarized weights never learn.
    monkeypatch.setattr(binary._BinarizeDeterministic, "backward",
                        staticmethod(lambda ctx, grad: (torch.zeros_like(grad),)
                                     + (None,) * (len(ctx.needs_input_grad) - 1)))  # no gradient for h
    code, rows, table = run_check(reference, capsys)
    assert code == 1
    assert (SPEC, "det", "test error %") in failed(rows), table
    assert not [f for f in failed(rows) if f[1] == "float"], table  # float does not binarize: unaffected
    det_error = next(r for r in rows if r["variant"] == "det" and r["metric"] == "test error %")
    assert det_error["verdict"].startswith("OUTSIDE (worse")


def test_no_reference_passes_unless_strict(tmp_path, capsys):
    assert main(["check", SPEC, "--reference-dir", str(tmp_path)]) == 0
    assert "no reference (run check binaryconnect-mnist --update)" in capsys.readouterr().out
    assert main(["check", SPEC, "--reference-dir", str(tmp_path), "--strict"]) == 1
    assert main(["check", "--all", "--reference-dir", str(tmp_path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "check FAILED" in out and SPEC in out


def test_bad_input_is_a_user_error(tmp_path, capsys):
    assert main(["check", "--reference-dir", str(tmp_path)]) == 2  # neither a spec, --all nor --benchmarks
    assert main(["check", SPEC, "--update", "--variant", "det", "--reference-dir", str(tmp_path)]) == 2
    (tmp_path / "bench.json").write_text("{not json")
    assert main(["check", "--benchmarks", str(tmp_path / "bench.json")]) == 2
    assert "bench.json" in capsys.readouterr().err


# ---------------------------------------------------------------- the rules, on hand-made records


def record(variant="det", seed=1, error=20.0, loss=0.5, seconds=(0.05, 0.04), rss=700.0, status="completed",
           epochs=2) -> dict:
    return {"variant": variant, "seed": seed, "status": status,
            "spec": {"resolved": {"data": {"train_size": 2000}, "train": {"epochs": epochs, "seeds": [seed]},
                                  "model": {"name": "mlp"}, "variants": [{"name": variant, "label": "x"}]}},
            "data": {"source": "full", "n_train": 2000},
            "epochs": [{"train_loss": loss, "train_seconds": s} for s in seconds],
            "summary": {"test_error_at_best_val": error, "peak_rss_mb": rss}}


def attempt(records, timing=None, load=0.0) -> Attempt:
    return Attempt({"calibration": CALIBRATION, "other_load": load}, records, timing or {})


REFERENCE = attempt([record(seed=s, error=e) for s, e in [(1, 19.0), (2, 20.0), (3, 21.0)]])  # std 1.0


def verdicts(rows) -> dict[str, str]:
    return {r.metric: r.verdict for r in rows}


def test_accuracy_bound_is_three_reference_sigmas():
    inside = compare("s", REFERENCE, attempt([record(seed=s, error=22.9) for s in (1, 2, 3)]))
    outside = compare("s", REFERENCE, attempt([record(seed=s, error=23.1) for s in (1, 2, 3)]))
    better = compare("s", REFERENCE, attempt([record(seed=s, error=16.9) for s in (1, 2, 3)]))
    assert verdicts(inside)["test error %"] == "ok (+2.9)"
    assert verdicts(outside)["test error %"].startswith("OUTSIDE (worse")
    assert verdicts(better)["test error %"].startswith("OUTSIDE (better")  # a silent improvement is a change too
    floor = compare("s", attempt([record(error=20.0)]), attempt([record(error=20.9)]))  # one seed: the floor
    assert verdicts(floor)["test error %"] == "ok (+0.9)"


def samples(center: float, n: int = 12, spread: float = 0.04, seed: int = 0) -> list[float]:
    """Time samples as a quiet machine gives them: `center` with a few percent of noise."""
    rng = random.Random(seed)
    return [center * (1 + spread * rng.uniform(-1, 1)) for _ in range(n)]


TIMED_REFERENCE = attempt(REFERENCE.records, {"det": samples(10.0)})


def ratio_in(verdict: str) -> float:
    """The ratio a time or benchmark verdict states: "SLOWER (1.99x, 95% CI ...)" -> 1.99."""
    return float(verdict.split("(", 1)[1].split("x", 1)[0])


def time_verdict(ours: list[float], **kw) -> str:
    return verdicts(compare("s", TIMED_REFERENCE, attempt(REFERENCE.records, {"det": ours}, **kw)))[
        "training work ÷ calibration"]


def test_twice_the_training_work_fails_on_time():
    # Deterministic: the rule on given samples. Twice the work is twice the unit's time against the
    # calibration: far above the 1.5x bound with 95% confidence, whatever the noise of a quiet machine.
    verdict = time_verdict(samples(20.0, seed=1))
    assert verdict.startswith("SLOWER") and ratio_in(verdict) == pytest.approx(2.0, abs=0.05)
    assert time_verdict(samples(20.0, spread=0.3, seed=2)).startswith("SLOWER")


def test_unchanged_speed_passes_and_noise_is_not_a_failure():
    verdict = time_verdict(samples(10.0, seed=3))
    assert verdict.startswith("ok") and ratio_in(verdict) == pytest.approx(1.0, abs=0.03)
    assert time_verdict(samples(11.0, spread=0.2, seed=4)).startswith("ok")  # 10% slower: inside the bound
    # Samples that cannot tell 1.3x from 1.7x: not judged (and said so), never a silent pass or a failure
    noisy = [10.0, 25.0, 12.0, 22.0, 13.0, 21.0]
    assert time_verdict(noisy).startswith("not judged: too noisy to decide")
    row = time_row("s", "det", TIMED_REFERENCE, attempt(REFERENCE.records, {"det": noisy}), final=False)
    assert row is None  # undecided before the last attempt: the check measures more rounds


def test_time_needs_a_reference_with_samples_of_this_workload():
    assert time_verdict(samples(20.0), load=1.5).startswith("SLOWER")  # a busy machine does not excuse 2x
    no_samples = compare("s", REFERENCE, attempt(REFERENCE.records, {"det": samples(20.0)}))
    assert verdicts(no_samples)["training work ÷ calibration"].startswith("not judged: the reference has no time")
    old = Attempt({"calibration": "train-loop-1"}, REFERENCE.records, {"det": samples(10.0)})
    assert verdicts(compare("s", old, attempt(REFERENCE.records, {"det": samples(20.0)})))[
        "training work ÷ calibration"].startswith("not judged")
    assert "training work ÷ calibration" not in verdicts(compare("s", TIMED_REFERENCE, attempt(REFERENCE.records)))


def test_decision_rule_by_hand():
    # ratio of medians 20/10 = 2; every resample's ratio lies in [19/10.5, 21/9.5]: decided both ways
    j = stats.judge([19.0, 20.0, 21.0], [9.5, 10.0, 10.5], bound=1.5)
    assert j.decision == "slower" and j.ratio == 2.0 and 19 / 10.5 <= j.low <= j.high <= 21 / 9.5
    assert stats.judge([10.0, 10.2, 9.9], [9.5, 10.0, 10.5], bound=1.5).decision == "ok"
    assert stats.judge([20.0, 20.0], [10.0, 10.0, 10.0], bound=1.5).decision == "undecided"  # too few samples
    assert stats.judge(samples(20.0), samples(10.0), 1.5) == stats.judge(samples(20.0), samples(10.0), 1.5)


def test_memory_status_and_missing_variants():
    ours = [record(seed=s, error=e, rss=1100.0) for s, e in [(1, 19.0), (2, 20.0), (3, 21.0)]]
    ours[0]["status"] = "diverged"
    rows = compare("s", REFERENCE, attempt(ours + [record(variant="new")]))
    v = verdicts([r for r in rows if r.variant == "det"])
    assert v["peak RSS MiB"] == "MORE MEMORY (1.57x > 1.5x)" and v["status"] == "RUN DIVERGED"
    new = next(r for r in rows if r.variant == "new")
    assert new.ok and new.verdict.startswith("no reference for this variant")
    not_run = compare("s", REFERENCE, attempt([record(variant="float")]))
    assert [r.verdict.startswith("NOT RUN") for r in not_run if r.variant == "det"] == [True]


def test_stale_reference_names_the_changed_setting():
    ref, ours = record_config(record()), record_config(record(epochs=3))
    assert config_differences(ref, ours) == ["train.epochs: 2 -> 3"]
    rows = compare("s", attempt([record()]), attempt([record(epochs=3)]))
    assert "STALE REFERENCE: train.epochs: 2 -> 3" in verdicts(rows)["config"]
    # an option added since the reference was made, left at its default, changes nothing
    ours["variant.clip_weights"], ours["train.max_loss"] = None, None
    ours["variant.weight_quantizer"] = "none"
    assert config_differences(ref, {**ours, "train.epochs": 2}) == []


def test_study_summary_numbers_are_compared():
    def study(seed, cosine, seconds=1.0):
        return record(seed=seed, seconds=()) | {"summary": {"cosine": {"2": cosine, "8": 0.99}, "seconds": seconds}}

    ref = attempt([study(1, 0.80), study(2, 0.80)])
    (row,) = compare("s", ref, attempt([study(1, 0.80, seconds=9.0), study(2, 0.80)]))
    assert row.ok and row.verdict == "ok (identical)" and row.metric == "study summary (2 numbers)"  # timing aside
    (row,) = compare("s", ref, attempt([study(1, 0.70), study(2, 0.70)]))  # 0.10 off; the bound is 5% = 0.04
    assert not row.ok and row.verdict == "OUTSIDE (cosine.2: -0.1)"


def test_benchmark_ratios_against_their_reference(tmp_path):
    def bench_json(ratio, spread=0.03, seed=0):
        # a quantized layer and its float twin, timed round by round: per-round ratios near `ratio`
        path = tmp_path / f"bench{ratio}-{spread}-{seed}.json"
        floats = samples(9.0, 20, 0.05, seed)
        quantized = [f * r for f, r in zip(floats, samples(ratio, 20, spread, seed + 1), strict=True)]
        path.write_text(json.dumps({"benchmarks": [
            {"fullname": "benchmarks/test_layer_speed.py::test_linear_step_vs_float",
             "extra_info": {"samples": {"binaryconnect": quantized, "float": floats},
                            "binaryconnect_over_float": ratio, "float_ms_per_step": 9.0}}]}))
        return path

    reference = tmp_path / "benchmarks.json"
    key = "benchmarks/test_layer_speed.py::test_linear_step_vs_float :: binaryconnect_over_float"
    assert bench.check_benchmarks(bench_json(1.1), reference, update=True)[0].ok
    assert len(json.loads(reference.read_text())["ratios"][key]["samples"]) == 20
    (row,) = bench.check_benchmarks(bench_json(1.12, seed=5), reference)
    assert row.ok and row.verdict.startswith("ok") and ratio_in(row.verdict) == pytest.approx(1.02, abs=0.03)
    (row,) = bench.check_benchmarks(bench_json(1.1 * 1.3, seed=6), reference)  # the layer 1.3x slower
    assert not row.ok and row.variant == "test_linear_step_vs_float" and row.metric == "binaryconnect_over_float"
    assert row.verdict.startswith("SLOWER") and ratio_in(row.verdict) == pytest.approx(1.3, abs=0.03)
    (row,) = bench.check_benchmarks(bench_json(1.1 * 1.2, spread=0.6, seed=7), reference)  # cannot decide
    assert row.ok and row.verdict.startswith("not judged: too noisy")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    (row,) = bench.check_benchmarks(empty, reference)
    assert not row.ok and row.verdict.startswith("MISSING")
    with pytest.raises(UserError, match="needs its candidates' samples"):
        bench.check_benchmarks(empty, reference, update=True)

    # a reference made on another CPU model: only a gross slowdown is judged, and the row says why
    meta = json.loads(reference.read_text())
    meta["provenance"]["device_name"] = meta["provenance"]["cpu"] = "Another CPU"
    reference.write_text(json.dumps(meta))
    (row,) = bench.check_benchmarks(bench_json(1.1 * 1.3, seed=6), reference)
    assert row.ok and "another CPU (Another CPU)" in row.bound
    (row,) = bench.check_benchmarks(bench_json(1.1 * 2.0, seed=8), reference)
    assert not row.ok and row.verdict.startswith("SLOWER") and f"{bench.FOREIGN_CPU_BOUND:g}x" in row.bound
    (row,) = bench.check_benchmarks(empty, reference)  # e.g. a kernel build this CPU lacks
    assert row.ok and row.verdict.startswith("not measured on this CPU")


def test_unlike_work_is_judged_against_a_wide_bound_and_only_on_the_same_cpu_design(tmp_path):
    # a popcount kernel over float BLAS moves with the machine's balance, not only its speed
    def bench_json(ratio, seed=0):
        path = tmp_path / f"bench{ratio}-{seed}.json"
        floats = samples(2.0, 25, 0.05, seed)
        xnor = [f * r for f, r in zip(floats, samples(ratio, 25, 0.03, seed + 1), strict=True)]
        path.write_text(json.dumps({"benchmarks": [
            {"fullname": "benchmarks/test_lowbit_kernels.py::test_xnor_matmul_1024[1]",
             "extra_info": {"samples": {"xnor": xnor, "float": floats}, "xnor_over_float": ratio,
                            "unlike_work": ["xnor_over_float"]}}]}))
        return path

    reference = tmp_path / "benchmarks.json"
    bench.check_benchmarks(bench_json(0.05), reference, update=True)
    (row,) = bench.check_benchmarks(bench_json(0.05 * 2.9, seed=3), reference)  # another host's balance
    assert row.ok and "unlike work" in row.bound and f"{bench.UNLIKE_WORK_BOUND:g}x" in row.bound
    (row,) = bench.check_benchmarks(bench_json(0.05 * 6.0, seed=4), reference)  # the kernel lost its vector code
    assert not row.ok and row.verdict.startswith("SLOWER")
    meta = json.loads(reference.read_text())
    meta["provenance"]["cpu"] = "AMD EPYC (family 23, model 49; avx2)"
    reference.write_text(json.dumps(meta))
    (row,) = bench.check_benchmarks(bench_json(0.05 * 6.0, seed=4), reference)
    assert row.ok and row.verdict.startswith("not judged: unlike work") and "family 23" in row.verdict


def test_cpu_design_is_told_by_signature_where_the_model_name_is_shared():
    from suite.run.measure import cpu_model, cpu_signature, made_on_this_cpu

    assert made_on_this_cpu({"device_name": cpu_model(), "cpu": cpu_signature()}) == (True, cpu_signature())
    # a virtual machine names several generations "AMD EPYC": the signature tells them apart
    same_name = {"device_name": cpu_model(), "cpu": f"{cpu_model()} (family 0, model 0; avx2)"}
    assert made_on_this_cpu(same_name)[0] is False
    assert made_on_this_cpu({"device_name": cpu_model()})[0] is True  # an older reference: by name
    assert made_on_this_cpu({"device_name": "Another CPU"}) == (False, "Another CPU")
    assert made_on_this_cpu(None)[0] is True


def test_time_against_another_cpus_reference_judges_only_a_gross_slowdown():
    # the low-bit kernels' builds differ between CPU models: their share of the work moves more
    foreign = Attempt({"calibration": CALIBRATION, "other_load": 0.0, "provenance": {"device_name": "Another CPU"}},
                      REFERENCE.records, {"det": samples(10.0)})
    rows = compare("s", foreign, attempt(REFERENCE.records, {"det": samples(17.0, seed=5)}))
    row = next(r for r in rows if r.metric == "training work ÷ calibration")
    assert row.ok and "another CPU (Another CPU)" in row.bound  # 1.7x: beyond 1.5x, inside 2x
    rows = compare("s", foreign, attempt(REFERENCE.records, {"det": samples(25.0, seed=6)}))
    assert verdicts(rows)["training work ÷ calibration"].startswith("SLOWER")


def test_tensor_memory_is_exact_on_the_same_cpu_design_and_looser_on_another():
    def with_tensor(mb):
        return [record(seed=s) | {"summary": {"test_error_at_best_val": 20.0, "peak_rss_mb": 700.0,
                                              "peak_tensor_mb": mb, "step_tensor_mb": mb / 2}} for s in (1, 2)]

    ref = attempt(with_tensor(10.0))
    assert verdicts(compare("s", ref, attempt(with_tensor(10.6))))["peak tensor MiB"] == "ok (+0.60 MiB)"
    assert verdicts(compare("s", ref, attempt(with_tensor(10.8))))["peak tensor MiB"].startswith("MORE MEMORY")
    # another CPU design: oneDNN's layouts and scratch buffers differ, so only a real growth fails
    foreign = Attempt({"calibration": CALIBRATION, "provenance": {"device_name": "Another CPU", "cpu": "Another CPU"}},
                      with_tensor(10.0), {})
    rows = {r.metric: r for r in compare("s", foreign, attempt(with_tensor(13.0)))}
    assert rows["peak tensor MiB"].ok and "another CPU" in rows["peak tensor MiB"].bound
    rows = {r.metric: r for r in compare("s", foreign, attempt(with_tensor(16.0)))}
    assert not rows["peak tensor MiB"].ok
