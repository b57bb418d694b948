"""The papers' published numbers (``baselines/*.csv``): reading them, and turning a row into the
number a table compares with ours.

A row has ``id, paper, table, dataset, model, method, w_bits, a_bits, g_bits, metric, value,
plusminus, unit, source, confidence, note`` and optionally ``n`` (how many runs the paper's value
and ± summarise) and ``selection`` (how the paper picked the epoch it reports: ``best_val``, the
default, is the test error at the best validation epoch; ``best_test`` the best test figure over
the epochs; ``last`` the last epoch's). A row whose metric is an error or an accuracy in % or as a
fraction is compared with our figure picked the same way; any other row (a loss, a speed-up, a
qualitative finding) is shown as context, never compared.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.errors import UserError
from suite.paths import baselines_dir

REQUIRED = {"id", "value", "plusminus", "unit", "table", "source", "confidence", "paper"}
# How the paper picked its epoch -> our summary figure picked the same way
SELECTIONS = {"best_val": "test_error_at_best_val", "best_test": "min_test_error", "last": "final_test_error"}
SELECTION_NOTES = {"best_val": "", "best_test": "the best test figure over epochs; ours: min test error over epochs",
                   "last": "the last epoch; ours: the last epoch's test error"}
METRIC = SELECTIONS["best_val"]
UNITS = {"%": 1.0, "fraction": 100.0}


def load_baselines(name: str, folder: Path | None = None) -> pd.DataFrame:
    path = (folder or baselines_dir()) / name
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: baselines file not found (named by the spec's 'baselines' key)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise UserError(f"{path}: not a readable CSV file ({type(e).__name__}: {str(e)[:200]})") from None
    if missing := REQUIRED - set(df.columns):
        raise UserError(f"{path}: missing columns {', '.join(sorted(missing))}")
    if df["id"].duplicated().any():
        raise UserError(f"{path}: id {df['id'][df['id'].duplicated()].iloc[0]!r} appears twice")
    return df.set_index("id")


def _kind(metric: str) -> str | None:
    """'error' or 'accuracy' for the metrics a test error can be compared with; None otherwise."""
    words = metric.lower().replace("-", "_").split("_")
    if "acc" in words or "accuracy" in words or any(w.endswith("acc") for w in words):
        return "accuracy"
    if "error" in words:
        return "error"
    return None


def comparable(baseline: pd.Series) -> tuple[str, float, float | None, str] | None:
    """(our summary key, the paper's value as a test error in %, its ± in points, a note) for a
    row we can compare with; None for context rows (a loss, a runtime multiple, a top-5 figure,
    a cell the paper left empty)."""
    metric, unit = baseline.get("metric", "test_error") or "test_error", baseline.get("unit", "%")
    kind, scale = _kind(metric), UNITS.get(unit)
    if kind is None or scale is None or "top5" in metric.lower():
        return None
    try:
        value = float(baseline["value"]) * scale
        pm = float(baseline["plusminus"]) * scale if baseline["plusminus"] else None
    except ValueError:
        return None
    selection = baseline.get("selection") or "best_val"
    if selection not in SELECTIONS:
        raise UserError(f"baseline {baseline.name!r}: selection {selection!r} is not one of {', '.join(SELECTIONS)}")
    error = 100.0 - value if kind == "accuracy" else value
    as_printed = f"{baseline['value']}{'' if unit == 'fraction' else unit} {metric.replace('_', ' ')}"
    shown = "; ".join(filter(None, [as_printed if kind == "accuracy" or unit != "%" else "",
                                    SELECTION_NOTES[selection]]))
    return SELECTIONS[selection], round(error, 6), pm, shown


def paper_runs(baseline: pd.Series) -> int | None:
    """How many runs the paper's value and ± summarise, where the baselines file says."""
    try:
        return int(baseline.get("n") or 0) or None
    except ValueError:
        return None


def in_paper_unit(error: float, baseline: pd.Series) -> str:
    """Our test error (%) written in the unit of the paper's cell (accuracy %, accuracy fraction or error)."""
    if _kind(baseline.get("metric", "test_error")) != "accuracy":
        return f"{error:.2f}"
    return f"{1 - error / 100:.3f}" if baseline.get("unit") == "fraction" else f"{100 - error:.2f}"


def context_rows(baselines: pd.DataFrame, linked: set, dataset: str) -> list[str]:
    """Rows of the baselines file no variant names, for the table's dataset (or for none)."""
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    out = []
    for bid, b in baselines.iterrows():
        if bid in linked or (b.get("dataset") and norm(b["dataset"]) != norm(dataset)):
            continue
        value = b["value"] + (f" ± {b['plusminus']}" if b["plusminus"] else "")
        out.append(f"{bid}: {b.get('method', '')}{', ' + b['model'] if b.get('model') else ''}: "
                   f"{b.get('metric', '')} = {value} {b['unit']} ({b['paper']}; {b['table']}; confidence "
                   f"{confidence(b)}" + (f"; note: {b['note']}" if b.get("note") else "") + ")")
    return out


def confidence(b: pd.Series) -> str:
    """The transcription's confidence, a low one marked."""
    return b["confidence"] + (" ⚠" if "low" in b["confidence"] else "")


def paper_errors(resolved: dict, folder: Path | None = None) -> dict[str, float]:
    """variant -> the paper's test error in % (for reference lines in the plots), where it has one."""
    try:
        baselines = load_baselines(resolved["baselines"], folder)
    except UserError:
        return {}
    out = {}
    for v in resolved["variants"]:
        bid = v.get("baseline")
        if bid and bid in baselines.index and (compare := comparable(baselines.loc[bid])):
            out[v["name"]] = compare[1]
    return out
