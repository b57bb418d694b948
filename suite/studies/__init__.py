"""Studies: specs that measure something other than a model trained on a dataset.

A spec with a ``[study]`` table is a study (``reproductions/README.md``, "Studies")::

    [study]
    name = "quantization_error"      # a key of STUDIES
    seeds = [0]                      # one run per variant x seed, as for any spec
    length = 1024                    # ... the study's own parameters (its `Params`)

It has no [data], [model] or [train]; its variants may carry ``study = { key = value }``
overrides, profiles override ``study.*`` like any key, and it runs, records and reports through
the same commands: ``python -m suite run NAME --profile P`` writes one record per variant x seed
(the record schema of ``suite/records.py`` with ``epochs`` empty, plus ``study``, ``params``,
``tables`` and ``curves``), and ``python -m suite report`` renders the study's own table.

A study is a module named in STUDIES that provides

    Params                   frozen dataclass: the study's [study] keys, types and defaults
    check(params, where)     checks of meaning, raising UserError that names `where`.key
    run(spec, variant, seed, device, progress) -> dict
                             {"summary": {...}, "tables": {...}, "curves": {...}}, plain JSON data
    render(records, baselines) -> str
                             the markdown of its report from completed records (pandas DataFrame
                             of the spec's baselines file, or None)
    plot(records, path) -> bool   (optional) a PNG beside the table; False if there is nothing to plot
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import time
import traceback
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

STUDIES = {
    "quantization_error": "suite.studies.quantization_error",
    "gradient_fidelity": "suite.studies.gradient_fidelity",
    "deep_compression": "suite.studies.deep_compression",
    "tt_layer": "suite.studies.tt_layer",
    "sparse_crossover": "suite.studies.sparse_crossover",
    "low_rank": "suite.studies.low_rank",
}


def study_module(name: str) -> ModuleType:
    return importlib.import_module(STUDIES[name])


def params_for(spec, variant) -> Any:
    """The study's `Params` for one variant: [study] (profile and --set applied), then the
    variant's own ``study = {...}`` table; unknown keys and wrong types are UserErrors."""
    from suite.spec import _build

    cls = study_module(spec.study.name).Params
    base = _build(cls, spec.study.params, f"{spec.path}: study")  # errors in [study] itself name it
    if not variant.study:
        return base
    return _build(cls, {**spec.study.params, **variant.study}, f"{spec.path}: variants.{variant.name}.study")


def check(spec) -> None:
    """Every variant's parameters: types (via `Params`) and meaning (the study's `check`)."""
    mod = study_module(spec.study.name)
    for v in spec.variants:
        params = params_for(spec, v)
        where = f"{spec.path}: " + (f"variants.{v.name}.study" if v.study else "study")
        if hasattr(mod, "check"):
            mod.check(params, where)


def _config_hash(spec, variant) -> str:
    """Records with equal hashes ran the same study configuration (seed aside)."""
    from suite.spec import config_hash

    resolved = spec.resolved()
    resolved.pop("overrides")
    resolved["study"].pop("seeds")
    resolved["variants"] = [v for v in resolved["variants"] if v["name"] == variant.name]
    return config_hash(resolved)


def execute_study(run, device, results_dir: Path, progress: bool = True) -> Path:
    """Run one variant x seed of a study and write its record (also when it fails); its path."""
    import torch

    from suite.measure import provenance
    from suite.records import SCHEMA, new_run_id, now_utc, record_path, write_record

    spec, variant = run.spec, run.variant
    params = params_for(spec, variant)
    record = {
        "schema": SCHEMA, "run_id": new_run_id(), "status": "interrupted", "started": now_utc(), "finished": None,
        "spec": {"name": spec.name, "path": spec.path, "profile": spec.profile, "scaled_down": spec.scaled_down,
                 "config_hash": _config_hash(spec, variant), "resolved": spec.resolved()},
        "study": spec.study.name, "variant": variant.name, "seed": run.seed, "params": dataclasses.asdict(params),
        "epochs": [], "summary": {}, "tables": {}, "curves": {}, "provenance": provenance(device),
    }
    path = record_path(Path(results_dir), spec.name, spec.profile, variant.name, run.seed, record["run_id"])
    write_record(path, record)  # "interrupted" until it ends: a killed run still shows up
    torch.manual_seed(run.seed)
    t0 = time.perf_counter()
    try:
        out = study_module(spec.study.name).run(spec, variant, run.seed, device, progress)
    except Exception as e:  # recorded, then raised again: a failed run is a finding too
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
                      finished=now_utc())
        write_record(path, record, overwrite=True)
        raise
    record.update(status="completed", finished=now_utc(), summary={**out.get("summary", {}),
                  "seconds": time.perf_counter() - t0}, tables=out.get("tables", {}), curves=out.get("curves", {}))
    write_record(path, record, overwrite=True)
    return path


def _newest_configuration(records: list[dict]) -> tuple[list[dict], int]:
    """Per variant, the records of its newest configuration; and how many older ones were left out."""
    by_variant = defaultdict(list)
    for r in records:
        by_variant[r["variant"]].append(r)
    chosen, older = [], 0
    for recs in by_variant.values():
        newest = max(recs, key=lambda r: r["run_id"])["spec"]["config_hash"]
        same = [r for r in recs if r["spec"]["config_hash"] == newest]
        chosen += same
        older += len(recs) - len(same)
    return chosen, older


def is_study(records: list[dict]) -> bool:
    return any(r.get("study") for r in records)


def plot(records: list[dict], path: Path) -> bool:
    """The study's plot of the completed records, if it has one."""
    done, _ = _newest_configuration([r for r in records if r["status"] == "completed"])
    mod = study_module(done[0]["study"]) if done else None
    return bool(mod and hasattr(mod, "plot") and mod.plot(done, path))


def render_profile(records: list[dict], problems: list, plot_name: str | None,
                   baselines_folder: Path | None = None) -> str:
    """A study's report: heading, the study's own tables, and the notes every report has."""
    from suite.errors import UserError
    from suite.report import load_baselines

    latest = max(records, key=lambda r: r["run_id"])
    resolved, name = latest["spec"]["resolved"], latest["study"]
    chosen, older = _newest_configuration(records)
    done = [r for r in chosen if r["status"] == "completed"]
    baselines = missing = None
    if resolved["baselines"] != "none":  # a study with no published numbers says baselines = "none"
        try:
            baselines = load_baselines(resolved["baselines"], baselines_folder)
        except UserError as e:
            missing = str(e)
    out = [f"# {resolved['title']} — profile `{latest['spec']['profile']}`", "", f"Source: {resolved['paper']}", ""]
    if latest["spec"]["scaled_down"]:
        note = resolved.get("profile_note")
        out += [f"**Scaled-down profile**{': ' + note if note else ''}.", ""]
    if done:
        out += [study_module(name).render(done, baselines), ""]
    else:
        out += ["No completed run yet.", ""]
    if plot_name:
        out += [f"![{name}]({plot_name})", ""]
    notes = []
    if resolved.get("deviations"):
        notes.append("Choices and deviations: " + "; ".join(resolved["deviations"]) + ".")
    if resolved.get("overrides"):
        notes.append("Command-line overrides: " + ", ".join(f"{k}={v}" for k, v in resolved["overrides"].items())
                     + ".")
    if older:
        notes.append(f"{older} record(s) of older configurations of this profile are not in the table.")
    for r in chosen:
        if r["status"] != "completed":
            why = r.get("error") or "not finished (killed, or still running)"
            notes.append(f"Run {r['variant']} seed {r['seed']}: **{r['status']}** ({why}); not in the table — "
                         f"{r['_path']}.")
    for path, why in problems:
        notes.append(f"Skipped unreadable record {path}: {why}.")
    if missing:
        notes.append(f"Published values unavailable: {missing}.")
    if done:
        secs = statistics.fmean(r["summary"]["seconds"] for r in done)
        p = done[-1]["provenance"]
        notes.append(f"{len(done)} run(s), {secs:.1f} s each on average; ran on {p['device']} ({p['device_name']}), "
                     f"torch {p['torch']}, {p['torch_threads']} threads, commit {p['git_commit']}.")
    out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
