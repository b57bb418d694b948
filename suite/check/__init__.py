"""Regression checks: a fresh attempt of a spec's profile against a committed reference.

``python -m suite check SPEC|--all [--profile smoke]`` runs the profile through the ordinary runs
(`suite.run.local`, in this process: the code under test is the code that ran) into a temporary
folder (never results/), with the reference's seeds and torch thread count, measures each
variant's time samples, and compares each variant with the reference under
``results/reference/SPEC/PROFILE/`` (made the same way by ``--update``). The rules and bounds are in
compare.py, the time samples in timing.py, the decision rule for times in stats.py. A spec without
a reference reports "no reference" and fails only with ``--strict``. With ``--all`` every spec is
checked in its own process (so peak memory does not depend on the specs checked before it).

``--benchmarks``: the benchmark gate (bench.py), on pytest-benchmark's samples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from suite.check.compare import Attempt, Row, compare, time_row
from suite.check.reference import (
    DEFAULT_THREADS,
    make_attempt,
    more_samples,
    provenance_meta,
    read_reference,
    reference_dir,
    reference_seeds,
    write_reference,
)
from suite.check.timing import ROUNDS
from suite.errors import UserError
from suite.spec import find_spec, load_spec, read_toml

CHECK_ATTEMPTS = 3  # time samples that cannot decide are measured again, up to this many sets in all
UPDATE_ATTEMPTS = 3  # --update: attempts until one ran on a quiet machine, up to this many
BUSY_LOAD = 0.3  # CPUs' worth used by other processes above which --update tries again


def _unit_epochs(ref: Attempt) -> dict[str, int]:
    return {v: t["unit_epochs"] for v, t in ref.meta.get("timing", {}).items() if "unit_epochs" in t}


def check_spec(spec: str, profile: str, ref_root: Path, update: bool = False, seeds: int | None = None,
               variants: list[str] | None = None, data_dir: str | None = None,
               attempts: int | None = None, timing: bool = True) -> list[Row]:
    """Check one spec's profile against its reference; with `update`, make the reference (the
    quietest of up to `attempts` attempts) and show what moved against the previous one. Without
    `timing`, times are not measured (accuracy, memory, status and configuration only)."""
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds {seeds}: must be at least 1")
    if update and variants:
        raise UserError("check --update remakes the whole reference: --variant is not allowed with it")
    loaded = load_spec(find_spec(spec), profile)
    folder = reference_dir(ref_root, loaded.name, profile)
    previous = read_reference(folder)
    if update:
        return _update(loaded, folder, previous, seeds, data_dir, attempts or UPDATE_ATTEMPTS)
    if previous is None:
        return [Row(loaded.name, "", "reference", "none", "", "", f"no reference (run check {loaded.name} --update)",
                    True)]
    ref_seeds = previous.meta["seeds"]
    if seeds is not None and seeds > len(ref_seeds):
        raise UserError(f"--seeds {seeds}: the reference of {loaded.name} [{profile}] has {len(ref_seeds)} seeds")
    ours, out = make_attempt(loaded, ref_seeds[:seeds], previous.meta["threads"], _unit_epochs(previous),
                             variants, data_dir, timing_rounds=ROUNDS if timing else 0)
    try:
        for _ in range(1, attempts or CHECK_ATTEMPTS):  # times the samples could not decide: more samples
            undecided = [v for v in ours.timing if v in previous.timing and time_row(
                loaded.name, v, previous, ours, final=False) is None]
            if not undecided:
                break
            more_samples(loaded, ours, undecided, _unit_epochs(previous), data_dir)
        return compare(loaded.name, previous, ours, variants)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _update(spec, folder: Path, previous: Attempt | None, seeds: int | None, data_dir: str | None,
            attempts: int) -> list[Row]:
    run_seeds = reference_seeds(spec.profile, spec.seeds, seeds)
    kept, kept_out = None, None
    try:
        for _ in range(attempts):  # a reference's times must come from a quiet machine
            got, out = make_attempt(spec, run_seeds, DEFAULT_THREADS, None, None, data_dir)
            if kept is None or (got.meta["other_load"] or 0) < (kept.meta["other_load"] or 0):
                if kept_out:
                    shutil.rmtree(kept_out, ignore_errors=True)
                kept, kept_out = got, out
            else:
                shutil.rmtree(out, ignore_errors=True)
            if (kept.meta["other_load"] or 0) <= BUSY_LOAD:
                break
        failed = [f"{r['variant']} seed {r['seed']}" for r in kept.records if r["status"] in ("failed", "interrupted")]
        if failed or kept.meta["failed_runs"]:
            raise UserError(f"check {spec.name} --update: run(s) failed ({', '.join(failed) or 'see above'}); "
                            "the reference was not changed")
        kept.meta |= provenance_meta() | {
            "command": f"python -m suite check {spec.name} --profile {spec.profile} --update --seeds {len(run_seeds)}"}
        write_reference(folder, kept, kept_out)
    finally:
        if kept_out:
            shutil.rmtree(kept_out, ignore_errors=True)
    load = kept.meta["other_load"] or 0
    note = (f"; the machine was busy throughout (others used {load:.1f} CPUs): remake it on a quiet one"
            if load > BUSY_LOAD else "")
    written = Row(spec.name, "", "reference", f"{len(previous.records)} records" if previous else "none",
                  f"{len(kept.records)} records", "", f"reference written to {folder}{note}", True)
    if previous is None:
        return [written]
    moved = compare(spec.name, previous, kept)  # what this update changes, for the commit message
    return [written] + [Row(**(asdict(r) | {"ok": True, "verdict": "new vs old: " + r.verdict})) for r in moved]


def check_in_child(spec: str, args: list[str]) -> list[Row]:
    """One spec's check in a fresh process (`suite/check/child.py`): its peak memory does not depend
    on the specs checked before it."""
    with tempfile.TemporaryDirectory(prefix="suite-check-rows-") as tmp:
        rows_json = Path(tmp) / "rows.json"
        code = subprocess.run([sys.executable, "-m", "suite.check.child", str(rows_json), spec, *args],
                              env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}).returncode
        if rows_json.exists():
            return [Row(**r) for r in json.loads(rows_json.read_text())]
    return [Row(spec, "", "check", "", "", "", f"CHECK STOPPED (exit code {code}; message above)", False)]


def check_all(profile: str, ref_root: Path, update: bool, seeds: int | None, data_dir: str | None = None,
              timing: bool = True) -> list[Row]:
    """Every spec in reproductions/ that has the profile: each checked in its own process."""
    from suite.paths import reproductions_dir

    rows = []
    for path in sorted(reproductions_dir().glob("*.toml")):
        try:
            profiles = read_toml(path).get("profiles", {})
        except UserError as e:
            rows.append(Row(path.stem, "", "spec", "", "", "", f"SPEC DOES NOT LOAD: {e}", False))
            continue
        if profile not in profiles:
            continue
        if not update and not (reference_dir(ref_root, path.stem, profile) / "reference.json").exists():
            rows.append(Row(path.stem, "", "reference", "none", "", "", f"no reference (run check {path.stem} "
                            "--update)", True))
            continue
        args = {"profile": profile, "ref_root": str(ref_root), "update": update, "seeds": seeds, "data_dir": data_dir,
                "timing": timing}
        rows += check_in_child(path.stem, [json.dumps(args)])
    return rows


def format_rows(rows: list[Row]) -> str:
    from tabulate import tabulate

    headers = ["spec", "variant", "metric", "reference", "ours", "bound", "verdict"]
    return tabulate([[getattr(r, h) for h in headers] for r in rows], headers=headers, tablefmt="github")


def failing(rows: list[Row], strict: bool) -> list[Row]:
    return [r for r in rows if not r.ok or (strict and r.verdict.startswith("no reference"))]


def report_rows(rows: list[Row], strict: bool, updated: bool = False) -> int:
    """Print the rows (and the failing ones again); exit code 0 when every comparison passed."""
    print(format_rows(rows))
    bad = failing(rows, strict)
    if bad:
        print(f"\ncheck FAILED: {len(bad)} of {len(rows)} comparisons outside their bounds "
              f"(bounds: python -m suite check --help, README 'Regression checks'):\n")
        print(format_rows(bad))
        return 1
    print(f"\ncheck passed: {len(rows)} comparisons" + (" (reference updated)" if updated else ""))
    return 0


def write_rows(rows: list[Row], path: Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in rows]))
