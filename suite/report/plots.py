"""Plots beside the tables: a training spec's learning curves (mean over seeds, the paper's test
error dashed), or a study's own plot (suite/studies/)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from suite.records import for_table, write_atomic
from suite.report.baselines import paper_errors
from suite.studies import study_module


def study_plot(records: list[dict], path: Path) -> bool:
    """The study's plot of its completed records, if it has one; whether a PNG was written."""
    done = [r for r in for_table(records)[0] if r["status"] == "completed"]
    mod = study_module(done[0]["study"]) if done else None
    fig = mod.plot(done) if mod is not None and hasattr(mod, "plot") else None
    if fig is None:
        return False
    save_png(fig, path, dpi=80)
    return True


def plot_curves(records: list[dict], path: Path) -> bool:
    """Training loss, validation and test error per epoch, mean over the seeds of each variant;
    the paper's test error as a dashed line of the same colour. Returns True (a PNG was written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    paper = paper_errors(max(records, key=lambda r: r["run_id"])["spec"]["resolved"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    by_variant = defaultdict(list)
    for r in for_table(records)[0]:
        if r["status"] == "completed":
            by_variant[r["variant"]].append(r)
    for name, runs in by_variant.items():
        n = min(len(r["epochs"]) for r in runs)
        if n == 0:
            continue
        x = list(range(1, n + 1))
        for ax, key in zip(axes, ("train_loss", "val_error", "test_error"), strict=True):
            ys = [statistics.fmean(r["epochs"][i][key] for r in runs) for i in range(n)
                  if all(r["epochs"][i].get(key) is not None for r in runs)]  # val_error may be absent
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
    save_png(fig, path)
    return True


def save_png(fig, path: Path, dpi: int = 90) -> None:
    """The figure as a PNG at `path`, written atomically (no half-written or temporary file is left)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_atomic(path, buf.getvalue(), overwrite=True)
