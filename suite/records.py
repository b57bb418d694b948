"""Run records: the schema, the ONE rule for "the same configuration", atomic write (never
overwriting another run's record), and reading them back, each checked against the schema.

A record is one JSON file per run (spec x profile x variant x seed) under
``results/records/SPEC/PROFILE/``. Everything downstream (reports, checks) reads records, never
live objects. Records are portable: no machine's absolute paths (paths are relative to the project
or to the data folder), no hostnames. Schema version 1 fields:

    schema, run_id, status (completed | interrupted | diverged | failed), started, finished,
    spec      {name, path (relative to the project), profile, scaled_down, config_hash, resolved}
    variant, seed,
    data      {dataset, source, path (relative to the data folder it was found in), root (which folder:
               --data-dir, SUITE_DATA_DIR, cache, package), n_train, n_val, n_test, test_set}
    model     {parameters, weight_memory_bytes, float32_weight_bytes, weight_memory_saving}
    epochs    [{epoch, lr, train_loss, val_error, test_error, train_seconds, eval_seconds,
                samples_per_second, peak_rss_mb, peak_cuda_mb, peak_tensor_mb, step_tensor_mb}]
    summary   {epochs_run, best_epoch, best_val_error, test_error_at_best_val, final_test_error,
               median_epoch_seconds, median_samples_per_second, peak_rss_mb, peak_cuda_mb,
               peak_tensor_mb, step_tensor_mb}
    tensor_memory_method   how peak_tensor_mb / step_tensor_mb were counted (suite/tensor_memory.py):
              the bytes held by tensors at the training part's peak (data splits left out), and the
              largest rise within one step; None where they could not be counted
    provenance {git_commit, versions, device, device_name, torch_threads, fused_cpu_kernels, malloc, ...}
    distributed {world_size (1 without torchrun), backend (gloo | nccl | None),
                 max_weight_difference (torchrun: largest |w_rank - w_rank0| at the end, 0.0 expected)};
              under torchrun an epoch's train_loss is the ranks' mean, its times and peak memory
              the ranks' maximum (a straggler shows)
    communication {method, options, world_size, bytes_per_step, bytes_per_step_by_part, steps,
               total_bytes_sent}: a gradient-compression hook's exchange (train.gradient_compression);
              each epoch then has bytes_sent_per_step, and so has the summary
    error     (a message, when status is failed or diverged; diverged_at_epoch too)
    resumed_at_epochs (the epochs after which an interrupted run was continued, if any)
    A study's record (suite/studies/) has ``epochs`` empty and adds study, params, tables, curves.

"interrupted" is the status of a run that has not ended (killed, or still running): its record
holds the epochs done so far, and a rerun continues it from its checkpoint.

Errors are in percent, times in seconds, memory in MiB ("mb").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = 1
STATUSES = ("completed", "interrupted", "diverged", "failed")
MAX_RECORD_BYTES = 64 << 20

# --------------------------------------------------------------------- the run's configuration

# Spec fields that change no number (names, text, where the file lies, which other variants exist):
# left out of a run's configuration, so that records made in another checkout, on another machine
# or with edited wording still count as the same configuration.
COSMETIC = {"name", "title", "paper", "baselines", "path", "profile", "scaled_down", "profile_note", "deviations",
            "overrides", "reference_variant", "variants", "grid_cells", "table_columns"}
COSMETIC_VARIANT = {"name", "label", "baseline", "grid"}
DATA_USED = ("dataset", "source", "n_train", "n_val", "n_test", "test_set")  # the data a run actually used


def flat(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def run_config(resolved: dict, variant: str, data: dict | None, defaults: dict | None = None) -> dict[str, Any]:
    """Everything that decides a run's numbers, flattened to 'table.key' -> value: the resolved
    spec without its cosmetic fields and seeds, the variant's own settings, and the data actually
    used. Two runs with equal configurations differ only by their seed.

    `defaults` ('table.key' -> the spec's default, `suite.spec.schema.defaults`): settings at their
    default are left out, so that an option added later, at its default, changes no configuration
    (records made before it existed still match the runs made after)."""
    chosen = next((v for v in resolved.get("variants", []) if v.get("name") == variant), {})
    config = {k: v for k, v in resolved.items() if k not in COSMETIC}
    for table in ("train", "study"):  # the seeds are the run's, not the configuration's
        if isinstance(config.get(table), dict):
            config[table] = {k: v for k, v in config[table].items() if k != "seeds"}
    config["variant"] = {k: v for k, v in chosen.items() if k not in COSMETIC_VARIANT}
    config["data_used"] = {k: (data or {}).get(k) for k in DATA_USED}
    out = flat(config)
    if defaults:
        out = {k: v for k, v in out.items() if not (k in defaults and v == defaults[k])}
    return out


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a run configuration (records with equal hashes are comparable)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def record_config(record: dict, defaults: dict | None = None) -> dict[str, Any]:
    """A record's run configuration, by the same rule as when it was made."""
    return run_config(record["spec"]["resolved"], record["variant"], record.get("data"), defaults)


# Summary figures a spec may ask its table to show (its `table_columns`): key -> (label, unit, divisor).
SUMMARY_COLUMNS = {
    "latent_weight_bytes": ("latent weights", "KiB", 1024),  # measured after training (suite/nn/storage.py)
    "weight_storage_bytes": ("all weights + buffers", "KiB", 1024),
    "optimizer_state_bytes": ("optimizer state", "KiB", 1024),
    "bytes_sent_per_step": ("sent per step per rank", "bytes", 1),  # a gradient-compression hook's count
}

# --------------------------------------------------------------------- making and writing


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs (random suffix)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def new_record(resolved: dict, variant: str, seed: int, data: dict | None, provenance: dict, config: str,
               run_id: str | None = None, **fields) -> dict:
    """A run's record as it starts (`config`: its configuration hash): status "interrupted" until
    it ends, no epochs yet."""
    return {"schema": SCHEMA, "run_id": run_id or new_run_id(), "status": "interrupted", "started": now_utc(),
            "finished": None,
            "spec": {"name": resolved["name"], "path": resolved["path"], "profile": resolved["profile"],
                     "scaled_down": resolved["scaled_down"], "config_hash": config, "resolved": resolved},
            "variant": variant, "seed": seed, "data": data, **fields,
            "epochs": [], "summary": {}, "provenance": provenance}


def inside(folder: Path, *parts: str) -> Path:
    """folder/parts..., refusing any part that would lead outside `folder` (names are checked when a
    spec loads; this guards every path the suite writes)."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise ValueError(f"unsafe path part {part!r} under {folder}")
    return Path(folder).joinpath(*parts)


def record_path(results_dir: Path, spec: str, profile: str, variant: str, seed: int, run_id: str) -> Path:
    return inside(Path(results_dir), "records", spec, profile, f"{run_id}-{variant}-s{seed}.json")


def write_atomic(path: Path, data: str | bytes, overwrite: bool = False) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a reader sees the old
    file or the whole new one, never a half. With overwrite=False an existing file is an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from other users of a shared results/
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never clobber a record
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(path: Path, record: dict, overwrite: bool = False) -> None:
    """Atomic; `overwrite` only for the same run's progress updates (same run id, same file)."""
    write_atomic(path, json.dumps(record, indent=1, sort_keys=False, allow_nan=True) + "\n", overwrite=overwrite)


# --------------------------------------------------------------------- reading and checking

_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
# field -> accepted types, for every record; the report and the check rely on these.
_FIELDS = {"schema": (int,), "run_id": (str,), "status": (str,), "spec": (dict,), "variant": (str,),
           "seed": (int,), "epochs": (list,), "summary": (dict,), "provenance": (dict,)}
_SPEC_FIELDS = {"name": (str,), "profile": (str,), "scaled_down": (bool,), "config_hash": (str,),
                "resolved": (dict,)}
_EPOCH_FIELDS = {"epoch": (int,), "train_loss": _NUMBER, "test_error": _NUMBER}
_EPOCH_OPTIONAL = {"val_error": _OPTIONAL_NUMBER, "train_seconds": _NUMBER, "peak_rss_mb": _NUMBER,
                   "peak_tensor_mb": _OPTIONAL_NUMBER, "step_tensor_mb": _OPTIONAL_NUMBER}
# A completed training run's summary, as tables read it.
_SUMMARY_FIELDS = {"epochs_run": (int,), "test_error_at_best_val": _NUMBER, "median_epoch_seconds": _NUMBER,
                   "peak_rss_mb": _NUMBER}


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is type(None) else {"int": "integer", "float": "number", "str": "string",
                                                       "dict": "object", "list": "array", "bool": "boolean"}[t.__name__]
                       for t in types)


def _has(obj: dict, fields: dict, where: str, optional: bool = False) -> str | None:
    for key, types in fields.items():
        value = obj.get(key, ...)
        if value is ...:
            if optional:
                continue
            return f"{where}{key}: missing"
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return f"{where}{key}: expected {_type_names(types)}, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value) and key not in ("train_loss", "val_error"):
            return f"{where}{key}: not a finite number ({value})"
    return None


def check_record(rec: Any) -> str | None:
    """What is wrong with a parsed record (one line), or None: the fields every reader of records
    relies on, with their types."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    problem = _has(rec, _FIELDS, "")
    if problem:
        return problem
    if rec["schema"] != SCHEMA:
        return f"schema {rec['schema']!r}, this suite reads {SCHEMA}"
    if rec["status"] not in STATUSES:
        return f"unknown status {rec['status']!r}; expected one of {', '.join(STATUSES)}"
    problem = _has(rec["spec"], _SPEC_FIELDS, "spec.")
    if problem:
        return problem
    if not isinstance(rec["spec"]["resolved"].get("variants", []), list):
        return "spec.resolved.variants: expected an array"
    for i, epoch in enumerate(rec["epochs"]):
        if not isinstance(epoch, dict):
            return f"epochs[{i}]: expected an object"
        if problem := _has(epoch, _EPOCH_FIELDS, f"epochs[{i}].") or \
                _has(epoch, _EPOCH_OPTIONAL, f"epochs[{i}].", optional=True):
            return problem
    if rec["status"] == "completed" and not rec.get("study"):
        if not rec["epochs"]:
            return "a completed training run with no epochs"
        if problem := _has(rec["summary"], _SUMMARY_FIELDS, "summary."):
            return problem
        if not isinstance(rec.get("model"), dict) or not isinstance(rec["model"].get("weight_memory_bytes"), _NUMBER):
            return "model.weight_memory_bytes: missing"
    if rec.get("data") is not None and not isinstance(rec["data"], dict):
        return "data: expected an object"
    return None


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(the record, None) or (None, why it cannot be used)."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None, f"larger than {MAX_RECORD_BYTES >> 20} MiB: not a record"
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return None, f"unreadable ({type(e).__name__}: {str(e)[:200]})"
    problem = check_record(rec)
    return (None, problem) if problem else (rec, None)


def read_records(results_dir: Path, spec: str | None = None) -> tuple[list[dict], list[tuple[Path, str]]]:
    """All records (of one spec, or all), and the files that could not be used, with why."""
    base = Path(results_dir) / "records"
    base = inside(base, spec) if spec else base
    records, problems = [], []
    for path in sorted(base.rglob("*.json")) if base.is_dir() else []:
        rec, problem = read_record(path)
        if problem:
            problems.append((path, problem))
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records, problems


def for_table(records: list[dict]) -> tuple[list[dict], dict]:
    """The records a table averages, per variant: those of its newest configuration (a table never
    averages runs of different settings), one per seed (n counts distinct seeds: of several records of
    one seed the newest completed one counts, else the newest). And what was left out: 'older' (count
    of older-configuration records) and 'duplicates' (variant, seed, number of records)."""
    by_variant = defaultdict(list)
    for r in records:
        by_variant[r["variant"]].append(r)
    chosen, left = [], {"older": 0, "duplicates": []}
    for variant, recs in by_variant.items():
        newest = max(recs, key=lambda r: r["run_id"])["spec"]["config_hash"]
        same = [r for r in recs if r["spec"]["config_hash"] == newest]
        left["older"] += len(recs) - len(same)
        by_seed = defaultdict(list)
        for r in same:
            by_seed[r["seed"]].append(r)
        for seed, runs in sorted(by_seed.items()):
            runs.sort(key=lambda r: (r["status"] == "completed", r["run_id"]))
            chosen.append(runs[-1])
            if len(runs) > 1:
                left["duplicates"].append((variant, seed, len(runs)))
    return chosen, left
