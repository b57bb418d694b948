"""The regression gate (suite/check.py): it fails on real breakage, naming spec and metric, and
passes an unchanged checkout.

End to end: a reference of binaryconnect-mnist's smoke profile (3 seeds) is made once in a
temporary folder, then checked unchanged, with BinaryConnect's straight-through gradient removed,
and with every training epoch's work done twice. The judgement rules (bounds, a busy machine,
stale configurations, benchmark ratios) are also tested on hand-made records, without training.
"""

import copy
import json

import pytest
import torch

import suite.train.backprop as backprop
from suite import check
from suite.check import Attempt, check_spec, compare, config_differences, run_config
from suite.cli import main
from suite.quant import binary

SPEC = "binaryconnect-mnist"
SEEDS = 3
VARIANTS = ["--variant", "float", "--variant", "det"]  # the two deterministic variants: identical reruns


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    check_spec(SPEC, "smoke", root, update=True, seeds=SEEDS, attempts=2)
    return root


def run_check(root, capsys, *extra) -> tuple[int, list[dict], str]:
    rows_json = root.parent / "rows.json"
    code = main(["check", SPEC, "--reference-dir", str(root), *VARIANTS, *extra, "--rows-json", str(rows_json)])
    capsys.readouterr()
    rows = json.loads(rows_json.read_text())
    return code, rows, check.format_rows([check.Row(**r) for r in rows])


def failed(rows) -> list[tuple[str, str, str]]:
    return [(r["spec"], r["variant"], r["metric"]) for r in rows if not r["ok"]]


def test_reference_holds_the_harness_records(reference):
    meta = json.loads((reference / SPEC / "smoke" / "reference.json").read_text())
    records = sorted((reference / SPEC / "smoke" / "records").glob("*.json"))
    assert meta["seeds"] == [1, 2, 3] and meta["threads"] == 1 and meta["calibration_seconds"] > 0
    assert len(records) == 3 * SEEDS  # float, det, stoch x 3 seeds
    assert all(json.loads(p.read_text())["status"] == "completed" for p in records)


def test_unchanged_checkout_passes_with_identical_numbers(reference, capsys):
    code, rows, table = run_check(reference, capsys)
    assert code == 0, table
    accuracy = [r for r in rows if r["metric"] in ("test error %", "final train loss")]
    assert len(accuracy) == 4 and all(r["verdict"] == "ok (identical)" for r in accuracy), table


def test_removed_straight_through_gradient_fails_on_accuracy(reference, capsys, monkeypatch):
    # A real quantizer break: BinaryConnect's backward returns sign's own derivative (zero almost
    # everywhere) instead of passing the gradient through, so the binarized weights never learn.
    monkeypatch.setattr(binary._BinarizeDeterministic, "backward",
                        staticmethod(lambda ctx, grad: torch.zeros_like(grad)))
    code, rows, table = run_check(reference, capsys)
    assert code == 1
    assert (SPEC, "det", "test error %") in failed(rows), table
    assert not [f for f in failed(rows) if f[1] == "float"], table  # float does not binarize: unaffected
    det_error = next(r for r in rows if r["variant"] == "det" and r["metric"] == "test error %")
    assert det_error["verdict"].startswith("OUTSIDE (worse")


def test_twice_the_training_work_fails_on_time(reference, capsys, monkeypatch):
    # Every epoch first trains a throwaway copy of the model and optimizer on the same batches:
    # twice the work, the same numbers (float and det draw no random numbers while training).
    original = backprop.train_epoch

    def twice(model, optimizer, loss_fn, x, y, batches, clip_targets):
        twin_model, twin_opt = copy.deepcopy((model, optimizer))
        from suite.nn import latent_clip_targets

        original(twin_model, twin_opt, loss_fn, x, y, batches, latent_clip_targets(twin_model))
        return original(model, optimizer, loss_fn, x, y, batches, clip_targets)

    monkeypatch.setattr(backprop, "train_epoch", twice)
    code, rows, table = run_check(reference, capsys)
    if code == 0:  # a smoke epoch lasts ~50 ms: one noisy measurement may hide 2x; a second one may not
        code, rows, table = run_check(reference, capsys)
    time_rows = [r for r in rows if r["metric"].startswith("s/epoch")]
    if any(r["verdict"].startswith("not judged") for r in time_rows):
        pytest.skip("the machine was busy with other work, so times were not judged: " + time_rows[0]["verdict"])
    assert code == 1, table
    assert failed(rows) and all(metric == "s/epoch ÷ calibration" for _, _, metric in failed(rows)), table
    assert all(r["verdict"].startswith("SLOWER") for r in time_rows if not r["ok"])


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


def attempt(records, calibration=0.02, load=0.0) -> Attempt:
    return Attempt({"calibration_seconds": calibration, "calibration": check.CALIBRATION, "other_load": load}, records)


REFERENCE = attempt([record(seed=s, error=e) for s, e in [(1, 19.0), (2, 20.0), (3, 21.0)]])  # std 1.0


def verdicts(rows) -> dict[str, str]:
    return {r.metric: r.verdict for r in rows}


def test_accuracy_bound_is_three_reference_sigmas():
    inside = compare("s", REFERENCE, [attempt([record(seed=s, error=22.9) for s in (1, 2, 3)])])
    outside = compare("s", REFERENCE, [attempt([record(seed=s, error=23.1) for s in (1, 2, 3)])])
    better = compare("s", REFERENCE, [attempt([record(seed=s, error=16.9) for s in (1, 2, 3)])])
    assert verdicts(inside)["test error %"] == "ok (+2.9)"
    assert verdicts(outside)["test error %"].startswith("OUTSIDE (worse")
    assert verdicts(better)["test error %"].startswith("OUTSIDE (better")  # a silent improvement is a change too
    floor = compare("s", attempt([record(error=20.0)]), [attempt([record(error=20.9)])])  # one seed: the floor
    assert verdicts(floor)["test error %"] == "ok (+0.9)"


def test_time_is_judged_only_on_a_quiet_machine():
    slow = [record(seed=s, error=e, seconds=(0.09,)) for s, e in [(1, 19.0), (2, 20.0), (3, 21.0)]]
    assert verdicts(compare("s", REFERENCE, [attempt(slow)]))["s/epoch ÷ calibration"] == "SLOWER (2.25x > 1.5x)"
    busy = verdicts(compare("s", REFERENCE, [attempt(slow, load=1.2)]))["s/epoch ÷ calibration"]
    assert busy == "not judged: machine busy (other processes used 1.2 CPUs)"
    busy_reference = attempt(REFERENCE.records, load=0.9)
    assert verdicts(compare("s", busy_reference, [attempt(slow)]))["s/epoch ÷ calibration"].startswith("not judged")
    # a slower machine is a slower calibration too: the ratio is what counts
    assert verdicts(compare("s", REFERENCE, [attempt(slow, calibration=0.04)]))["s/epoch ÷ calibration"] == \
        "ok (1.12x)"
    # the best of several attempts counts (a blip in one is not a regression)
    retried = [attempt(slow), attempt([record(seed=1, seconds=(0.045,))])]
    assert verdicts(compare("s", REFERENCE, retried))["s/epoch ÷ calibration"] == "ok (1.12x)"
    # a reference timed against another calibration workload (an older suite's) is not a unit for ours
    old = Attempt({"calibration_seconds": 0.02, "other_load": 0.0}, REFERENCE.records)
    assert verdicts(compare("s", old, [attempt(slow)]))["s/epoch ÷ calibration"].startswith(
        "not judged: the reference was calibrated with another workload")


def test_memory_status_and_missing_variants():
    ours = [record(seed=s, error=e, rss=1100.0) for s, e in [(1, 19.0), (2, 20.0), (3, 21.0)]]
    ours[0]["status"] = "diverged"
    rows = compare("s", REFERENCE, [attempt(ours + [record(variant="new")])])
    v = verdicts([r for r in rows if r.variant == "det"])
    assert v["peak RSS MiB"] == "MORE MEMORY (1.57x > 1.5x)" and v["status"] == "RUN DIVERGED"
    new = next(r for r in rows if r.variant == "new")
    assert new.ok and new.verdict.startswith("no reference for this variant")
    not_run = compare("s", REFERENCE, [attempt([record(variant="float")])])
    assert [r.verdict.startswith("NOT RUN") for r in not_run if r.variant == "det"] == [True]


def test_stale_reference_names_the_changed_setting():
    ref, ours = run_config(record()), run_config(record(epochs=3))
    assert config_differences(ref, ours) == ["train.epochs: 2 -> 3"]
    rows = compare("s", attempt([record()]), [attempt([record(epochs=3)])])
    assert "STALE REFERENCE: train.epochs: 2 -> 3" in verdicts(rows)["config"]
    # an option added since the reference was made, left at its default, changes nothing
    ours["variant.clip_weights"], ours["train.max_loss"] = None, None
    ours["variant.weight_quantizer"] = "none"
    assert config_differences(ref, {**ours, "train.epochs": 2}) == []


def test_study_summary_numbers_are_compared():
    def study(seed, cosine, seconds=1.0):
        return record(seed=seed, seconds=()) | {"summary": {"cosine": {"2": cosine, "8": 0.99}, "seconds": seconds}}

    ref = attempt([study(1, 0.80), study(2, 0.80)])
    (row,) = compare("s", ref, [attempt([study(1, 0.80, seconds=9.0), study(2, 0.80)])])
    assert row.ok and row.verdict == "ok (identical)" and row.metric == "study summary (2 numbers)"  # timing aside
    (row,) = compare("s", ref, [attempt([study(1, 0.70), study(2, 0.70)])])  # 0.10 off; the bound is 5% = 0.04
    assert not row.ok and row.verdict == "OUTSIDE (cosine.2: -0.1)"


def test_benchmark_ratios_against_their_reference(tmp_path):
    def bench_json(ratio):
        path = tmp_path / f"bench{ratio}.json"
        path.write_text(json.dumps({"benchmarks": [
            {"fullname": "tests/test_benchmarks_layers.py::test_linear_step_vs_float",
             "extra_info": {"binaryconnect_over_float": ratio, "float_ms_per_step": 9.0}}]}))
        return path

    reference = tmp_path / "benchmarks.json"
    assert check.check_benchmarks(bench_json(1.1), reference, update=True)[0].ok
    assert json.loads(reference.read_text())["ratios"] == {
        "tests/test_benchmarks_layers.py::test_linear_step_vs_float :: binaryconnect_over_float": 1.1}
    (row,) = check.check_benchmarks(bench_json(1.6), reference)
    assert row.ok and row.verdict == "ok (1.45x)"
    (row,) = check.check_benchmarks(bench_json(1.7), reference)
    assert not row.ok and row.variant == "test_linear_step_vs_float" and row.metric == "binaryconnect_over_float"
    # a quantized layer never costs less than its float twin: a reference ratio below 1 is noise
    check.check_benchmarks(bench_json(0.8), reference, update=True)
    (row,) = check.check_benchmarks(bench_json(1.45), reference)
    assert row.ok and row.bound.startswith("≤ 1.500")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    (row,) = check.check_benchmarks(empty, reference)
    assert not row.ok and row.verdict.startswith("MISSING")
