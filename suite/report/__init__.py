"""Records + baselines -> markdown tables (pandas + tabulate), verdicts and plots.

One page per spec and profile, ``results/SPEC.PROFILE.md``, with a PNG beside it. Every number in
a page comes from a record; the paper's numbers come from ``baselines/*.csv`` with their source and
confidence. The report reads records only, never a live spec: a page can be remade anywhere from
the records alone.

baselines.py: the papers' rows and how they compare; table.py: one row per variant and the
verdict; grid.py: a grid spec in the paper's layout; page.py: the page and its notes; plots.py.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from suite.errors import UserError
from suite.records import inside, read_records, write_atomic
from suite.report.baselines import load_baselines
from suite.report.page import render_study, render_training
from suite.report.plots import plot_curves, study_plot
from suite.report.table import verdict

__all__ = ["load_baselines", "report", "verdict"]


def _relative(path, folder: Path) -> str:
    """A record's path as a page names it: within the results folder, never the machine's."""
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return Path(path).name


def report(results_dir: Path, spec_name: str | None = None, profile: str | None = None,
           plots: bool = True) -> list[Path]:
    """Regenerate the pages (and plots) of one spec, or of every spec with records."""
    results_dir = Path(results_dir)
    records, problems = read_records(results_dir, spec_name)
    if spec_name is None and not records and not problems:
        return []
    for r in records:
        r["_path"] = _relative(r["_path"], results_dir)
    problems = [(_relative(p, results_dir), why) for p, why in problems]
    groups = defaultdict(list)
    for r in records:
        groups[(r["spec"]["name"], r["spec"]["profile"])].append(r)
    written = []
    for (name, prof), recs in sorted(groups.items()):
        if profile and prof != profile:
            continue
        stem = f"{name}.{prof}"
        mine = [(p, why) for p, why in problems if p.startswith(f"records/{name}/{prof}/")]
        study = any(r.get("study") for r in recs)
        path, png = inside(results_dir, f"{stem}.md"), inside(results_dir, f"{stem}.png")
        try:
            drawn = plots and any(r["status"] == "completed" for r in recs) and \
                (study_plot if study else plot_curves)(recs, png)
            plot = png.name if drawn else None
            write_atomic(path, render_study(recs, mine, plot) if study else render_training(recs, mine, plot),
                         overwrite=True)
        except OSError as e:
            raise UserError(f"{path.parent}: cannot write the table ({e.strerror or e})") from None
        written.append(path)
    if problems and not written:
        raise UserError("no usable records; unreadable: " + "; ".join(f"{p}: {w}" for p, w in problems))
    return written
