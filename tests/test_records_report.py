"""Records are written atomically and never overwritten; tables come only from records."""

import json

import pytest

from suite.errors import UserError
from suite.records import read_records, record_path, write_record
from suite.report import report, verdict


def _record(variant, seed, err, run_id, *, status="completed", config="abc", profile="paper", scaled=False):
    return {
        "schema": 1, "run_id": run_id, "status": status, "started": "", "finished": "",
        "spec": {"name": "binaryconnect-mnist", "path": "x.toml", "profile": profile, "scaled_down": scaled,
                 "config_hash": config + variant,
                 "resolved": {"title": "BC MNIST", "baselines": "binaryconnect.csv", "deviations": [],
                              "overrides": {}, "profile_note": "",
                              "variants": [{"name": "float", "label": "float", "baseline": "bc-mnist-float",
                                            "weight_quantizer": "none"},
                                           {"name": "det", "label": "det", "baseline": "bc-mnist-det",
                                            "weight_quantizer": "binaryconnect"}]}},
        "variant": variant, "seed": seed,
        "data": {"dataset": "mnist", "source": "full", "n_train": 50000, "n_val": 10000, "n_test": 10000,
                 "test_set": "full test set"},
        "model": {"weight_memory_bytes": 1024 * 100, "weight_memory_saving": 31.0},
        "epochs": [{"epoch": 1, "train_loss": 0.5, "val_error": err + 0.1, "test_error": err}],
        "summary": {"epochs_run": 1, "test_error_at_best_val": err,
                    "median_epoch_seconds": 2.0 if variant == "det" else 1.6,
                    "peak_rss_mb": 900.0, "peak_cuda_mb": None},
        "provenance": {"device": "cpu", "device_name": "test cpu", "torch": "2.14.1", "torch_threads": 2,
                       "git_commit": "abc"},
    }


def _cells(text, first):
    row = next(line for line in text.splitlines() if line.startswith(f"| {first}"))
    return [c.strip() for c in row.strip("|").split("|")]


def _write_all(results, recs):
    for r in recs:
        write_record(record_path(results, "binaryconnect-mnist", r["spec"]["profile"], r["variant"], r["seed"],
                                 r["run_id"]), r)


def test_record_is_never_overwritten(tmp_path):
    rec = _record("det", 1, 1.3, "r1")
    path = record_path(tmp_path, "s", "p", "det", 1, "r1")
    write_record(path, rec)
    with pytest.raises(FileExistsError):
        write_record(path, rec)
    assert json.loads(path.read_text())["run_id"] == "r1"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_table_from_records(results):
    _write_all(results, [_record("det", s, e, f"r{s}") for s, e in [(1, 1.20), (2, 1.40), (3, 1.30)]]
               + [_record("float", 1, 1.31, "r4")])
    (table,) = report(results, "binaryconnect-mnist")
    text = table.read_text()
    row = _cells(text, "det")
    assert "1.29 ± 0.08" in row  # the paper's number, from baselines/binaryconnect.csv
    assert "1.30 ± 0.10" in row and "3" in row  # ours: mean ± std, n
    row = " | ".join(row)
    assert "within the paper's spread" in row
    assert "1.25" in row  # x float time: 2.0 / 1.6
    assert "Table 2" in row and "high" in row
    assert (results / "binaryconnect-mnist.paper.png").stat().st_size > 1000


def test_scaled_down_profile_is_not_compared(results):
    _write_all(results, [_record("det", 1, 5.0, "r1", profile="quick", scaled=True)])
    text = report(results, "binaryconnect-mnist")[0].read_text()
    assert "not comparable (scaled down)" in text and "**Scaled down**" in text


def test_corrupt_record_is_named_and_left_out(results):
    _write_all(results, [_record("det", 1, 1.3, "r1"), _record("det", 2, 1.5, "r2")])
    folder = results / "records" / "binaryconnect-mnist" / "paper"
    (folder / "zz-half.json").write_text('{"schema": 1, "run_id": ')
    records, problems = read_records(results)
    assert len(records) == 2 and problems[0][0].name == "zz-half.json"
    text = report(results, "binaryconnect-mnist")[0].read_text()
    assert "zz-half.json" in text and "2" in _cells(text, "det")


def test_failed_runs_and_old_configs_are_not_averaged(results):
    recs = [_record("det", 1, 1.3, "r2"), _record("det", 2, 50.0, "r3", status="diverged"),
            _record("det", 3, 9.9, "r1", config="old")]
    recs[1]["error"] = "training loss nan at epoch 3"
    _write_all(results, recs)
    text = report(results, "binaryconnect-mnist")[0].read_text()
    row = _cells(text, "det")
    assert "1.30" in row and "1" in row
    assert "**diverged**" in text and "1 record(s) of older configurations" in text


@pytest.mark.parametrize("ours,std,n,paper,pm,scaled,expected", [
    (1.30, 0.1, 3, 1.29, 0.08, False, "within"),
    (1.60, 0.05, 6, 1.29, 0.08, False, "outside (worse"),
    (1.00, None, 1, 1.29, 0.08, False, "outside (better"),
    (9.5, None, 1, 9.90, None, False, "within"),
    (1.30, None, 1, 1.29, 0.08, True, "not comparable"),
])
def test_verdict(ours, std, n, paper, pm, scaled, expected):
    assert verdict(ours, std, n, paper, pm, scaled).startswith(expected)


def test_report_without_records_is_a_user_error(results):
    from suite.cli import main

    assert main(["report", "binaryconnect-mnist"]) == 2
    with pytest.raises(UserError):
        raise UserError("x")


# --- reference-variant columns and baselines that are not test errors (forward gradient) -------

def _fg_record(variant, seed, run_id, secs, errors, rss, profile="quick"):
    epochs = [{"epoch": i + 1, "train_loss": 1.0, "val_error": e, "test_error": e, "train_seconds": s,
               "eval_seconds": 0.5, "peak_rss_mb": rss, "peak_cuda_mb": None}
              for i, (s, e) in enumerate(zip(secs, errors, strict=True))]
    return {
        "schema": 1, "run_id": run_id, "status": "completed", "started": "", "finished": "",
        "spec": {"name": "fwdgrad-vs-backprop-mnist", "path": "x.toml", "profile": profile, "scaled_down": True,
                 "config_hash": "h" + variant,
                 "resolved": {"title": "FG vs BP", "baselines": "forward_gradient.csv", "deviations": [],
                              "overrides": {}, "profile_note": "", "reference_variant": "backprop",
                              "train": {"batch_size": 100, "epochs": len(secs)},
                              "variants": [{"name": "backprop", "label": "backprop", "weight_quantizer": "none",
                                            "baseline": "fg-mnist-mlp-runtime-rb"},
                                           {"name": "fg1", "label": "forward gradient", "weight_quantizer": "none",
                                            "baseline": "fg-mnist-mlp-runtime-rf"}]}},
        "variant": variant, "seed": seed,
        "data": {"dataset": "mnist", "source": "full", "n_train": 10000, "n_val": 1000, "n_test": 10000,
                 "test_set": "full test set"},
        "model": {"weight_memory_bytes": 1024, "weight_memory_saving": 1.0},
        "epochs": epochs,
        "summary": {"epochs_run": len(secs), "test_error_at_best_val": min(errors), "final_test_error": errors[-1],
                    "median_epoch_seconds": sorted(secs)[len(secs) // 2], "peak_rss_mb": rss, "peak_cuda_mb": None},
        "provenance": {"device": "cpu", "device_name": "test cpu", "torch": "2.14.1", "torch_threads": 2,
                       "git_commit": "abc"},
    }


def test_reference_variant_columns(results):
    recs = [_fg_record("backprop", 1, "r1", [10.0, 10.0, 10.0], [5.0, 3.0, 2.0], 1000.0),
            _fg_record("fg1", 1, "r2", [12.0, 12.0, 14.0], [60.0, 50.0, 40.0], 900.0)]
    for r in recs:
        write_record(record_path(results, "fwdgrad-vs-backprop-mnist", "quick", r["variant"], 1, r["run_id"]), r)
    text = report(results, "fwdgrad-vs-backprop-mnist")[0].read_text()
    header = _cells(text, "variant")
    assert "× float time" not in header
    assert "test error after 3 epochs (%)" in header and "test error within backprop's training time (%)" in header
    bp, fg = dict(zip(header, _cells(text, "backprop"), strict=True)), dict(zip(header, _cells(text, "forward"),
                                                                               strict=True))
    assert fg["test error after 3 epochs (%)"] == "40.00" and bp["test error after 3 epochs (%)"] == "2.00"
    # backprop trained 30 s: forward gradient's epochs end at 12 s and 24 s, then 38 s
    assert fg["test error within backprop's training time (%)"] == "50.00 (epoch 2)"
    assert bp["test error within backprop's training time (%)"] == "2.00 (epoch 3)"
    assert fg["ms/step (train)"] == "120.0" and bp["ms/step (train)"] == "100.0"  # 100 steps per epoch
    assert fg["× backprop time/step"] == "1.20" and bp["× backprop time/step"] == "1.00"
    assert fg["peak RSS vs backprop"] == "-100 MiB (0.90×)"
    assert "forward gradient: 100 MiB lower (0.90×)" in text
    # the baselines are runtime multiples of a forward pass: context, never a verdict
    assert fg["paper test error (%)"].startswith("context: R_f") and fg["verdict"] == "context only (not a test error)"
    assert fg["ours − paper (pp)"] == "–"
    assert "low ⚠" in fg["paper source, confidence"]
    # rows no variant names are listed as context (the speed-up claim, the replication's test loss)
    assert "fg-claim-speedup" in text and "fg-replication-mnist-mlp-testloss" in text
    assert "localfg-w-cifar10-resnet18" not in text  # another dataset


def test_reference_budget_not_reached():
    from suite.report.table import _error_within

    rec = _fg_record("fg1", 1, "r", [50.0, 50.0], [80.0, 70.0], 1.0)
    assert _error_within(rec, 30.0) is None
    assert _error_within(rec, 100.0)["epoch"] == 2


def test_paper_accuracies_become_errors_and_other_metrics_stay_context():
    import pandas as pd

    from suite.report.baselines import METRIC, comparable

    def row(metric, unit, value, pm="", selection=""):
        return pd.Series({"metric": metric, "unit": unit, "value": value, "plusminus": pm, "selection": selection})

    assert comparable(row("test_error", "%", "1.29", "0.08")) == (METRIC, 1.29, 0.08, "")
    assert comparable(row("test_acc", "%", "86.28"))[:2] == (METRIC, 13.72)
    assert comparable(row("top1_acc", "%", "44.2"))[1] == 55.8
    # DoReFa-Net reports the best test accuracy over its epochs: compared with our best test epoch
    key, err, pm, note = comparable(row("test_acc_max_over_200_epochs", "fraction", "0.934", selection="best_test"))
    assert key == "min_test_error" and abs(err - 6.6) < 1e-9 and "over epochs" in note
    assert comparable(row("test_loss", "CE", "0.5")) is None
    assert comparable(row("top5_acc", "%", "69.2")) is None  # shown as context: we compare top-1
    assert comparable(row("test_acc_max_over_200_epochs", "fraction", "")) is None  # an empty cell


def test_machine_line_names_the_cpu_speed_settings():
    from suite.report.table import speed_settings as _speed_settings

    cpu = {"device": "cpu", "fused_cpu_kernels": "on", "malloc": "glibc 2.36: mmap threshold 32 MiB, ..."}
    assert _speed_settings(cpu) == ", fused CPU kernels on, malloc keeps freed memory"
    assert _speed_settings({"device": "cpu", "fused_cpu_kernels": "off (SUITE_FUSED_KERNELS=0)",
                            "malloc": "default"}) == ", fused CPU kernels off (SUITE_FUSED_KERNELS=0), malloc default"
    assert _speed_settings({"device": "cuda"} | {k: v for k, v in cpu.items() if k != "device"}) == ""
    assert _speed_settings({"device": "cpu"}) == ""  # records from before these were recorded


@pytest.mark.parametrize("det_arithmetic", ["emulated", "packed"])
def test_the_arithmetic_note_names_emulated_and_packed_rows(results, det_arithmetic):
    """Where every quantized row ran emulated the table says why binary is not faster; where a packed
    row stands beside an emulated one, the note names which is which; all packed: no such note."""
    recs = [_record("float", 1, 1.31, "r1"), _record("det", 1, 1.2, "r2")]
    recs[1]["model"]["arithmetic"] = det_arithmetic
    emulated_twin = _record("det-emulated", 1, 1.2, "r3")
    emulated_twin["model"]["arithmetic"] = "emulated"
    for r in recs + [emulated_twin]:
        r["spec"]["resolved"]["variants"].append({"name": "det-emulated", "label": "det, emulated",
                                                  "weight_quantizer": "binaryconnect", "arithmetic": "emulated"})
    _write_all(results, recs)
    text = report(results, "binaryconnect-mnist")[0].read_text()
    assert ("Why binary is not faster here" in text) == (det_arithmetic == "emulated")
    assert "Emulated and packed rows" not in text
    _write_all(results, [emulated_twin])
    text = report(results, "binaryconnect-mnist")[0].read_text()
    both = det_arithmetic == "packed"
    assert ("Emulated and packed rows: “det, emulated” computed on float32" in text) == both
    assert ("“det” ran the products" in text) == both
    assert ("Why binary is not faster here" in text) == (not both)
