"""The paper's layout for a two-axis grid spec (DoReFa-Net's Table 1): every cell shows the paper's
value, ours where a run exists, "diverged" where it diverged, and the row's context columns."""

from suite.report import load_baselines
from suite.report.grid import grid_layout


def cell(bits, model):
    return {"name": f"{bits}.{model}", "grid": {"bits": bits, "model": model},
            "baseline": f"dorefa-svhn-{bits}-{model}-test_acc_max_over_200_epochs"}


def record(variant, status, min_err, run_id="20261122T000000Z-aaaa"):
    return {"variant": variant, "status": status, "run_id": run_id, "spec": {"config_hash": "h"},
            "summary": {"min_test_error": min_err} if min_err is not None else {}}


def test_layout_has_every_row_and_column_with_paper_values_and_ours():
    baselines = load_baselines("dorefa.csv")
    cells = [cell(b, m) for b in ("W1A1G2", "W32A32G32") for m in ("A", "B", "C", "D")]
    records = [record("W1A1G2.A", "completed", 10.0), record("W1A1G2.B", "diverged", None)]
    lines = grid_layout(records, cells, baselines)
    text = "\n".join(lines)
    table = [line for line in lines[2].splitlines() if line.startswith("| W")]
    assert len(table) == 2  # both rows, run or not
    header = lines[2].splitlines()[0]
    for col in ("bits", "training complexity", "inference complexity", "storage relative size", "A", "D"):
        assert col in header
    w1 = table[0]
    assert "0.934 / 0.900" in w1  # paper 0.934; ours 1 - 10% = 0.900 (max accuracy = min error)
    assert "0.924 / diverged" in w1
    assert "0.910 / –" in w1  # not run here: the paper's value alone
    assert "| 3 " in w1 or "| 3  " in w1  # DoReFa's training complexity for 1-1-2
    assert "0.975 / –" in table[1]  # the float row, model A
    assert "test_acc_max_over_200_epochs (fraction)" in text


def test_no_layout_for_specs_without_a_two_axis_grid():
    assert grid_layout([], [{"name": "float", "grid": {}}], None) == []
    one_axis = [{"name": "a", "grid": {"bits": "a"}, "baseline": None}]
    assert grid_layout([], one_axis, None) == []
