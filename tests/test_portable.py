"""Records are portable: a checkout moved to another folder (or another machine) still tabulates
its records as the same configuration, and continues an interrupted run there."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from suite.records import config_hash, read_records, record_config
from suite.spec.schema import defaults

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--variant", "det", "--seed", "1",
        "--set", "data.source=embedded", "--set", "train.epochs=3", "--device", "cpu"]


def _checkout(folder: Path) -> Path:
    """The project's specs and baselines in `folder` (the package is the installed one)."""
    for part in ("reproductions", "baselines"):
        shutil.copytree(ROOT / part, folder / part)
    return folder


def _suite(folder: Path, *args: str, crash_at_epoch: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUITE_ROOT=str(folder), OMP_NUM_THREADS="1")
    env.pop("SUITE_RESULTS_DIR", None)
    program = ["-m", "suite"] if crash_at_epoch is None else [str(ROOT / "tests" / "crash_rank.py"),
                                                                f"0:{crash_at_epoch}"]
    return subprocess.run([sys.executable, *program, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_moved_checkout_tabulates_its_records_and_resumes_its_runs(tmp_path):
    first = _checkout(tmp_path / "first")
    killed = _suite(first, *ARGS, crash_at_epoch=2)  # the run stops as a killed one would, after epoch 1
    assert killed.returncode == 3, killed.stderr[-2000:]
    moved = tmp_path / "elsewhere" / "second"
    shutil.copytree(first, moved)
    shutil.rmtree(first)  # nothing of the first place is left to lean on

    (rec,) = [json.loads(p.read_text()) for p in (moved / "results" / "records").rglob("*.json")]
    assert rec["status"] == "interrupted" and len(rec["epochs"]) == 1
    assert str(tmp_path) not in json.dumps(rec)  # no machine path in the record
    assert rec["spec"]["path"] == "reproductions/binaryconnect-mnist.toml" and rec["data"]["root"] == "package"
    assert rec["spec"]["config_hash"] == config_hash(record_config(rec, defaults()))

    resumed = _suite(moved, *ARGS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records, problems = read_records(moved / "results")
    assert not problems and len(records) == 1
    (done,) = records
    assert done["run_id"] == rec["run_id"] and done["status"] == "completed" and done["resumed_at_epochs"] == [1]
    table = (moved / "results" / "binaryconnect-mnist.smoke.md").read_text()
    assert "older configurations" not in table and str(tmp_path) not in table
