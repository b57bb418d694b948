"""Runs that survive: SIGKILL mid-epoch then resume gives the uninterrupted metrics; a record
killed while being written never corrupts a report; a diverging run is recorded and the others
go on."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.records import read_records
from suite.report import report

ROOT = Path(__file__).resolve().parent.parent
# Epochs of about a second on the embedded MNIST subset, so a kill lands inside one.
SLOW_SMOKE = ["run", "binaryconnect-mnist", "--profile", "smoke", "--variant", "stoch", "--quiet", "--no-report",
              "--set", "data.source=embedded", "--set", "data.train_size=6000", "--set", "data.val_size=1000",
              "--set", "model.hidden=[1024, 1024]", "--set", "train.epochs=3"]


def _suite(args, results: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, SUITE_RESULTS_DIR=str(results), OMP_NUM_THREADS="2")
    return subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").rglob("*.json"))]


def _metrics(rec: dict) -> list:
    return [(e["epoch"], e["train_loss"], e["val_error"], e["test_error"]) for e in rec["epochs"]]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _suite(SLOW_SMOKE, killed)
    deadline = time.time() + 600  # generous: a loaded machine's first epoch may be slow
    while True:  # wait for the first epoch's checkpoint and record
        recs = _records(killed) if (killed / "records").exists() else []
        if recs and len(recs[0]["epochs"]) >= 1:
            break
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no epoch recorded within 600 s: the run is stuck, not killed"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (rec,) = _records(killed)
    assert rec["status"] == "interrupted" and len(rec["epochs"]) in (1, 2)
    assert list((killed / "checkpoints").rglob("*.pt"))

    resumed = _suite(SLOW_SMOKE, killed)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    baseline = _suite(SLOW_SMOKE, clean)
    out, err = baseline.communicate(timeout=300)
    assert baseline.returncode == 0, err

    (a,) = _records(killed)
    (b,) = _records(clean)
    assert a["status"] == b["status"] == "completed"
    assert a["resumed_at_epochs"] and a["run_id"] == rec["run_id"]  # the same run, continued
    assert _metrics(a) == _metrics(b)  # bit-identical on the CPU with the same seed
    assert not list((killed / "checkpoints").rglob("*.pt"))  # removed once complete


WRITER = """
import sys
from pathlib import Path
from suite.records import record_path, write_record
out = Path(sys.argv[1])
big = ["x" * 1000] * 4000  # about 4 MB per record: a write takes long enough to be cut
i = 0
while True:
    spec = {"name": "s", "profile": "p", "scaled_down": True, "config_hash": "c",
            "resolved": {"title": "t", "baselines": "none", "variants": []}}
    rec = {"schema": 1, "run_id": f"r{i:06d}", "status": "interrupted", "spec": spec, "variant": "det",
           "seed": i, "epochs": [], "summary": {}, "provenance": {}, "padding": big}
    write_record(record_path(out, "s", "p", "det", i, f"r{i:06d}"), rec)
    i += 1
"""


def test_killing_a_record_write_never_leaves_a_partial_record(tmp_path):
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    records, problems = read_records(tmp_path)
    assert records and not problems
    assert all(len(r["padding"]) == 4000 for r in records)


def test_report_skips_a_truncated_record(tmp_path, results):
    from suite.cli import main

    assert main(["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--variant", "det"]) == 0
    (path,) = (results / "records").rglob("*.json")
    cut = path.with_name("zz-cut.json")
    cut.write_text(path.read_text()[: len(path.read_text()) // 2])  # what a non-atomic writer would leave
    (table,) = report(results, "binaryconnect-mnist")
    assert "Skipped unreadable record" in table.read_text() and "zz-cut.json" in table.read_text()


def test_diverging_run_is_recorded_and_the_others_go_on(results):
    from suite.cli import main

    code = main(["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--set", "train.optimizer=sgd",
                 "--set", "train.lr_start=1e6", "--set", "train.lr_end=1e6", "--set", "train.epochs=3"])
    assert code == 0  # divergence is a finding, not a crash
    recs = _records(results)
    assert len(recs) == 3  # every variant ran
    float_run = next(r for r in recs if r["variant"] == "float")
    assert float_run["status"] == "diverged" and float_run["diverged_at_epoch"] >= 1
    assert "not finite" in float_run["error"] or "max_loss" in float_run["error"]
    table = (results / "binaryconnect-mnist.smoke.md").read_text()
    assert "**diverged**" in table


def test_loss_bound_ends_a_run(results):
    from suite.cli import main

    assert main(["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--variant", "det",
                 "--set", "train.max_loss=1e-9"]) == 0
    (rec,) = _records(results)
    assert rec["status"] == "diverged" and rec["diverged_at_epoch"] == 1 and "max_loss" in rec["error"]


def test_resume_flag_skips_runs_without_checkpoint(results, capsys):
    from suite.cli import main

    assert main(["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert not (results / "records").exists()
