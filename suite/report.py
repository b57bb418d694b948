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
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd

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


def _select(records: list[dict]) -> tuple[list[dict], int]:
    """The records of the newest configuration, and how many older-configuration records exist."""
    newest = max(records, key=lambda r: r["run_id"])
    same = [r for r in records if r["spec"]["config_hash"] == newest["spec"]["config_hash"]]
    return same, len(records) - len(same)


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
                       "records": 0, "baselines": []}
    speeds = {}
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
                                    f"{p['torch_threads']} threads, commit {p['git_commit']}")
        errs = [r["summary"][METRIC] for r in done]
        mean, std = _mean_std(errs)
        info = variant_info.get(name, {})
        paper = pm = None
        paper_cell = source = "–"
        bid = info.get("baseline")
        if bid and baselines is not None and bid in baselines.index:
            b = baselines.loc[bid]
            paper = float(b["value"])
            pm = float(b["plusminus"]) if b["plusminus"] else None
            paper_cell = b["value"] + (f" ± {b['plusminus']}" if b["plusminus"] else "")
            conf = b["confidence"] + (" ⚠" if "low" in b["confidence"] else "")
            source = f"{b['table']} [{len(facts['baselines']) + 1}], {conf}"
            facts["baselines"].append(f"{bid}: {b['paper']}; {b['table']}; source: {b['source']}"
                                      + (f"; note: {b['note']}" if b.get("note") else ""))
        elif bid:
            paper_cell = f"missing baseline {bid!r}"
        secs = statistics.fmean(r["summary"]["median_epoch_seconds"] for r in done)
        speeds[name] = (secs, info.get("weight_quantizer", "none"))
        rss = max(r["summary"]["peak_rss_mb"] for r in done)
        cuda = [r["summary"]["peak_cuda_mb"] for r in done if r["summary"].get("peak_cuda_mb") is not None]
        wm = done[-1]["model"]
        epochs = sorted({r["summary"]["epochs_run"] for r in done})
        rows.append({
            "variant": info.get("label") or name,
            "paper test error (%)": paper_cell,
            "paper source, confidence": source,
            "ours (%)": f"{_fmt(mean)} ± {_fmt(std)}" if std is not None else _fmt(mean),
            "n": len(done),
            "ours − paper (pp)": _fmt(mean - paper, 2) if paper is not None else "–",
            "verdict": verdict(mean, std, len(done), paper, pm, facts["scaled_down"]),
            "epochs": "/".join(map(str, epochs)),
            "s/epoch (train)": _fmt(secs, 2),
            "× float time": None,
            "peak RSS (MiB)": _fmt(rss, 0),
            **({"peak CUDA (MiB)": _fmt(max(cuda), 0)} if cuda else {}),
            "weight memory": f"{wm['weight_memory_bytes'] / 1024:.0f} KiB ({wm['weight_memory_saving']:.1f}× less)",
            "_key": name,
        })
    float_secs = next((s for s, q in speeds.values() if q in ("none", "identity")), None)
    for row in rows:
        key = row.get("_key")
        if key in speeds and float_secs:
            row["× float time"] = _fmt(speeds[key][0] / float_secs, 2)
        row.pop("_key", None)
    return pd.DataFrame(rows).fillna("–"), facts


def _data_line(d: dict) -> str:
    label = {"full": "full dataset", "embedded subset": "EMBEDDED SUBSET (small real sample shipped "
             "with the suite; not comparable with the paper)"}.get(d.get("source"), d.get("source"))
    return (f"{d.get('dataset', '?').upper()}, {label}: train {d.get('n_train')} / validation "
            f"{d.get('n_val')}; test set: {d.get('test_set')} ({d.get('n_test')} images)")


def render_profile(spec_name: str, profile: str, records: list[dict], problems: list, plot: str | None,
                   baselines_folder: Path | None = None) -> str:
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
        out += [f"**Scaled down** ({resolved.get('profile_note') or 'not the paper protocol'}): "
                "numbers are not comparable with the paper's; the verdict says so.", ""]
    out += [f"Metric: test error (%) at the epoch of best validation error, mean ± std over n seeds. "
            f"Data: {_data_line(facts['data'])}.", ""]
    out.append(table.to_markdown(index=False, disable_numparse=True))
    out.append("")
    if plot:
        out += [f"![learning curves]({plot})", ""]
    notes = []
    if "× float time" in table and (table["× float time"] != "–").any():
        notes.append("Why binary is not faster: the quantized layers binarize their weights and then run "
                     "the same float32 matrix multiplications as the float model (no binary kernels exist "
                     "in PyTorch), so a binary epoch costs the float work plus the binarization; "
                     "× float time is measured in these runs.")
    if resolved.get("deviations"):
        notes.append("Deviations of the spec from the paper's protocol: " + "; ".join(resolved["deviations"]) + ".")
    if latest["spec"]["resolved"].get("overrides"):
        notes.append("Command-line overrides: " + ", ".join(f"{k}={v}" for k, v in resolved["overrides"].items()) + ".")
    if facts["older"]:
        notes.append(f"{facts['older']} record(s) of older configurations of this profile are not in the table.")
    for r in facts["not_completed"]:
        notes.append(f"Run {r['variant']} seed {r['seed']}: **{r['status']}** ({r.get('error', '')}) — {r['_path']}.")
    for path, why in problems:
        notes.append(f"Skipped unreadable record {path}: {why}.")
    if missing:
        notes.append(f"Paper numbers unavailable: {missing}.")
    notes.append("Ran on: " + "; ".join(sorted(facts["provenance"])) + ".")
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    if facts["baselines"]:
        out += ["Paper numbers:", ""] + [f"{i}. {b}" for i, b in enumerate(facts["baselines"], 1)] + [""]
    return "\n".join(out)


def plot_curves(records: list[dict], path: Path) -> None:
    """Validation and test error per epoch, mean over the seeds of each variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                ax.plot(x[: len(ys)], ys, label=f"{name} (n={len(runs)})", marker="." if n < 30 else None)
    for ax, title in zip(axes, ("training loss", "validation error (%)", "test error (%)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


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
        if plots and any(r["status"] == "completed" for r in recs):
            plot_curves(recs, Path(results_dir) / f"{stem}.png")
            plot = f"{stem}.png"
        mine = [(p, why) for p, why in problems if f"/{name}/{prof}/" in str(p)]
        text = render_profile(name, prof, recs, mine, plot)
        path = Path(results_dir) / f"{stem}.md"
        write_atomic(path, text, overwrite=True)
        written.append(path)
    if problems and not written:
        raise UserError("no usable records; unreadable: " + "; ".join(f"{p}: {w}" for p, w in problems))
    return written
