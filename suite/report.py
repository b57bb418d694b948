"""Records + baselines -> markdown tables (pandas + tabulate), verdicts and learning-curve plots.

One table per spec and profile, written to ``results/SPEC.PROFILE.md`` with a PNG of the learning
curves beside it. Every number in a table comes from a record; the paper's numbers come from
``baselines/*.csv`` with their source and confidence.

Which records a row uses: those of the variant whose configuration hash equals the newest
record's (so a table never averages runs of different settings); older configurations are
counted in the notes. Failed and diverged runs are counted, never averaged in.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd

from suite import studies
from suite.errors import UserError
from suite.paths import baselines_dir
from suite.records import read_records, write_atomic

METRIC = "test_error_at_best_val"


def load_baselines(name: str, folder: Path | None = None) -> pd.DataFrame:
    path = (folder or baselines_dir()) / name
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: baselines file not found (named by the spec's 'baselines' key)") from None
    required = {"id", "value", "plusminus", "unit", "table", "source", "confidence", "paper"}
    if missing := required - set(df.columns):
        raise UserError(f"{path}: missing columns {', '.join(sorted(missing))}")
    return df.set_index("id")


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def verdict(ours: float, ours_std: float | None, n: int, paper: float | None, paper_pm: float | None,
            scaled_down: bool) -> str:
    """Within the paper's spread: |ours - paper| <= 2 sigma, sigma = sqrt(pm^2 + std^2 / n) with
    the paper's ± as pm; where the paper gives no ±, within 10% of its value (relative)."""
    if paper is None:
        return "no paper number"
    if scaled_down:
        return "not comparable (scaled down)"
    diff = ours - paper
    if paper_pm:
        tol = 2 * math.sqrt(paper_pm**2 + (ours_std or 0.0) ** 2 / n)
        rule = "2σ"
    else:
        tol = 0.1 * abs(paper)
        rule = "10%"
    if abs(diff) <= tol:
        return f"within the paper's spread ({rule})"
    return f"outside ({'better' if diff < 0 else 'worse'} than paper, > {rule})"


def _fmt(x, digits=2, missing="–"):
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


_STORAGE_COLUMNS = {"latent weights (KiB)": "latent_weight_bytes",
                    "all weights + buffers (KiB)": "weight_storage_bytes",
                    "optimizer state (KiB)": "optimizer_state_bytes"}


def _storage_columns(summary: dict, resolved: dict) -> dict:
    """The bytes a run's tensors occupied after training (measured, `suite/storage.py`), in the
    tables of specs that vary the latent-weight precision, for records that have them."""
    if all(v.get("latent_bits", 32) == 32 for v in resolved["variants"]):
        return {}
    return {col: f"{summary[key] / 1024:,.0f}" for col, key in _STORAGE_COLUMNS.items() if key in summary}


def _select(records: list[dict]) -> tuple[list[dict], int]:
    """The records of the newest configuration, and how many older-configuration records exist."""
    newest = max(records, key=lambda r: r["run_id"])
    same = [r for r in records if r["spec"]["config_hash"] == newest["spec"]["config_hash"]]
    return same, len(records) - len(same)


def _speed_settings(p: dict) -> str:
    """The CPU speed settings a run had (records before they were recorded have neither)."""
    if p["device"] != "cpu":
        return ""
    parts = []
    if "fused_cpu_kernels" in p:
        parts.append(f"fused CPU kernels {p['fused_cpu_kernels']}")
    if "malloc" in p:
        parts.append("malloc keeps freed memory" if p["malloc"].startswith("glibc") else f"malloc {p['malloc']}")
    return "".join(f", {x}" for x in parts)


def profile_table(records: list[dict], baselines: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """One row per variant (in the spec's order) and the facts the notes need."""
    latest = max(records, key=lambda r: r["run_id"])
    resolved = latest["spec"]["resolved"]
    by_variant = defaultdict(list)
    for r in records:
        by_variant[r["variant"]].append(r)
    known = [v["name"] for v in resolved["variants"]]
    order = known + sorted(set(by_variant) - set(known))
    variant_info = {v["name"]: v for v in resolved["variants"]}
    rows, facts = [], {"older": 0, "not_completed": [], "data": {}, "provenance": set(), "scaled_down": False,
                       "records": 0, "baselines": [], "linked": set()}
    speeds, runs = {}, {}
    for name in order:
        if name not in by_variant:
            continue
        chosen, older = _select(by_variant[name])
        facts["older"] += older
        done = [r for r in chosen if r["status"] == "completed"]
        facts["not_completed"] += [r for r in chosen if r["status"] != "completed"]
        if not done:
            rows.append({"variant": name, "status": ", ".join(sorted({r['status'] for r in chosen}))})
            continue
        facts["records"] += len(done)
        facts["data"] = done[-1]["data"]
        facts["scaled_down"] = done[-1]["spec"]["scaled_down"]
        for r in done:
            p = r["provenance"]
            facts["provenance"].add(f"{p['device']} ({p['device_name']}), torch {p['torch']}, "
                                    f"{p['torch_threads']} threads{_speed_settings(p)}, commit {p['git_commit']}")
        info = variant_info.get(name, {})
        paper = pm = None
        paper_cell = source = "–"
        bid = info.get("baseline")
        context = False
        key = METRIC
        if bid and baselines is not None and bid in baselines.index:
            b = baselines.loc[bid]
            compare = comparable(b)
            context = compare is None
            if context:  # another metric or unit: shown beside ours, never compared
                pm_text = f" ± {b['plusminus']}" if b["plusminus"] else ""
                paper_cell = f"context: {b['metric']} = {b['value']}{pm_text} {b['unit']}"
            else:
                key, paper, pm, note = compare
                paper_cell = (f"{paper:g}" + (f" ± {pm:g}" if pm else "") + f" ({note})" if note
                              else b["value"] + (f" ± {b['plusminus']}" if b["plusminus"] else ""))
            conf = b["confidence"] + (" ⚠" if "low" in b["confidence"] else "")
            source = f"{b['table']} [{len(facts['baselines']) + 1}], {conf}"
            facts["linked"].add(bid)
            facts["baselines"].append(f"{bid}: {b['paper']}; {b['table']}; source: {b['source']}"
                                      + (f"; note: {b['note']}" if b.get("note") else ""))
        elif bid:
            paper_cell = f"missing baseline {bid!r}"
        errs = [r["summary"].get(key) for r in done]
        errs = [e for e in errs if e is not None]
        mean, std = _mean_std(errs) if errs else (float("nan"), None)
        secs = statistics.fmean(r["summary"]["median_epoch_seconds"] for r in done)
        speeds[name] = (secs, info.get("weight_quantizer", "none"))
        rss = max(r["summary"]["peak_rss_mb"] for r in done)
        cuda = [r["summary"]["peak_cuda_mb"] for r in done if r["summary"].get("peak_cuda_mb") is not None]
        wm = done[-1]["model"]
        epochs = sorted({r["summary"]["epochs_run"] for r in done})
        runs[name] = {"done": done, "secs": secs, "rss": rss, "cuda": max(cuda) if cuda else None,
                      "label": info.get("label") or name}
        rows.append({
            "variant": info.get("label") or name,
            "paper test error (%)": paper_cell,
            "paper source, confidence": source,
            "ours (%)": f"{_fmt(mean)} ± {_fmt(std)}" if std is not None else _fmt(mean),
            "n": len(done),
            **({"ours top-5 (%)": _fmt(statistics.fmean(top5))} if (top5 := [
                r["summary"]["test_error_top5_at_best_val"] for r in done
                if r["summary"].get("test_error_top5_at_best_val") is not None]) else {}),
            "ours − paper (pp)": _fmt(mean - paper, 2) if paper is not None else "–",
            "verdict": "context only (not a test error)" if context else
                       verdict(mean, std, len(done), paper, pm, facts["scaled_down"]),
            "epochs": "/".join(map(str, epochs)),
            "s/epoch (train)": _fmt(secs, 2),
            "× float time": None,
            "peak RSS (MiB)": _fmt(rss, 0),
            **({"peak CUDA (MiB)": _fmt(max(cuda), 0)} if cuda else {}),
            "weight memory": f"{wm['weight_memory_bytes'] / 1024:.0f} KiB"
                             + (f" ({wm['weight_memory_saving']:.1f}× smaller)"
                                if wm["weight_memory_saving"] > 1 else ""),
            **_storage_columns(done[-1]["summary"], resolved),
            "_key": name,
        })
    float_secs = next((s for s, q in speeds.values() if q in ("none", "identity")), None)
    reference = resolved.get("reference_variant")
    for row in rows:
        key = row.get("_key")
        if key in speeds and float_secs:
            row["× float time"] = _fmt(speeds[key][0] / float_secs, 2)
    if reference in runs:
        rows = _reference_columns(rows, runs, reference, resolved, facts)
    for row in rows:
        row.pop("_key", None)
    return pd.DataFrame(rows).fillna("–"), facts


# Paper metrics we compare with, as (our summary key, how the paper's value becomes an error in %,
# what the cell says). Accuracies become errors (100 - acc); DoReFa's "max test accuracy over 200
# epochs" selects on the test set, so it is compared with our minimum test error over epochs.
_COMPARABLE = {
    ("test_error", "%"): (METRIC, lambda v: v, ""),
    ("test_acc", "%"): (METRIC, lambda v: 100 - v, "{v}% accuracy"),
    ("top1_acc", "%"): (METRIC, lambda v: 100 - v, "{v}% top-1 accuracy"),
    ("top1_val_error", "%"): (METRIC, lambda v: v, "top-1 val error"),
    ("test_acc_max_over_200_epochs", "fraction"): (
        "min_test_error", lambda v: 100 * (1 - v),
        "max test accuracy {v} over epochs; ours: min test error over epochs"),
}


def comparable(baseline: pd.Series) -> tuple[str, float, float | None, str] | None:
    """(our summary key, the paper's value as a test error in %, its ± in points, a note) for a
    row we can compare with; None for context rows (a loss, a runtime multiple, a top-5 figure,
    a cell the paper left empty)."""
    rule = _COMPARABLE.get((baseline.get("metric", "test_error"), baseline.get("unit", "%")))
    try:
        value = float(baseline["value"])
    except ValueError:
        return None
    if rule is None:
        return None
    key, to_error, note = rule
    scale = 100.0 if baseline.get("unit") == "fraction" else 1.0
    pm = float(baseline["plusminus"]) * scale if baseline["plusminus"] else None
    return key, round(to_error(value), 6), pm, note.format(v=baseline["value"])


def _error_within(record: dict, budget: float) -> dict | None:
    """The last epoch of a run completed within `budget` seconds of training time (cumulative
    train_seconds, evaluation excluded); None if even the first epoch took longer."""
    spent, last = 0.0, None
    for e in record["epochs"]:
        spent += e["train_seconds"]
        if spent > budget * (1 + 1e-9):
            break
        last = e
    return last


def _reference_columns(rows: list[dict], runs: dict, ref: str, resolved: dict, facts: dict) -> list[dict]:
    """With a spec's ``reference_variant``: test error after the same epochs and within the
    reference's training time, time per step and peak memory relative to the reference. They
    replace the "× float time" column."""
    r0 = runs[ref]
    budget = statistics.fmean(sum(e["train_seconds"] for e in r["epochs"]) for r in r0["done"])
    label = ref
    epochs = {r["summary"]["epochs_run"] for run in runs.values() for r in run["done"]}
    after = f"test error after {epochs.pop()} epochs (%)" if len(epochs) == 1 else "test error, last epoch (%)"
    within = f"test error within {label}'s training time (%)"
    batch = resolved.get("train", {}).get("batch_size")

    def step_ms(run: dict) -> float | None:  # median epoch time over the steps of an epoch
        steps = [r["data"]["n_train"] // batch for r in run["done"] if batch and r["data"].get("n_train")]
        return 1000 * run["secs"] / steps[0] if steps and steps[0] else None

    ref_ms = step_ms(r0)
    memory_notes = []
    out = []
    for row in rows:
        run = runs.get(row.get("_key"))
        if run is None:
            out.append(row)
            continue
        final = [r["summary"]["final_test_error"] for r in run["done"]]
        mean, std = _mean_std(final)
        hits = [_error_within(r, budget) for r in run["done"]]
        if all(h is not None for h in hits):
            reached = sorted({h["epoch"] for h in hits})
            cell = (f"{_fmt(statistics.fmean(h['test_error'] for h in hits))} "
                    f"(epoch {'/'.join(map(str, reached))})")
        else:
            first = min(r["epochs"][0]["train_seconds"] for r in run["done"])
            cell = f"none: epoch 1 took {first:.3g} s > {budget:.3g} s"
        ms = step_ms(run)
        rss_diff = run["rss"] - r0["rss"]
        extra = {after: f"{_fmt(mean)} ± {_fmt(std)}" if std is not None else _fmt(mean),
                 within: cell,
                 "ms/step (train)": _fmt(ms, 1),
                 f"× {label} time/step": _fmt(ms / ref_ms if ms and ref_ms else run["secs"] / r0["secs"], 2),
                 f"peak RSS vs {label}": f"{rss_diff:+.0f} MiB ({run['rss'] / r0['rss']:.2f}×)"}
        if run["cuda"] is not None and r0["cuda"]:
            extra[f"peak CUDA vs {label}"] = f"{run['cuda'] - r0['cuda']:+.0f} MiB ({run['cuda'] / r0['cuda']:.2f}×)"
        if row.get("_key") != ref:
            on_cuda = run["cuda"] is not None and bool(r0["cuda"])
            ours, theirs = (run["cuda"], r0["cuda"]) if on_cuda else (run["rss"], r0["rss"])
            memory_notes.append(f"{run['label']}: {abs(ours - theirs):.0f} MiB "
                                f"{'lower' if ours < theirs else 'higher'} ({ours / theirs:.2f}×)")
        new = {}
        for k, v in row.items():
            if k == "× float time":
                continue
            new[k] = v
            if k == "s/epoch (train)":
                new.update(extra)
        out.append(new)
    facts["reference"] = {"name": ref, "label": r0["label"], "budget": budget, "memory": memory_notes,
                          "cuda": r0["cuda"] is not None}
    return out


def _context_rows(baselines: pd.DataFrame, linked: set, dataset: str) -> list[str]:
    """Rows of the baselines file no variant names, for the table's dataset (or for none)."""
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    out = []
    for bid, b in baselines.iterrows():
        if bid in linked or (b.get("dataset") and norm(b["dataset"]) != norm(dataset)):
            continue
        conf = b["confidence"] + (" ⚠" if "low" in b["confidence"] else "")
        value = b["value"] + (f" ± {b['plusminus']}" if b["plusminus"] else "")
        out.append(f"{bid}: {b.get('method', '')}{', ' + b['model'] if b.get('model') else ''}: "
                   f"{b.get('metric', '')} = {value} {b['unit']} ({b['paper']}; {b['table']}; confidence {conf}"
                   + (f"; note: {b['note']}" if b.get("note") else "") + ")")
    return out


def _in_paper_unit(error: float, baseline: pd.Series) -> str:
    """Our test error (%) written in the unit of the paper's cell (accuracy %, accuracy fraction or error)."""
    metric, unit = baseline.get("metric", "test_error"), baseline.get("unit", "%")
    if "acc" not in metric:
        return f"{error:.2f}"
    return f"{1 - error / 100:.3f}" if unit == "fraction" else f"{100 - error:.2f}"


def grid_layout(records: list[dict], cells: list[dict], baselines: pd.DataFrame | None) -> list[str]:
    """A two-axis grid spec's table in the paper's own layout: one row per point of the first axis,
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
            chosen, _ = _select(by_variant[cell["name"]]) if cell and by_variant.get(cell["name"]) else ([], 0)
            done = [r for r in chosen if r["status"] == "completed"]
            compare = comparable(b) if b is not None else None
            if done:
                key = compare[0] if compare else METRIC
                errs = [r["summary"][key] for r in done if r["summary"].get(key) is not None]
                if errs:  # in the paper's unit where it has a cell, else our test error in %
                    mean = statistics.fmean(errs)
                    ours = (_in_paper_unit(mean, b) if compare else f"{mean:.2f}% error") + (
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


def _reference_notes(ref: dict) -> list[str]:
    label = ref["label"]
    where = ("CUDA max_memory_allocated per epoch" if ref["cuda"] else
             "the process's resident-set high-water mark per epoch, which also holds the in-memory data and "
             "the PyTorch runtime, the same for every variant: the difference is the training step's")
    notes = [f"Columns against {ref['name']} ({label}, the spec's reference_variant): a variant's test error "
             f"within {ref['name']}'s training time is the one after its last epoch completed within "
             f"{ref['budget']:.3g} s of training (evaluation excluded; mean over {ref['name']}'s seeds); "
             "ms/step is the median epoch's training time over its steps; time/step and peak memory are "
             f"ratios to {ref['name']}'s."]
    if ref["memory"]:
        notes.append(f"Peak memory against {ref['name']} (measured: {where}): " + "; ".join(ref["memory"]) + ".")
    return notes


def _data_line(d: dict) -> str:
    label = {"full": "complete dataset files", "embedded subset": "EMBEDDED SUBSET (a small real sample "
             "shipped with the suite; not comparable with the paper)",
             "synthetic": "SYNTHETIC DATA (generated class patterns in the dataset's file layout: a test of the "
             "pipeline, not a result)"}.get(d.get("source"), d.get("source"))
    reader = f"; read by {d['reader']}" if d.get("reader") else ""
    return (f"{d.get('dataset', '?').upper()} ({label}): train {d.get('n_train')} / validation "
            f"{d.get('n_val')} images; test set: {d.get('test_set')} ({d.get('n_test')} images){reader}")


def render_profile(spec_name: str, profile: str, records: list[dict], problems: list, plot: str | None,
                   baselines_folder: Path | None = None, grid_cells: list[dict] | None = None) -> str:
    """One profile's page; `grid_cells` (every cell of a grid spec, run or not) fills the paper's layout."""
    latest = max(records, key=lambda r: r["run_id"])
    resolved = latest["spec"]["resolved"]
    try:
        baselines = load_baselines(resolved["baselines"], baselines_folder)
    except UserError as e:
        baselines, missing = None, str(e)
    else:
        missing = None
    table, facts = profile_table(records, baselines)
    out = [f"# {resolved['title']} — profile `{profile}`", "",
           "Generated by `python -m suite report` from run records; do not edit by hand.", ""]
    if facts["scaled_down"]:
        note = re.sub(r"^scaled down:\s*", "", resolved.get("profile_note") or "not the paper protocol")
        out += [f"**Scaled down** ({note}): "
                "numbers are not comparable with the paper's; the verdict says so.", ""]
    out += [f"Metric: test error (%) at the epoch of best validation error, mean ± std over n seeds. "
            f"Data: {_data_line(facts['data'])}.", ""]
    out.append(table.to_markdown(index=False, disable_numparse=True))
    out.append("")
    out += grid_layout(records, grid_cells or resolved["variants"], baselines)
    if plot:
        out += [f"![learning curves]({plot})", ""]
    notes = []
    if "× float time" in table and (table["× float time"] != "–").any():
        notes.append("Why binary is not faster: the quantized layers binarize their weights and then run "
                     "the same float32 matrix multiplications as the float model (no binary kernels exist "
                     "in PyTorch), so a binary epoch costs the float work plus the binarization; "
                     "× float time is measured in these runs.")
    if facts.get("reference"):
        notes += _reference_notes(facts["reference"])
    if resolved.get("deviations"):
        notes.append("Deviations of the spec from the paper's protocol: " + "; ".join(resolved["deviations"]) + ".")
    if latest["spec"]["resolved"].get("overrides"):
        notes.append("Command-line overrides: " + ", ".join(f"{k}={v}" for k, v in resolved["overrides"].items()) + ".")
    if facts["older"]:
        notes.append(f"{facts['older']} record(s) of older configurations of this profile are not in the table.")
    for r in facts["not_completed"]:
        done = (f"{len(r['epochs'])}/{r['spec']['resolved']['train']['epochs']} epochs"
                if "train" in r["spec"]["resolved"] else f"{len(r['epochs'])} epochs")
        why = r.get("error") or ("not finished: rerun the same command to continue it" if r["status"] == "interrupted"
                                 else "")
        notes.append(f"Run {r['variant']} seed {r['seed']}: **{r['status']}** after {done} ({why}); "
                     f"not in the averages — {r['_path']}.")
    for path, why in problems:
        notes.append(f"Skipped unreadable record {path}: {why}.")
    if missing:
        notes.append(f"Paper numbers unavailable: {missing}.")
    notes.append("Ran on: " + "; ".join(sorted(facts["provenance"])) + ".")
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    if facts["baselines"]:
        out += ["Paper numbers:", ""] + [f"{i}. {b}" for i, b in enumerate(facts["baselines"], 1)] + [""]
    if baselines is not None:
        context = _context_rows(baselines, facts["linked"], facts["data"].get("dataset", ""))
        if context:
            out += [f"Other published numbers in {resolved['baselines']} for this dataset (no variant is compared "
                    "with them; context only):", ""] + [f"- {c}" for c in context] + [""]
    return "\n".join(out)


def _paper_values(records: list[dict]) -> dict[str, float]:
    """variant -> the paper's test error (for reference lines in the plots), where it has one."""
    resolved = max(records, key=lambda r: r["run_id"])["spec"]["resolved"]
    try:
        baselines = load_baselines(resolved["baselines"])
    except UserError:
        return {}
    out = {}
    for v in resolved["variants"]:
        bid = v.get("baseline")
        if bid and bid in baselines.index and baselines.loc[bid].get("metric", "test_error") == "test_error":
            try:
                out[v["name"]] = float(baselines.loc[bid]["value"])
            except ValueError:
                pass
    return out


def plot_curves(records: list[dict], path: Path) -> None:
    """Training loss, validation and test error per epoch, mean over the seeds of each variant;
    the paper's test error as a dashed line of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    paper = _paper_values(records)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    by_variant = defaultdict(list)
    for r in records:
        if r["status"] == "completed":
            by_variant[r["variant"]].append(r)
    for name, runs in by_variant.items():
        runs, _ = _select(runs)
        n = min(len(r["epochs"]) for r in runs)
        if n == 0:
            continue
        x = list(range(1, n + 1))
        for ax, key in zip(axes, ("train_loss", "val_error", "test_error"), strict=True):
            ys = [statistics.fmean(r["epochs"][i][key] for r in runs) for i in range(n)
                  if all(r["epochs"][i][key] is not None for r in runs)]
            if ys:
                line, = ax.plot(x[: len(ys)], ys, label=f"{name} (n={len(runs)})", marker="." if n < 30 else None)
                if key == "test_error" and name in paper:
                    ax.axhline(paper[name], color=line.get_color(), linestyle="--", linewidth=1)
    for ax, title in zip(axes, ("training loss", "validation error (%)", "test error (%), dashed: paper"),
                         strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
    for ax in axes[1:]:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0].legend()
    profile = records[0]["spec"]["profile"]
    fig.suptitle(f"{records[0]['spec']['name']} — profile {profile} (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _all_grid_cells(spec_name: str) -> list[dict] | None:
    """Every cell of a grid spec (its paper profile, before any run_variants narrowing), so the
    paper's layout shows every row and column; None if the spec file is gone or has no grid."""
    import dataclasses

    from suite.spec import find_spec, load_spec

    try:
        spec = load_spec(find_spec(spec_name), "paper")
    except UserError:
        return None
    cells = [dataclasses.asdict(v) for v in spec.variants if v.grid]
    return cells or None


def report(results_dir: Path, spec_name: str | None = None, profile: str | None = None,
           plots: bool = True) -> list[Path]:
    """Regenerate the tables (and plots) of one spec, or of every spec with records."""
    records, problems = read_records(results_dir, spec_name)
    if spec_name is None and not records and not problems:
        return []
    groups = defaultdict(list)
    for r in records:
        groups[(r["spec"]["name"], r["spec"]["profile"])].append(r)
    written = []
    for (name, prof), recs in sorted(groups.items()):
        if profile and prof != profile:
            continue
        stem = f"{name}.{prof}"
        plot = None
        mine = [(p, why) for p, why in problems if f"/{name}/{prof}/" in str(p)]
        if studies.is_study(recs):  # a study renders its own table and plot (suite/studies/)
            plot = f"{stem}.png" if plots and studies.plot(recs, Path(results_dir) / f"{stem}.png") else None
            write_atomic(Path(results_dir) / f"{stem}.md", studies.render_profile(recs, mine, plot), overwrite=True)
            written.append(Path(results_dir) / f"{stem}.md")
            continue
        if plots and any(r["status"] == "completed" for r in recs):
            plot_curves(recs, Path(results_dir) / f"{stem}.png")
            plot = f"{stem}.png"
        text = render_profile(name, prof, recs, mine, plot, grid_cells=_all_grid_cells(name))
        path = Path(results_dir) / f"{stem}.md"
        write_atomic(path, text, overwrite=True)
        written.append(path)
    if problems and not written:
        raise UserError("no usable records; unreadable: " + "; ".join(f"{p}: {w}" for p, w in problems))
    return written
