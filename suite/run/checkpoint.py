"""Checkpoints: a run's whole training state at the end of each epoch, written atomically, so a
killed run continues from its last complete epoch with identical results.

A checkpoint lives at ``results/checkpoints/SPEC/PROFILE/RUN_ID-VARIANT-sSEED.pt`` beside a
``.lock`` file that the running process holds (flock): a rerun resumes the newest checkpoint of
the same spec, profile, variant, seed and configuration that no live process holds, so two runs
at once never share (or clobber) one. A completed run deletes its checkpoint.

Safety: a results folder may be shared (a cluster's filesystem), so a checkpoint is untrusted
input. It is read with ``torch.load(weights_only=True)``: tensors and plain Python data only, no
code runs (every random state is stored as tensors and numbers for that; `SAFE_GLOBALS`, the
allow-list of further types, is empty). A file that does not load, or lacks the expected shape
(`problem`), is skipped with a one-line note. Its ``meta`` carries `FORMAT`: a checkpoint of
another format cannot be continued, and the run says so in one line (``--fresh`` removes it).

Debris: a killed run leaves its lock file and possibly a partial temporary file (of a checkpoint
or a record). Both belong to the run named in their file name; when a run of the same spec and
profile starts, those whose run is gone (its lock can be taken) are removed (`clean_debris`);
a live run's are never touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from suite.errors import UserError
from suite.records import RUN_ID, check_record, inside, write_error

# Bump when what a checkpoint holds changes incompatibly (keys, RNG layout): older ones are then
# refused with a message instead of failing half-way through loading.
FORMAT = 2  # 2: weights-only loadable (numpy's RNG state as a tensor); 1: pickled numpy objects (no "format")
# Types beyond torch's own weights-only set (tensors, OrderedDict, plain Python data) a checkpoint
# may hold: none, since the numpy RNG state is stored as a tensor.
SAFE_GLOBALS: tuple = ()
TRAINER_KEYS = ("model", "optimizer", "scheduler", "method", "rng")
RNG_KEYS = ("torch", "cuda", "numpy", "python", "batches")
_NAME = re.compile(rf"(?P<run_id>{RUN_ID})-(?P<variant>.+)-s(?P<seed>\d+)")
_TEMP = re.compile(r"\.(?P<stem>.+)\.(?:pt|json)\.[^.]+\.tmp")  # mkstemp's names: .FILE.XXXXXXXX.tmp


def folder(results_dir: Path, spec: str, profile: str) -> Path:
    return inside(Path(results_dir), "checkpoints", spec, profile)


def checkpoint_path(results_dir: Path, spec: str, profile: str, variant: str, seed: int, run_id: str) -> Path:
    return inside(folder(results_dir, spec, profile), f"{run_id}-{variant}-s{seed}.pt")


def _say(line: str) -> None:
    print(line, file=sys.stderr)


class RunLock:
    """An exclusive, non-blocking flock held for the life of a run (released by the OS if the
    process dies, so a killed run's checkpoint becomes resumable at once)."""

    def __init__(self, checkpoint: Path):
        self.path = Path(checkpoint).with_suffix(".lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock, or False if a live process holds it. The lock is on the file now at
        `path`: a lock file removed by `clean_debris` between our open and our flock is not ours."""
        for _ in range(3):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise write_error(self.path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # the file was removed meanwhile: lock the one there now
        return False

    def release(self, remove: bool = False) -> None:
        """Release the lock; with `remove`, delete the lock file first (while still holding it)."""
        if self._fd is not None:
            if remove:
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class _Writer:
    """The file torch.save writes to, keeping what interrupted a write (an OSError, Ctrl-C): torch
    turns it into "[enforce fail at inline_container.cc] unexpected pos", which says nothing of a
    full disk, or of a Ctrl-C."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except BaseException as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save(path: Path, state: dict) -> None:
    """torch.save to a temporary file in the same folder, fsync, rename over the old one. A write
    that fails (full disk, read-only folder) is a one-line UserError and leaves no temporary file."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(state, writer)
            except RuntimeError as e:
                if writer.error is not None:
                    raise writer.error from None
                raise write_error(path, e) from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def record_text(record: dict) -> str:
    """The run's record as a checkpoint holds it: its JSON text (plain data, whatever types the
    record's values had, e.g. torch's version string)."""
    return json.dumps(record, allow_nan=True)


def problem(state) -> str | None:
    """What is wrong with a loaded checkpoint's shape (one line), or None. A checkpoint of another
    `FORMAT` passes here (its meta is enough to tell whose it is); `body_problem` checks the rest."""
    if not isinstance(state, dict) or not all(isinstance(state.get(k), dict) for k in ("meta", "trainer")):
        return "not a checkpoint of this suite (expected meta, trainer and record)"
    meta = state["meta"]
    for key in ("config_hash", "run_id", "variant"):
        if not isinstance(meta.get(key), str):
            return f"meta.{key}: missing"
    if not isinstance(meta.get("seed"), int) or isinstance(meta["seed"], bool):
        return "meta.seed: missing"
    return None


def body_problem(state: dict, spec: str, profile: str) -> str | None:
    """What is wrong with the trainer state and record of a checkpoint of this `FORMAT` (found
    under `spec` and `profile`), or None."""
    trainer, meta = state["trainer"], state["meta"]
    try:
        record = json.loads(state["record"]) if isinstance(state.get("record"), str) else None
    except (ValueError, RecursionError):
        record = None
    if record is None:
        return "its record: expected the record's JSON text"
    state["record"] = record
    if missing := [k for k in TRAINER_KEYS if k not in trainer]:
        return f"its trainer state lacks {', '.join(missing)}"
    rng = trainer["rng"]
    if not isinstance(rng, dict) or any(k not in rng for k in RNG_KEYS) or not isinstance(rng["numpy"], dict):
        return "trainer.rng: expected the random states " + ", ".join(RNG_KEYS)
    if why := check_record(record):
        return f"its record: {why}"
    if (record["run_id"], record["variant"], record["seed"]) != (meta["run_id"], meta["variant"], meta["seed"]):
        return "its record is of another run than its meta says"
    if (record["spec"]["name"], record["spec"]["profile"]) != (spec, profile):
        return f"its record is of {record['spec']['name']} [{record['spec']['profile']}], not {spec} [{profile}]"
    if record["status"] != "interrupted":
        return f"its record's status is {record['status']!r}, not 'interrupted'"
    return None


def stale(path: Path, why: str) -> UserError:
    """The one line for a checkpoint of this run that cannot be continued, and what to do."""
    return UserError(f"{path}: this run's checkpoint {why}: it cannot be continued; rerun the same command with "
                     "--fresh to start the run anew (that removes the stale checkpoint)")


def load(path: Path) -> dict:
    """A checkpoint, loaded without running code (weights only); raises on any failure. torch's
    warnings about a foreign file (another pickle protocol) stay quiet: its error is the one line."""
    with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def load_found(path: Path) -> dict:
    """The checkpoint rank 0 found and checked, on another rank (the results folder is shared):
    loaded the same way, its record parsed."""
    state = load(path)
    state["record"] = json.loads(state["record"])
    return state


def read(path: Path) -> tuple[dict | None, str | None]:
    """(the checkpoint, None) or (None, why it cannot be used), never raising."""
    if not path.is_file():  # a folder, or a FIFO that would block the load forever
        return None, "not a regular file"
    try:
        state = load(path)
    except Exception as e:  # noqa: BLE001 - whatever the file holds, it is not resumed
        text = str(e).strip()
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        inner = re.search(r"WeightsUnpickler error:\s*([^\n]*)", text)  # torch's cause inside its long message
        if refused:
            return None, (f"it refers to Python objects ({refused.group(1)}) that a weights-only load refuses, so it "
                          "was not unpickled (a checkpoint of an older suite, or not one)")
        detail = inner.group(1) if inner else text.splitlines()[0] if text else ""
        return None, f"cannot be loaded ({type(e).__name__}: {detail[:200]})"
    why = problem(state)
    return (None, why) if why else (state, None)


_noted: set[tuple[str, str]] = set()


def _note(path: Path, why: str) -> None:
    if (str(path), why) not in _noted:  # once per file and reason (--resume looks twice)
        _noted.add((str(path), why))
        _say(f"note: checkpoint {path} skipped: {why}; --fresh removes it")


def _candidates(results_dir: Path, spec: str, profile: str, variant: str, seed: int) -> list[tuple[Path, str]]:
    """This run's checkpoint files (by exact name: run id, variant, seed) and their run ids, newest first."""
    out = []
    base = folder(results_dir, spec, profile)
    for path in base.glob("*.pt") if base.is_dir() else []:
        m = _NAME.fullmatch(path.stem)
        if m and m["variant"] == variant and int(m["seed"]) == seed:
            out.append((path, m["run_id"]))
    return sorted(out, reverse=True)


def _whose(state: dict, run_id: str, variant: str, seed: int) -> str | None:
    meta = state["meta"]
    if (meta["run_id"], meta["variant"], meta["seed"]) != (run_id, variant, seed):
        return "its meta names another run than its file name"
    return None


def find_resumable(results_dir: Path, spec: str, profile: str, variant: str, seed: int,
                   config_hash: str) -> tuple[Path, RunLock, dict] | None:
    """The newest checkpoint of this run's configuration that no live process holds, locked for
    the caller, with its state. Files that do not load or lack the expected shape are skipped with
    a one-line note; one of this configuration in another `FORMAT` is a UserError saying what to do."""
    for path, run_id in _candidates(results_dir, spec, profile, variant, seed):
        lock = RunLock(path)
        if not lock.acquire():
            continue  # a live run's
        state, why = read(path)
        why = why or _whose(state, run_id, variant, seed)
        if why is None and state["meta"]["config_hash"] != config_hash:
            lock.release(remove=True)
            continue  # another configuration's: resumable by that configuration's command
        if why is None and state["meta"].get("format") != FORMAT:
            lock.release(remove=True)
            raise stale(path, f"was written in checkpoint format {state['meta'].get('format', 1)!r} and this "
                              f"code reads format {FORMAT}")
        why = why or body_problem(state, spec, profile)
        if why is not None:
            lock.release(remove=True)
            _note(path, why)
            continue
        return path, lock, state
    return None


def remove_stale(results_dir: Path, spec: str, profile: str, variant: str, seed: int, config_hash: str) -> None:
    """--fresh: delete this run's checkpoints that no live process holds, except those of other
    valid configurations (still resumable by their own command)."""
    for path, run_id in _candidates(results_dir, spec, profile, variant, seed):
        lock = RunLock(path)
        if not lock.acquire():
            continue
        state, why = read(path)
        if why or _whose(state, run_id, variant, seed) or state["meta"]["config_hash"] == config_hash:
            path.unlink(missing_ok=True)
            _say(f"note: removed checkpoint {path} (--fresh)")
        lock.release(remove=True)


def clean_debris(results_dir: Path, spec: str, profile: str) -> list[Path]:
    """Remove the lock files and partial temporary files (of checkpoints and records) left by runs
    of this spec and profile that are gone; a live run holds its lock, so its files are never
    touched. Returns the paths removed."""
    base = folder(results_dir, spec, profile)
    if not base.is_dir():
        return []
    records = inside(Path(results_dir), "records", spec, profile)
    temps: dict[str, list[Path]] = {}
    for where in (base, records):
        for path in where.glob(".*.tmp") if where.is_dir() else []:
            m = _TEMP.fullmatch(path.name)
            if m and _NAME.fullmatch(m["stem"]):
                temps.setdefault(m["stem"], []).append(path)
    removed = []
    for stem in sorted({p.stem for p in base.glob("*.lock") if _NAME.fullmatch(p.stem)} | set(temps)):
        resumable = (base / f"{stem}.pt").exists()  # its lock file stays beside it (the rerun takes it)
        if resumable and stem not in temps:
            continue
        lock = RunLock(base / f"{stem}.lock")
        if not lock.acquire():
            continue  # its run is alive
        for path in temps.get(stem, []):
            path.unlink(missing_ok=True)
            removed.append(path)
        if not resumable:
            removed.append(lock.path)
        lock.release(remove=not resumable)
    return removed


def rng_states(generator: torch.Generator) -> dict:
    """Every random state a run draws from: torch (CPU and CUDA), numpy, random, the batch order.
    As tensors and plain numbers, so that a weights-only load reads them."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
        "batches": generator.get_state(),
    }


def restore_rng_states(states: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(states["python"])
    generator.set_state(states["batches"])
