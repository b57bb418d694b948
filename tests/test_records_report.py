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
