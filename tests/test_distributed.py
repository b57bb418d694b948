"""Scaling out: torchrun / DDP on the CPU (gloo, 2 ranks), a rank killed mid-run, the parallel
pool of cells (--workers) and `plan`.

Equality tolerance (torchrun vs one process, same seed and global batch, no BatchNorm): the
arithmetic differs only in the order of float32 sums (each rank averages its half of the batch,
then gloo averages the halves), about 1e-7 relative per step. Over the smoke profile's 40 Adam
steps we allow 1e-4 relative on the mean epoch loss and 0.3 points (3 of 1000 images) on the
errors; measured here: identical errors, losses within 2e-7. Stochastic BinaryConnect and the
forward gradient are held to the same bound: every rank draws the same noise and directions.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from suite.cli import main
from suite.errors import UserError
from suite.run import distributed
from suite.run.parallel import Cell, format_results, run_pool, usable_cores

ROOT = Path(__file__).resolve().parent.parent
LOSS_RTOL, ERROR_ATOL = 1e-4, 0.3
TIMEOUT_MINUTES = 2.0  # the process-group timeout of the torchrun tests
# No BatchNorm (per-rank statistics would differ from one process's; SyncBatchNorm is GPU-only).
# det trains by forward gradient, so that method runs under torchrun too.
SMOKE = ["binaryconnect-mnist", "--profile", "smoke", "--quiet", "--device", "cpu", "--set", "data.source=embedded",
         "--set", "model.batchnorm=false"]
VARIANTS = ["--set", "variants.det.method=forward_gradient"]


def _torchrun(args: list[str], results: Path, crash_rank_at: str | None = None) -> subprocess.CompletedProcess:
    """`python -m suite ARGS` on 2 gloo ranks; with crash_rank_at = "R:E", rank R exits abruptly when
    epoch E starts, as a crashed rank would (tests/crash_rank.py)."""
    env = dict(os.environ, SUITE_RESULTS_DIR=str(results), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               SUITE_DIST_TIMEOUT_MINUTES=str(TIMEOUT_MINUTES))
    program = ["-m", "suite"] if crash_rank_at is None else [str(Path(__file__).with_name("crash_rank.py")),
                                                               crash_rank_at]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *program, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _records(results: Path) -> dict[str, dict]:
    return {r["variant"]: r for r in (json.loads(p.read_text()) for p in (results / "records").rglob("*.json"))}


def _assert_same_training(a: dict, b: dict) -> None:
    assert len(a["epochs"]) == len(b["epochs"])
    for x, y in zip(a["epochs"], b["epochs"], strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=LOSS_RTOL)
        assert x["val_error"] == pytest.approx(y["val_error"], abs=ERROR_ATOL)
        assert x["test_error"] == pytest.approx(y["test_error"], abs=ERROR_ATOL)


@pytest.mark.slow
def test_torchrun_two_ranks_gives_complete_records_matching_one_process(tmp_path, monkeypatch):
    ddp = _torchrun(["run", *SMOKE, *VARIANTS, "--no-report"], tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    monkeypatch.setenv("SUITE_RESULTS_DIR", str(tmp_path / "single"))
    monkeypatch.chdir(ROOT)
    assert main(["run", *SMOKE, *VARIANTS, "--no-report"]) == 0
    ranks, single = _records(tmp_path / "ddp"), _records(tmp_path / "single")
    assert sorted(ranks) == sorted(single) == ["det", "float", "stoch"]
    for name, rec in ranks.items():
        assert rec["status"] == "completed" and rec["summary"]["epochs_run"] == 2
        assert rec["distributed"]["world_size"] == 2 and rec["distributed"]["backend"] == "gloo"
        # DDP's gradient all-reduce and deterministic clipping keep every rank's weights equal.
        assert rec["distributed"]["max_weight_difference"] == 0.0
        assert all(e["train_seconds"] > 0 and e["peak_rss_mb"] > 0 for e in rec["epochs"])
        assert single[name]["distributed"] == {"world_size": 1, "backend": None}
        _assert_same_training(rec, single[name])
    det = next(v for v in ranks["det"]["spec"]["resolved"]["variants"] if v["name"] == "det")
    assert det["method"] == "forward_gradient"


@pytest.mark.slow
def test_killing_a_rank_stops_the_run_and_a_rerun_resumes(tmp_path, monkeypatch):
    args = ["run", *SMOKE, "--variant", "stoch", "--set", "train.epochs=3", "--no-report"]
    start = time.monotonic()
    killed = _torchrun(args, tmp_path / "ddp", crash_rank_at="1:2")
    took = time.monotonic() - start
    assert killed.returncode != 0
    assert took < TIMEOUT_MINUTES * 60  # torchrun tears the other rank down: no hang until the timeout
    out = killed.stdout + killed.stderr
    assert "rank 1: exiting at the start of epoch 2" in out and "Root Cause" in out and "exitcode  : 3" in out
    (rec,) = _records(tmp_path / "ddp").values()
    assert rec["status"] in ("interrupted", "failed") and len(rec["epochs"]) == 1
    assert list((tmp_path / "ddp" / "checkpoints").rglob("*.pt"))  # epoch 1's, written before epoch 2 began

    resumed = _torchrun(args, tmp_path / "ddp")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (done,) = _records(tmp_path / "ddp").values()
    assert done["run_id"] == rec["run_id"] and done["status"] == "completed"
    assert done["resumed_at_epochs"] == [1] and done["distributed"]["max_weight_difference"] == 0.0
    assert not list((tmp_path / "ddp" / "checkpoints").rglob("*.pt"))

    monkeypatch.setenv("SUITE_RESULTS_DIR", str(tmp_path / "single"))
    monkeypatch.chdir(ROOT)
    assert main(args) == 0
    _assert_same_training(done, _records(tmp_path / "single")["stoch"])


GRID_SPEC = """
name = "grid-smoke"
title = "a 2 x 2 grid (quantizer x width) of small MNIST runs"
paper = "none (a test grid)"
baselines = "binaryconnect.csv"
[data]
dataset = "mnist"
train_size = 600
val_size = 200
test_size = 200
source = "embedded"
[model]
name = "mlp"
hidden = [32]
[train]
optimizer = "adam"
lr_start = 0.003
lr_schedule = "constant"
batch_size = 100
epochs = 1
seeds = [1, 2]
[grid.quant.float]
[grid.quant.det]
weight_quantizer = "binaryconnect"
clip_weights = 1.0
[grid.width.narrow]
[grid.width.wide]
model = { hidden = [64, 64] }
[profiles.smoke]
"""


@pytest.mark.slow
def test_grid_of_eight_cells_runs_with_two_workers(results, tmp_path):
    spec = tmp_path / "grid-smoke.toml"
    spec.write_text(GRID_SPEC)
    assert main(["run", str(spec), "--profile", "smoke", "--quiet", "--workers", "2"]) == 0  # 2 x 2 cells x 2 seeds
    recs = [json.loads(p.read_text()) for p in (results / "records").rglob("*.json")]
    cells = [(q + "." + w, s) for q in ("det", "float") for w in ("narrow", "wide") for s in (1, 2)]
    assert sorted((r["variant"], r["seed"]) for r in recs) == cells
    threads = max(1, usable_cores() // 2)  # the cores shared by the 2 workers
    assert all(r["status"] == "completed" and r["provenance"]["torch_threads"] == threads for r in recs)
    width = {r["variant"]: r["model"]["parameters"] for r in recs}
    assert width["float.wide"] > width["float.narrow"]  # each cell built its own model
    assert (results / "grid-smoke.smoke.md").exists()  # the table, once, after the cells
    assert len(list((results / "logs").rglob("*.log"))) == 8


def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    # Cheap cells (no torch import): `list` succeeds, an unknown option fails with argparse's exit 2.
    cells = [Cell("a", 1, ("list",)), Cell("b", 2, ("list", "--no-such-option")), Cell("c", 3, ("list",))]
    results = run_pool(cells, 2, tmp_path, "spec", "smoke", progress=False)
    assert [r.returncode for r in results] == [0, 2, 0]
    summary = format_results(results)
    assert "2 of 3 cell(s) ok, 1 FAILED" in summary and "unrecognized arguments: --no-such-option" in summary
    assert str(results[1].log) in summary


def test_plan_prints_one_run_command_per_cell(capsys):
    assert main(["plan", "binaryconnect-mnist", "--profile", "smoke", "--seeds", "2",
                 "--set", "model.hidden=[32, 32]", "--results-dir", "/scratch/r"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # 3 variants x 2 seeds
    argv = shlex.split(lines[3])
    assert argv[:5] == ["python", "-m", "suite", "run", "binaryconnect-mnist"]
    assert argv[argv.index("--set") + 1] == "model.hidden=[32, 32]"
    assert argv[argv.index("--variant") + 1] == "det" and argv[argv.index("--seed") + 1] == "2"
    assert "--results-dir" in argv and "--no-report" in argv

    assert main(["plan", "binaryconnect-mnist", "--profile", "smoke", "--variant", "stoch", "--format", "json"]) == 0
    (cell,) = json.loads(capsys.readouterr().out)
    assert cell["variant"] == "stoch" and cell["seed"] == 1 and shlex.split(cell["command"]) == cell["argv"]


def test_workers_refused_under_torchrun_and_below_one(monkeypatch, capsys):
    assert main(["run", "binaryconnect-mnist", "--profile", "smoke", "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost"}.items():
        monkeypatch.setenv(key, value)
    assert main(["run", "binaryconnect-mnist", "--profile", "smoke", "--workers", "2"]) == 2
    assert "--workers under torchrun" in capsys.readouterr().err


def test_single_process_helpers_are_a_world_of_one():
    assert not distributed.active() and distributed.world() == 1 and distributed.is_main()
    batches = list(torch.arange(12).split(4))
    assert distributed.shard_batches(batches) is batches
    assert distributed.max_over_ranks({"t": 1.5, "cuda": None}) == {"t": 1.5, "cuda": None}
    assert distributed.describe() == {"world_size": 1, "backend": None}


def test_each_rank_takes_its_slice_of_every_global_batch(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "world", lambda: 2)
    batches = list(torch.randperm(12, generator=torch.Generator().manual_seed(0)).split(4))
    shards = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards.append(distributed.shard_batches(batches))
    for whole, a, b in zip(batches, *shards, strict=True):
        assert len(a) == len(b) == 2 and torch.equal(torch.cat([a, b]), whole)
    with pytest.raises(UserError, match="x.toml: train.batch_size = 5: not divisible by the 2 ranks"):
        distributed.check_batch_size(5, "x.toml")
    with pytest.raises(UserError, match="SyncBatchNorm runs on GPUs only"):
        distributed.sync_batchnorm(torch.nn.BatchNorm1d(3), torch.device("cpu"), "x.toml")


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SUITE_DIST_TIMEOUT_MINUTES", "2.5")
    assert distributed.timeout().total_seconds() == 150
    monkeypatch.setenv("SUITE_DIST_TIMEOUT_MINUTES", "soon")
    with pytest.raises(UserError, match="SUITE_DIST_TIMEOUT_MINUTES"):
        distributed.timeout()
