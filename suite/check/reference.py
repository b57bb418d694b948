"""A check's two sides: the committed reference (``results/reference/SPEC/PROFILE/``: the harness's
own records plus ``reference.json``: seeds, threads, time samples, machine load, commit) and a
fresh attempt of the same profile, made the same way: the ordinary runs (`suite.run.local`) into a
temporary folder, then each variant's time samples (`suite/check/timing.py`)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

from suite.check import timing
from suite.check.compare import Attempt
from suite.errors import UserError
from suite.records import read_records
from suite.run.local import Options, run_all
from suite.run.plan import Run, plan
from suite.spec import Spec

META = "reference.json"
DEFAULT_SEEDS = {"smoke": 5}  # reference seeds per profile for --update (others: the spec's own)
DEFAULT_THREADS = 1  # torch threads of a new reference (the check uses the reference's)


MAX_META_BYTES = 16 << 20


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def reference_dir(root: Path, spec: str, profile: str) -> Path:
    return Path(root) / spec / profile


def _fail(folder: Path, why: str) -> UserError:
    return UserError(f"{folder / META}: {why}; remake the reference with check --update")


def read_reference(folder: Path) -> Attempt | None:
    """The reference in `folder` (its meta, records and time samples), or None when there is none.
    A reference that cannot be used is a one-line UserError, never a pass."""
    folder = Path(folder)
    meta_path = folder / META
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: a file where the reference folder should be; remake the reference with "
                        "check --update")
    if not meta_path.exists() and not meta_path.is_symlink():
        return None
    try:
        if not meta_path.is_file():
            raise _fail(folder, "not a regular file")
        if meta_path.stat().st_size > MAX_META_BYTES:
            raise _fail(folder, f"larger than {MAX_META_BYTES >> 20} MiB")
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(folder, f"unreadable ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise _fail(folder, f"expected a JSON object, got {type(meta).__name__}")
    seeds, threads = meta.get("seeds"), meta.get("threads")
    if not isinstance(seeds, list) or not seeds or not all(_integer(s) for s in seeds):
        raise _fail(folder, "seeds: expected a non-empty list of integers")
    if not _integer(threads) or threads < 1:
        raise _fail(folder, "threads: expected a positive integer")
    samples = meta.get("timing", {})
    if not isinstance(samples, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("samples"), list) and all(_positive(x) for x in v["samples"])
            and (v.get("unit_epochs") is None or (_integer(v["unit_epochs"]) and v["unit_epochs"] >= 1))
            for v in samples.values()):
        raise _fail(folder, "timing: expected {variant: {unit_epochs: a positive integer, samples: [positive "
                            "numbers]}}")
    records, problems = read_records(folder)
    if problems:
        path, why = problems[0]
        raise UserError(f"{path}: {why}; remake the reference with check --update")
    ran = {(r["variant"], r["seed"]) for r in records}
    if not records or any((v, s) not in ran for v in {r["variant"] for r in records} for s in seeds):
        raise _fail(folder, f"its records do not hold every variant for seeds {seeds}")
    return Attempt(meta, records, {v: t["samples"] for v, t in samples.items()})


def write_reference(folder: Path, attempt: Attempt, run_out: Path) -> None:
    """Replace `folder` with the attempt's records (from `run_out`) and meta, all at once."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    (new / "records").mkdir()
    for path in sorted((run_out / "records").rglob("*.json")):
        shutil.copy2(path, new / "records" / path.name)
    (new / META).write_text(json.dumps(attempt.meta, indent=1) + "\n")
    new.chmod(0o755)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def reference_seeds(profile: str, spec_seeds: list[int], n: int | None) -> list[int]:
    if n is not None:
        return list(range(1, n + 1))
    return list(range(1, DEFAULT_SEEDS[profile] + 1)) if profile in DEFAULT_SEEDS else list(spec_seeds)


def time_samples(spec: Spec, variants: list[str], seed: int, unit_epochs: dict[str, int], data_dir: str | None,
                 rounds: int = timing.ROUNDS) -> dict[str, dict]:
    """Each variant's time samples (a training spec's; a study has no epochs to time): its unit of
    work, `unit_epochs[variant]` epochs (measured from one epoch where not given), over the calibration."""
    from suite.data import load_splits
    from suite.run.trainer import Trainer

    if spec.study is not None:
        return {}
    data = load_splits(spec.data, data_dir, download=False)
    out = {}
    for name in variants:
        trainer = Trainer(Run(spec, spec.variant(name), seed), data, torch.device("cpu"))
        epochs = unit_epochs.get(name)
        if epochs is None:
            trainer.train_one_epoch()  # warm-up, then one epoch sets the unit
            epochs = timing.unit_epochs(trainer.train_one_epoch()[1])
        out[name] = {"unit_epochs": epochs,
                     "samples": timing.unit_ratios(lambda t=trainer: t.train_one_epoch()[0], epochs, rounds)}
    return out


def make_attempt(spec: Spec, seeds: list[int], threads: int, unit_epochs: dict[str, int] | None,
                 variants: list[str] | None = None, data_dir: str | None = None,
                 timing_rounds: int = timing.ROUNDS) -> tuple[Attempt, Path]:
    """One attempt of the profile into a fresh temporary folder (the caller removes it): the runs,
    then the time samples (none with timing_rounds = 0), all on `threads` torch threads."""
    out = Path(tempfile.mkdtemp(prefix="suite-check-"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load = timing.OtherLoad()
        failed = run_all(spec, plan(spec, variants, seeds),
                         Options(results_dir=out, device="cpu", data_dir=data_dir, download=False, fresh=True,
                                 progress=False))
        names = variants or [v.name for v in spec.variants]
        samples = time_samples(spec, names, seeds[0], unit_epochs or {}, data_dir, timing_rounds) \
            if timing_rounds else {}
        other_load = load.read()
    finally:
        torch.set_num_threads(before)
    records, problems = read_records(out, spec.name)
    if problems:
        raise UserError(f"{problems[0][0]}: {problems[0][1]}")
    meta = {"spec": spec.name, "profile": spec.profile, "seeds": seeds, "threads": threads,
            "calibration": timing.CALIBRATION, "other_load": other_load, "failed_runs": failed,
            "timing": samples}
    return Attempt(meta, records, {v: t["samples"] for v, t in samples.items()}), out


def more_samples(spec: Spec, attempt: Attempt, variants: list[str], unit_epochs: dict[str, int],
                 data_dir: str | None) -> None:
    """Another set of time samples for `variants`, appended to the attempt's."""
    before = torch.get_num_threads()
    torch.set_num_threads(attempt.meta["threads"])
    try:
        for name, t in time_samples(spec, variants, attempt.meta["seeds"][0], unit_epochs, data_dir).items():
            attempt.timing[name] = attempt.timing.get(name, []) + t["samples"]
    finally:
        torch.set_num_threads(before)


def provenance_meta() -> dict:
    from suite.run.measure import provenance

    p = provenance(torch.device("cpu"))
    return {"provenance": {k: p.get(k) for k in ("git_commit", "torch", "python", "platform", "device_name",
                                                  "cpu", "cpu_count")},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

