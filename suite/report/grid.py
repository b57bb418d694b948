"""A two-axis grid spec's results in the paper's own layout (rows: the first axis, columns: the
second), read from the records alone: every cell of the grid is in the records' resolved spec."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pandas as pd

from suite.report.baselines import METRIC, comparable, in_paper_unit


def grid_layout(records: list[dict], cells: list[dict], baselines: pd.DataFrame | None) -> list[str]:
    """`records`: those a table uses (`suite.records.for_table`); `cells`: every cell of the grid
    (the resolved spec's `grid_cells`, run or not). A two-axis grid spec's table in the paper's own
    layout: one row per point of the first axis,
    one column per point of the second, each cell "paper / ours" in the paper's metric and unit;
    "diverged" or "failed" where our run did, "–" where it has not run. The paper's values are
    always shown (every cell of the spec's grid, run or not). Row context columns: the baseline
    rows of the same table and bit-widths whose model is "all" (DoReFa's complexity columns)."""
    cells = [c for c in cells if c.get("grid")]
    if not cells or len(cells[0]["grid"]) != 2:
        return []
    row_axis, col_axis = list(cells[0]["grid"])
    rows_order = list(dict.fromkeys(c["grid"][row_axis] for c in cells))
    cols_order = list(dict.fromkeys(c["grid"][col_axis] for c in cells))
    by_variant = defaultdict(list)
    for r in records:
        by_variant[r["variant"]].append(r)
    metric_note = ""
    table = []
    for rp in rows_order:
        row: dict = {row_axis: rp}
        for cp in cols_order:
            cell = next((c for c in cells if c["grid"] == {row_axis: rp, col_axis: cp}), None)
            b = baselines.loc[cell["baseline"]] if (cell and baselines is not None
                                                     and cell.get("baseline") in baselines.index) else None
            if b is not None:
                for _, other in baselines.iterrows():  # the row's context columns
                    if (other.get("model") == "all" and other.get("table") == b.get("table")
                            and all(other.get(k) == b.get(k) for k in ("w_bits", "a_bits", "g_bits"))):
                        row.setdefault(other["metric"].replace("_", " "), other["value"])
            paper = b["value"] if b is not None and b["value"] else "–"
            ours = "–"
            chosen = by_variant.get(cell["name"], []) if cell else []
            done = [r for r in chosen if r["status"] == "completed"]
            compare = comparable(b) if b is not None else None
            if done:
                key = compare[0] if compare else METRIC
                errs = [r["summary"][key] for r in done if r["summary"].get(key) is not None]
                if errs:  # in the paper's unit where it has a cell, else our test error in %
                    mean = statistics.fmean(errs)
                    ours = (in_paper_unit(mean, b) if compare else f"{mean:.2f}% error") + (
                        f" (n={len(errs)})" if len(errs) > 1 else "")
                    if compare:
                        metric_note = f"{b['metric']} ({b['unit']})"
            elif chosen:
                ours = ", ".join(sorted({r["status"] for r in chosen if r["status"] != "completed"})) or "–"
            row[cp] = f"{paper} / {ours}"
        table.append(row)
    df = pd.DataFrame(table).fillna("–")
    context = [c for c in df.columns if c not in (row_axis, *cols_order)]
    df = df[[row_axis, *context, *cols_order]]
    return [f"In the paper's layout (rows: {row_axis}; columns: {col_axis}; each cell: paper / ours"
            + (f", {metric_note}" if metric_note else "") + "; – = not run here):", "",
            df.to_markdown(index=False, disable_numparse=True), ""]
