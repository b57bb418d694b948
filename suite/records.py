"""Run records: the schema, atomic write (never overwriting), and reading them back.

A record is one JSON file per run (spec x profile x variant x seed) under
``results/records/SPEC/PROFILE/``. Everything downstream (reports, checks) reads records, never
live objects. Schema version 1 fields:

    schema, run_id, status (completed | interrupted | diverged | failed), started, finished,
    spec      {name, path, profile, scaled_down, config_hash, resolved}
    variant, seed,
    data      {dataset, source, path, n_train, n_val, n_test, test_set}
    model     {parameters, weight_memory_bytes, float32_weight_bytes, weight_memory_saving}
    epochs    [{epoch, lr, train_loss, val_error, test_error, train_seconds, eval_seconds,
                samples_per_second, peak_rss_mb, peak_cuda_mb}]
    summary   {epochs_run, best_epoch, best_val_error, test_error_at_best_val, final_test_error,
               median_epoch_seconds, median_samples_per_second, peak_rss_mb, peak_cuda_mb}
    provenance {git_commit, versions, device, device_name, torch_threads, fused_cpu_kernels, malloc, ...}
    distributed {world_size (1 without torchrun), backend (gloo | nccl | None),
                 max_weight_difference (torchrun: largest |w_rank - w_rank0| at the end, 0.0 expected)};
              under torchrun an epoch's train_loss is the ranks' mean, its times and peak memory
              the ranks' maximum (a straggler shows)
    error     (a message, when status is failed or diverged; diverged_at_epoch too)
    resumed_at_epochs (the epochs after which an interrupted run was continued, if any)

"interrupted" is the status of a run that has not ended (killed, or still running): its record
holds the epochs done so far, and a rerun continues it from its checkpoint.

Errors are in percent, times in seconds, memory in MiB ("mb").
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = 1
STATUSES = ("completed", "interrupted", "diverged", "failed")
REQUIRED = ("schema", "run_id", "status", "spec", "variant", "seed", "epochs", "summary", "provenance")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs (random suffix)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def record_path(results_dir: Path, spec: str, profile: str, variant: str, seed: int, run_id: str) -> Path:
    return Path(results_dir) / "records" / spec / profile / f"{run_id}-{variant}-s{seed}.json"


def write_atomic(path: Path, text: str, overwrite: bool = False) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a reader sees the old
    file or the whole new one, never a half. With overwrite=False an existing file is an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from other users of a shared results/
        with os.fdopen(fd, "w") as f:
            f.write(text)
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
    write_atomic(path, json.dumps(record, indent=1, sort_keys=False) + "\n", overwrite=overwrite)


def read_records(results_dir: Path, spec: str | None = None) -> tuple[list[dict], list[tuple[Path, str]]]:
    """All records (of one spec, or all), and the files that could not be used, with why."""
    base = Path(results_dir) / "records"
    base = base / spec if spec else base
    records, problems = [], []
    for path in sorted(base.rglob("*.json")) if base.exists() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append((path, f"unreadable ({e})"))
            continue
        missing = [k for k in REQUIRED if not isinstance(rec, dict) or k not in rec]
        if missing:
            problems.append((path, f"missing fields {', '.join(missing)}"))
            continue
        if rec["status"] not in STATUSES:
            problems.append((path, f"unknown status {rec['status']!r}; expected one of {', '.join(STATUSES)}"))
            continue
        if rec["schema"] != SCHEMA:
            problems.append((path, f"schema {rec['schema']!r}, this suite reads {SCHEMA}"))
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records, problems
