"""The verdict's uncertainty: means compared, each side's spread of single runs over its own
number of runs (sigma = sqrt(s_paper^2 / n_paper + s_ours^2 / n_ours)), the paper's n from the
baselines file's optional `n` column, and the rule stated under the table."""

import math
import shutil
from pathlib import Path

import pytest
from test_records_report import _record  # the hand-made records of that file

from suite.records import record_path, write_record
from suite.report import report, verdict
from suite.report.table import RULE

ROOT_BASELINES = Path(__file__).resolve().parent.parent / "baselines"


def test_the_rule_by_hand():
    # ours 1.45 ± 0.05 over 6 seeds, paper 1.29 ± 0.08
    as_mean_uncertainty = 2 * math.sqrt(0.08**2 / 1 + 0.05**2 / 6)  # 0.165: the ± taken as the mean's
    as_spread_of_6_runs = 2 * math.sqrt(0.08**2 / 6 + 0.05**2 / 6)  # 0.077: the ± a spread over 6 runs
    assert as_spread_of_6_runs < 0.16 < as_mean_uncertainty
    assert verdict(1.45, 0.05, 6, 1.29, 0.08, False).startswith("within the paper's spread (2σ)")
    assert verdict(1.45, 0.05, 6, 1.29, 0.08, False, paper_n=6) == "outside (worse than paper, > 2σ)"
    assert verdict(1.13, 0.05, 6, 1.29, 0.08, False, paper_n=6) == "outside (better than paper, > 2σ)"
    assert verdict(1.30, 0.10, 3, 1.29, 0.08, False, paper_n=6).startswith("within")  # 0.01 <= 2 x 0.066
    assert verdict(1.30, None, 1, 1.29, 0.08, False, paper_n=6).startswith("within")  # one seed: no spread of ours
    assert verdict(11.0, None, 1, 9.90, None, False, paper_n=6) == "outside (worse than paper, > 10%)"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project whose baselines/binaryconnect.csv says over how many runs the MNIST rows were measured."""
    folder = tmp_path / "project"
    shutil.copytree(ROOT_BASELINES, folder / "baselines")
    csv = folder / "baselines" / "binaryconnect.csv"
    lines = csv.read_text().splitlines()
    lines[0] += ",n"
    lines[1:] = [line + (",6" if line.startswith("bc-mnist-") else ",") for line in lines[1:]]
    csv.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SUITE_ROOT", str(folder))
    out = tmp_path / "results"
    monkeypatch.setenv("SUITE_RESULTS_DIR", str(out))
    return out


def test_the_table_takes_the_papers_n_and_states_the_rule(project):
    for seed, error in enumerate([1.40, 1.45, 1.50, 1.42, 1.48, 1.45], start=1):
        r = _record("det", seed, error, f"r{seed}")
        write_record(record_path(project, "binaryconnect-mnist", "paper", "det", seed, f"r{seed}"), r)
    text = report(project, "binaryconnect-mnist", plots=False)[0].read_text()
    row = next(line for line in text.splitlines() if line.startswith("| det"))
    assert "1.29 ± 0.08, n = 6" in row  # the paper's cell says over how many runs
    assert "outside (worse than paper, > 2σ)" in row  # 1.45 ± 0.035 over 6 seeds vs 1.29 ± 0.08 over 6 runs
    assert f"The {RULE}." in text
