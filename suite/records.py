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

import errno
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

from suite.errors import UserError
from suite.paths import safe_name

SCHEMA = 1
STATUSES = ("completed", "interrupted", "diverged", "failed")
MAX_RECORD_BYTES = 64 << 20
MAX_DEPTH = 64  # nesting a record may have (its resolved spec is a few levels deep)
RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{6}"  # new_run_id(): start time, random suffix

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


def write_error(path: Path, e: BaseException) -> UserError:
    """A write into the results folder that failed (full disk, read-only or foreign folder), as
    the one line the command prints."""
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0][:200]
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
            errno.EROFS: "choose a writable --results-dir", errno.EACCES: "choose a writable --results-dir",
            errno.EPERM: "choose a writable --results-dir"}.get(getattr(e, "errno", None), "check the folder")
    return UserError(f"{path}: cannot write ({why}); {hint}, then rerun the same command (what was written "
                     "before is kept: a run continues from its last checkpoint)")


def write_atomic(path: Path, data: str | bytes, overwrite: bool = False) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a reader sees the old
    file or the whole new one, never a half. With overwrite=False an existing file is an error
    (FileExistsError). A write that fails (full disk, read-only folder) is a one-line UserError
    and leaves no temporary file."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from other users of a shared results/
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never clobber a record
    except FileExistsError:
        raise
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_record(path: Path, record: dict, overwrite: bool = False) -> None:
    """Atomic; `overwrite` only for the same run's progress updates (same run id, same file)."""
    write_atomic(path, json.dumps(record, indent=1, sort_keys=False, allow_nan=True) + "\n", overwrite=overwrite)


# --------------------------------------------------------------------- reading and checking

# The record's schema: every field a reader of records (report/, check/) uses, with the JSON types
# it may hold. A dict is an object's fields ("key?": optional; "*": every value of a map), a list
# [shape] an array of such items, a tuple alternatives, a string the accepted types joined by "|":
# int, num (finite), num~ (may be NaN or infinite: a diverged loss), str, name (a safe file name,
# suite.paths.SAFE_NAME), bool, null, obj, arr, any.
_EPOCH = {"epoch": "int", "train_loss": "num~", "test_error": "num", "val_error?": "num~|null",
          "train_seconds?": "num", "peak_rss_mb?": "num", "peak_cuda_mb?": "num|null", "test_error_top5?": "num|null",
          "peak_tensor_mb?": "num|null", "step_tensor_mb?": "num|null", "bytes_sent_per_step?": "num|null"}
_VARIANT = {"name": "str", "label?": "str|null", "baseline?": "str|null", "weight_quantizer?": "str",
            "input_quantizer?": "str", "gradient_quantizer?": "str", "grid?": {"*": "str"}}
_GRID_CELL = {"name": "str", "label?": "str|null", "baseline?": "str|null", "grid": {"*": "str"}}
_RESOLVED = {"title": "str", "baselines": "name", "paper?": "str", "variants": [_VARIANT],
             "grid_cells?": [_GRID_CELL], "deviations?": ["str"], "overrides?": "obj", "profile_note?": "str|null",
             "reference_variant?": "str|null", "table_columns?": ["str"],
             "train?": ({"batch_size?": "int|null"}, "null"), "data?": "obj|null", "model?": "obj|null",
             "study?": "obj|null"}
_RECORD = {"schema": "int", "run_id": "str", "status": "str", "variant": "str", "seed": "int",
           "spec": {"name": "name", "profile": "name", "scaled_down": "bool", "config_hash": "str",
                    "resolved": _RESOLVED},
           "data?": ({"n_train?": "int|null"}, "null"), "model?": "obj|null", "epochs": [_EPOCH], "summary": "obj",
           "provenance": "obj", "study?": "str"}
# ... and what a completed run's tables read besides
_PROVENANCE = {"device": "str", "device_name": "any", "torch": "any", "torch_threads": "any", "git_commit": "any",
               "malloc?": "str"}
_COMPLETED_TRAINING = {
    "data": {"n_train?": "int|null"},
    "model": {"weight_memory_bytes": "num", "weight_memory_saving": "num"},
    "summary": {"epochs_run": "int", "test_error_at_best_val": "num", "median_epoch_seconds": "num",
                "peak_rss_mb": "num", "final_test_error?": "num", "min_test_error?": "num|null",
                "test_error_top5_at_best_val?": "num|null", "peak_cuda_mb?": "num|null",
                "peak_tensor_mb?": "num|null", "step_tensor_mb?": "num|null",
                **{f"{key}?": "num|null" for key in SUMMARY_COLUMNS}},
    "provenance": _PROVENANCE}
_COMPLETED_STUDY = {"summary": {"seconds": "num"}, "provenance": _PROVENANCE, "tables": "obj", "curves?": "obj"}
_TYPE_NAMES = {"int": "an integer", "num": "a finite number", "num~": "a number", "str": "a string",
               "name": "a safe name (letters, digits, '_', '.', '+', '-')", "bool": "true or false", "null": "null",
               "obj": "an object", "arr": "an array", "any": "anything"}


def _fits(value: Any, token: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {"int": isinstance(value, int) and not isinstance(value, bool),
            "num": number and math.isfinite(value), "num~": number, "str": isinstance(value, str),
            "name": isinstance(value, str) and safe_name(value), "bool": isinstance(value, bool),
            "null": value is None, "obj": isinstance(value, dict), "arr": isinstance(value, list),
            "any": True}[token]


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def schema_problem(value: Any, shape: Any, where: str) -> str | None:
    """What in `value` does not fit `shape` (the schema language above), as 'where.key: ...'."""
    if isinstance(shape, str):
        tokens = shape.split("|")
        if any(_fits(value, t) for t in tokens):
            return None
        return f"{where}: expected {' or '.join(_TYPE_NAMES[t] for t in tokens)}, got {_shown(value)}"
    if isinstance(shape, tuple):  # alternatives: the first that fits, else the first's complaint
        problems = [schema_problem(value, alternative, where) for alternative in shape]
        return None if None in problems else problems[0]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where}: expected an array, got {_shown(value)}"
        return next((p for i, item in enumerate(value) if (p := schema_problem(item, shape[0], f"{where}[{i}]"))),
                    None)
    if not isinstance(value, dict):
        return f"{where}: expected an object, got {_shown(value)}"
    for key, sub in shape.items():
        if key == "*":
            problem = next((p for k, v in value.items() if (p := schema_problem(v, sub, f"{where}.{k}"))), None)
        elif key.rstrip("?") not in value:
            problem = None if key.endswith("?") else f"{where}.{key}: missing"
        else:
            problem = schema_problem(value[key.rstrip("?")], sub, f"{where}.{key.rstrip('?')}")
        if problem:
            return problem.lstrip(".")
    return None


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (iterative: any depth)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            todo += [(child, level + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def check_record(rec: Any) -> str | None:
    """What is wrong with a parsed record (one line), or None: every field a reader of records
    relies on, with its types (`_RECORD`; a completed run's too)."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {_shown(rec)}"
    if depth(rec) > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep: not a record"
    if problem := schema_problem(rec, {k: v for k, v in _RECORD.items() if k in ("schema",)}, ""):
        return problem
    if rec["schema"] != SCHEMA:
        return f"schema {rec['schema']!r}, this suite reads {SCHEMA}"
    if problem := schema_problem(rec, _RECORD, ""):
        return problem
    if rec["status"] not in STATUSES:
        return f"status: unknown {rec['status']!r}; expected one of {', '.join(STATUSES)}"
    if rec["status"] != "completed":
        return None
    if rec.get("study") is not None:
        return schema_problem(rec, _COMPLETED_STUDY, "")
    if not rec["epochs"]:
        return "epochs: a completed training run with none"
    if problem := schema_problem(rec, _COMPLETED_TRAINING, ""):
        return problem
    if rec["spec"]["resolved"].get("reference_variant") is not None:  # the reference columns read these
        return schema_problem(rec, {"summary": {"final_test_error": "num"}, "epochs": [{"train_seconds": "num"}]}, "")
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
        where = path.relative_to(base).parts[:-1]  # (SPEC, PROFILE) in a results folder's layout
        if rec is not None and len(where) == (1 if spec else 2) and \
                (rec["spec"]["name"], rec["spec"]["profile"])[2 - len(where):] != where:
            problem = (f"in the folder of {'/'.join(where)} but its spec is {rec['spec']['name']} "
                       f"[{rec['spec']['profile']}]")
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
