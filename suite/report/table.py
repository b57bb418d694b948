"""Records + baselines -> the table of one spec and profile: one row per variant, the paper's
number beside ours, a verdict, time and memory; and the facts the page's notes need.

Which records a row uses (`suite.records.for_table`): those of the variant's newest
configuration, one per seed (n counts distinct seeds); older configurations and duplicate seeds
are named under the table. Failed and diverged runs are counted, never averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from suite.records import SUMMARY_COLUMNS, for_table
from suite.report.baselines import METRIC, comparable, confidence, paper_runs

RULE = ("verdict: |ours − paper| ≤ 2σ with σ = sqrt(s_paper² / n_paper + s_ours² / n_ours), s the spread of single "
        "runs on each side (the paper's ± where it says over how many runs it was measured; otherwise its ± is taken "
        "as the uncertainty of its mean, n_paper = 1); where the paper gives no ±: within 10% of its value")


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def verdict(ours: float, ours_std: float | None, n: int, paper: float | None, paper_pm: float | None,
            scaled_down: bool, paper_n: int | None = None) -> str:
    """Whether our mean lies within the paper's spread (RULE): means compared, each side's spread
    of single runs over its own number of runs, as MLPerf compares convergence points."""
    if paper is None:
        return "no paper number"
    if scaled_down:
        return "not comparable (scaled down)"
    diff = ours - paper
    if paper_pm:
        tol = 2 * math.sqrt(paper_pm**2 / (paper_n or 1) + (ours_std or 0.0) ** 2 / n)
        rule = "2σ"
    else:
        tol = 0.1 * abs(paper)
        rule = "10%"
    if abs(diff) <= tol:
        return f"within the paper's spread ({rule})"
    return f"outside ({'better' if diff < 0 else 'worse'} than paper, > {rule})"


def fmt(x, digits=2, missing="–"):
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def speed_settings(p: dict) -> str:
    """The CPU speed settings a run had (records before they were recorded have neither)."""
    if p["device"] != "cpu":
        return ""
    parts = []
    if "fused_cpu_kernels" in p:
        parts.append(f"fused CPU kernels {p['fused_cpu_kernels']}")
    if "malloc" in p:
        parts.append("malloc keeps freed memory" if p["malloc"].startswith("glibc") else f"malloc {p['malloc']}")
    return "".join(f", {x}" for x in parts)


@dataclass
class Facts:
    """What the notes under a table need to say."""

    left_out: dict = field(default_factory=lambda: {"older": 0, "duplicates": []})
    not_completed: list = field(default_factory=list)
    data: dict = field(default_factory=dict)
    provenance: set = field(default_factory=set)
    scaled_down: bool = False
    baselines: list = field(default_factory=list)  # the cited rows, numbered [1], [2], ...
    linked: set = field(default_factory=set)
    reference: dict | None = None
    emulated: list = field(default_factory=list)  # labels of quantized variants run on float32 arithmetic
    packed: list = field(default_factory=list)  # labels of quantized variants run on the bit-packed kernels


@dataclass
class Paper:
    """The paper's side of a row."""

    cell: str = "–"
    source: str = "–"
    value: float | None = None
    pm: float | None = None
    n: int | None = None
    key: str = METRIC  # our summary figure picked as the paper picked its epoch
    context: bool = False  # another metric: shown beside ours, never compared


def _paper(bid: str | None, baselines: pd.DataFrame | None, facts: Facts) -> Paper:
    if not bid:
        return Paper()
    if baselines is None or bid not in baselines.index:
        return Paper(cell=f"missing baseline {bid!r}")
    b = baselines.loc[bid]
    facts.linked.add(bid)
    facts.baselines.append(f"{bid}: {b['paper']}; {b['table']}; source: {b['source']}"
                           + (f"; note: {b['note']}" if b.get("note") else ""))
    source = f"{b['table']} [{len(facts.baselines)}], {confidence(b)}"
    compare = comparable(b)
    if compare is None:
        pm = f" ± {b['plusminus']}" if b["plusminus"] else ""
        return Paper(cell=f"context: {b['metric']} = {b['value']}{pm} {b['unit']}", source=source, context=True)
    key, value, pm, note = compare
    cell = (f"{value:g}" + (f" ± {pm:g}" if pm else "") + f" ({note})" if note
            else b["value"] + (f" ± {b['plusminus']}" if b["plusminus"] else ""))  # as printed
    n = paper_runs(b)
    return Paper(cell + (f", n = {n}" if n else ""), source, value, pm, n, key)


def _note_provenance(done: list[dict], facts: Facts) -> None:
    for r in done:
        p = r["provenance"]
        facts.provenance.add(f"{p['device']} ({p['device_name']}), torch {p['torch']}, {p['torch_threads']} threads"
                             f"{speed_settings(p)}, commit {p['git_commit']}")


def _row(name: str, done: list[dict], info: dict, paper: Paper, facts: Facts, columns: list[str]) -> dict:
    errs = [e for e in (r["summary"].get(paper.key) for r in done) if e is not None]
    mean, std = mean_std(errs) if errs else (float("nan"), None)
    top5 = [r["summary"]["test_error_top5_at_best_val"] for r in done
            if r["summary"].get("test_error_top5_at_best_val") is not None]
    cuda = [r["summary"]["peak_cuda_mb"] for r in done if r["summary"].get("peak_cuda_mb") is not None]
    wm = done[-1]["model"]
    return {
        "variant": info.get("label") or name,
        "paper test error (%)": paper.cell,
        "paper source, confidence": paper.source,
        "ours (%)": f"{fmt(mean)} ± {fmt(std)}" if std is not None else fmt(mean),
        "n": len(done),
        **({"ours top-5 (%)": fmt(statistics.fmean(top5))} if top5 else {}),
        "ours − paper (pp)": fmt(mean - paper.value, 2) if paper.value is not None else "–",
        "verdict": "context only (not a test error)" if paper.context else
                   verdict(mean, std, len(done), paper.value, paper.pm, facts.scaled_down, paper.n),
        "epochs": "/".join(map(str, sorted({r["summary"]["epochs_run"] for r in done}))),
        "s/epoch (train)": fmt(statistics.fmean(r["summary"]["median_epoch_seconds"] for r in done), 2),
        "× float time": None,
        **_tensor_columns(done),
        "peak RSS (MiB)": fmt(max(r["summary"]["peak_rss_mb"] for r in done), 0),
        **({"peak CUDA (MiB)": fmt(max(cuda), 0)} if cuda else {}),
        "weight memory": f"{wm['weight_memory_bytes'] / 1024:.0f} KiB"
                         + (f" ({wm['weight_memory_saving']:.1f}× smaller)" if wm["weight_memory_saving"] > 1 else ""),
        **_extra_columns(done[-1]["summary"], columns),
        "_key": name,
    }


def _largest(done: list[dict], key: str) -> float | None:
    values = [r["summary"].get(key) for r in done]
    return max(values) if values and None not in values else None


def _tensor_columns(done: list[dict]) -> dict:
    """Tensor memory (`suite/tensor_memory.py`), where the records counted it: the training part's
    peak of bytes held by tensors, and the largest rise within one step."""
    out = {}
    for key, label in (("peak_tensor_mb", "peak tensor (MiB)"), ("step_tensor_mb", "step tensor (MiB)")):
        values = [r["summary"].get(key) for r in done]
        if values and None not in values:
            out[label] = fmt(max(values), 1)
    return out


def _extra_columns(summary: dict, columns: list[str]) -> dict:
    """The measured figures a spec asks its table to show (`table_columns`), where the record has them."""
    out = {}
    for key in columns:
        label, unit, scale = SUMMARY_COLUMNS[key]
        out[f"{label} ({unit})"] = f"{summary[key] / scale:,.0f}" if summary.get(key) is not None else "–"
    return out


def _is_quantized(info: dict) -> bool:
    return any(info.get(k, "none") not in ("none", "identity")
               for k in ("weight_quantizer", "input_quantizer", "gradient_quantizer"))


def profile_table(records: list[dict], baselines: pd.DataFrame | None) -> tuple[pd.DataFrame, Facts]:
    """One row per variant (in the spec's order) and the facts the notes need."""
    resolved = max(records, key=lambda r: r["run_id"])["spec"]["resolved"]
    chosen, left_out = for_table(records)
    facts = Facts(left_out=left_out)
    by_variant = defaultdict(list)
    for r in chosen:
        by_variant[r["variant"]].append(r)
    info = {v["name"]: v for v in resolved["variants"]}
    order = list(info) + sorted(set(by_variant) - set(info))
    columns = [c for c in resolved.get("table_columns", []) if c in SUMMARY_COLUMNS]
    rows, runs = [], {}
    for name in (n for n in order if n in by_variant):
        runs_of = by_variant[name]
        done = [r for r in runs_of if r["status"] == "completed"]
        facts.not_completed += [r for r in runs_of if r["status"] != "completed"]
        if not done:
            rows.append({"variant": name, "status": ", ".join(sorted({r['status'] for r in runs_of}))})
            continue
        facts.data, facts.scaled_down = done[-1]["data"], done[-1]["spec"]["scaled_down"]
        _note_provenance(done, facts)
        v = info.get(name, {})
        if _is_quantized(v):
            emulated = all(r["model"].get("arithmetic", "emulated") == "emulated" for r in done)
            (facts.emulated if emulated else facts.packed).append(v.get("label") or name)
        rows.append(_row(name, done, v, _paper(v.get("baseline"), baselines, facts), facts, columns))
        secs = statistics.fmean(r["summary"]["median_epoch_seconds"] for r in done)
        cuda = [r["summary"]["peak_cuda_mb"] for r in done if r["summary"].get("peak_cuda_mb") is not None]
        runs[name] = {"done": done, "secs": secs, "rss": max(r["summary"]["peak_rss_mb"] for r in done),
                      "cuda": max(cuda) if cuda else None, "label": v.get("label") or name,
                      "tensor": _largest(done, "peak_tensor_mb"), "step": _largest(done, "step_tensor_mb"),
                      "float": not _is_quantized(v)}
    float_secs = next((r["secs"] for r in runs.values() if r["float"]), None)
    for row in rows:
        if row.get("_key") in runs and float_secs:
            row["× float time"] = fmt(runs[row["_key"]]["secs"] / float_secs, 2)
    reference = resolved.get("reference_variant")
    if reference in runs:
        rows = _reference_columns(rows, runs, reference, resolved, facts)
    for row in rows:
        row.pop("_key", None)
    return pd.DataFrame(rows).fillna("–"), facts


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


def _reference_columns(rows: list[dict], runs: dict, ref: str, resolved: dict, facts: Facts) -> list[dict]:
    """With a spec's ``reference_variant``: test error after the same epochs and within the
    reference's training time, time per step and peak memory relative to the reference. They
    replace the "× float time" column."""
    r0 = runs[ref]
    budget = statistics.fmean(sum(e["train_seconds"] for e in r["epochs"]) for r in r0["done"])
    label = ref
    epochs = {r["summary"]["epochs_run"] for run in runs.values() for r in run["done"]}
    after = f"test error after {epochs.pop()} epochs (%)" if len(epochs) == 1 else "test error, last epoch (%)"
    within = f"test error within {label}'s training time (%)"
    batch = (resolved.get("train") or {}).get("batch_size")

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
        mean, std = mean_std(final)
        hits = [_error_within(r, budget) for r in run["done"]]
        if all(h is not None for h in hits):
            reached = sorted({h["epoch"] for h in hits})
            cell = (f"{fmt(statistics.fmean(h['test_error'] for h in hits))} "
                    f"(epoch {'/'.join(map(str, reached))})")
        else:
            first = min(r["epochs"][0]["train_seconds"] for r in run["done"])
            cell = f"none: epoch 1 took {first:.3g} s > {budget:.3g} s"
        ms = step_ms(run)
        rss_diff = run["rss"] - r0["rss"]
        extra = {after: f"{fmt(mean)} ± {fmt(std)}" if std is not None else fmt(mean),
                 within: cell,
                 "ms/step (train)": fmt(ms, 1),
                 f"× {label} time/step": fmt(ms / ref_ms if ms and ref_ms else run["secs"] / r0["secs"], 2),
                 f"peak RSS vs {label}": f"{rss_diff:+.0f} MiB ({run['rss'] / r0['rss']:.2f}×)"}
        if run["cuda"] is not None and r0["cuda"]:
            extra[f"peak CUDA vs {label}"] = f"{run['cuda'] - r0['cuda']:+.0f} MiB ({run['cuda'] / r0['cuda']:.2f}×)"
        for key, name in (("tensor", "peak tensor"), ("step", "step tensor")):
            if run[key] is not None and r0[key]:
                extra[f"{name} vs {label}"] = f"{run[key] - r0[key]:+.1f} MiB ({run[key] / r0[key]:.2f}×)"
        if row.get("_key") != ref:
            # the most telling memory figure both have: tensors (CPU), the CUDA allocator's, else the resident set
            kind = "tensor" if run["tensor"] is not None and r0["tensor"] else \
                "cuda" if run["cuda"] is not None and r0["cuda"] else "rss"
            ours, theirs = run[kind], r0[kind]
            memory_notes.append(f"{run['label']}: {abs(ours - theirs):.{1 if kind == 'tensor' else 0}f} MiB "
                                f"{'lower' if ours < theirs else 'higher'} ({ours / theirs:.2f}×)")
        new = {}
        for k, v in row.items():
            if k == "× float time":
                continue
            new[k] = v
            if k == "s/epoch (train)":
                new.update(extra)
        out.append(new)
    facts.reference = {"name": ref, "label": r0["label"], "budget": budget, "memory": memory_notes,
                       "cuda": r0["cuda"] is not None, "tensor": r0["tensor"] is not None}
    return out
