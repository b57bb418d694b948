"""Every spec's smoke profile runs end to end through the CLI: records written, table made."""

import json

import pytest

from suite.cli import main
from suite.paths import reproductions_dir

SPECS = sorted(p.stem for p in reproductions_dir().glob("*.toml"))


@pytest.mark.parametrize("name", SPECS)
def test_smoke_profile_end_to_end(name, results, capsys):
    assert main(["run", name, "--profile", "smoke", "--quiet", "--device", "cpu"]) == 0
    records = sorted((results / "records" / name / "smoke").glob("*.json"))
    from suite.spec import load_spec

    spec = load_spec(reproductions_dir() / f"{name}.toml", "smoke")
    assert len(records) == len(spec.variants) * len(spec.seeds)
    if spec.study is not None:  # a study: no epochs, its own table (details: tests/test_studies.py)
        assert all(json.loads(p.read_text())["status"] == "completed" for p in records)
        table = (results / f"{name}.smoke.md").read_text()
        assert all((v.label or v.name) in table for v in spec.variants)
        return
    for path in records:
        rec = json.loads(path.read_text())
        assert rec["status"] == "completed"
        assert len(rec["epochs"]) == spec.train.epochs
        e = rec["epochs"][-1]
        assert e["train_seconds"] > 0 and e["peak_rss_mb"] > 0 and 0 <= e["test_error"] <= 100
        assert rec["provenance"]["torch"] and rec["spec"]["config_hash"]
    table = (results / f"{name}.smoke.md").read_text()
    for v in spec.variants:
        assert (v.label or v.name) in table
    assert (results / f"{name}.smoke.png").exists()


def test_rerun_adds_records_and_never_overwrites(results):
    args = ["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--variant", "det",
            "--set", "train.epochs=1"]
    assert main(args) == 0
    assert main(args) == 0
    records = list((results / "records" / "binaryconnect-mnist" / "smoke").glob("*.json"))
    assert len(records) == 2
    table = (results / "binaryconnect-mnist.smoke.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| BinaryConnect deterministic"))
    assert "1" in [c.strip() for c in row.split("|")]  # n counts distinct seeds: the same seed twice is one
    assert "det: 2 records of seed 1; one counts" in table
    assert "train.epochs=1" in table  # overrides are shown


def test_same_seed_same_metrics(results):
    args = ["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--variant", "stoch"]
    assert main(args) == 0 and main(args) == 0
    a, b = [json.loads(p.read_text()) for p in sorted((results / "records").rglob("*.json"))]
    keys = ("train_loss", "val_error", "test_error")
    assert [[e[k] for k in keys] for e in a["epochs"]] == [[e[k] for k in keys] for e in b["epochs"]]


def test_summary_command_reports_32x_for_binary_weights(capsys):
    assert main(["summary", "binaryconnect-mnist", "--variant", "det"]) == 0
    out = capsys.readouterr().out
    assert "quantized layers' weights 32.0x less" in out and "binary-weight" in out


def test_summary_builds_each_variants_own_model(capsys):
    # dorefa-svhn's cells differ by model (the paper's models A and D): each summary is its own model's
    assert main(["summary", "dorefa-svhn", "--variant", "W1A1G32.A", "--variant", "W1A1G32.D"]) == 0
    totals = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| **total**")]
    assert len(totals) == 2 and totals[0] != totals[1]
