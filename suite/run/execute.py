"""One run -> one record: a training run (trained, measured, checkpointed every epoch, resumable)
or a study's run (suite/studies/), both recorded by the same rules (`suite/records.py`).

A training run: seed everything, build the variant's model, train for the spec's epochs with the
training part and the evaluation timed separately, measure each epoch's peak memory, pick the
test error at the best validation epoch, and write one record. Its record says status
"interrupted" until it ends (with the epochs done so far), "failed" with the error when it raises.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from pathlib import Path

import torch

from suite.data import Splits
from suite.errors import UserError
from suite.records import config_hash, new_record, new_run_id, now_utc, record_path, run_config, write_record
from suite.run import checkpoint, distributed
from suite.run.checkpoint import RunLock, checkpoint_path, find_resumable
from suite.run.measure import provenance
from suite.run.plan import Run
from suite.run.trainer import Trainer, train_epochs
from suite.spec.schema import defaults
from suite.studies import params_for, study_module


def run_config_hash(run: Run, data_info: dict | None) -> str:
    """The configuration hash of the record this run writes (`suite.records.run_config`)."""
    return config_hash(run_config(run.spec.resolved(), run.variant.name, data_info, defaults()))


def has_checkpoint(results_dir: Path, run: Run, data_info: dict) -> bool:
    """Whether an interrupted run of this configuration could be continued (nothing locked)."""
    found = find_resumable(Path(results_dir), run.spec.name, run.spec.profile, run.variant.name, run.seed,
                           run_config_hash(run, data_info))
    if found:
        found[1].release()
    return found is not None


def _fail(record: dict, e: Exception, path: Path | None) -> None:
    """Record the failure (a failed run is a finding too); the caller raises it again."""
    record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
                  finished=now_utc())
    if distributed.active():
        record["error"] += (f" (rank {distributed.rank()} of {distributed.world()}: another rank may have "
                            "stopped; rerun the same command to continue from the last checkpoint)")
    if path is not None:
        write_record(path, record, overwrite=True)


# What a state that does not fit raises from load_state_dict (torch, numpy, random): names, shapes, types.
_MISFIT = (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def _continue(trainer: Trainer, path: Path, state: dict) -> None:
    """Load a checkpoint's trainer state; one that no longer fits this code is a one-line UserError."""
    try:
        trainer.load_state_dict(state["trainer"])
    except _MISFIT as e:
        detail = " ".join(str(e).split())[:300]
        raise checkpoint.stale(path, f"no longer fits this code ({type(e).__name__}: {detail})") from None


def _resumable(trainer: Trainer, run: Run, results_dir: Path, config: str, resume: bool):
    """Rank 0: clean the debris of gone runs, then find this run's checkpoint (locked) and load it
    (or, without `resume`, remove this run's stale checkpoints). (found, why not) with found =
    (path, lock, state) or None, and the one-line reason a found checkpoint cannot be continued."""
    spec, variant = run.spec, run.variant
    checkpoint.clean_debris(results_dir, spec.name, spec.profile)
    if not resume:
        checkpoint.remove_stale(results_dir, spec.name, spec.profile, variant.name, run.seed, config)
        return None, None
    try:
        found = find_resumable(results_dir, spec.name, spec.profile, variant.name, run.seed, config)
        if found:
            try:
                _continue(trainer, found[0], found[2])
            except UserError:
                found[1].release()
                raise
    except UserError as e:
        return None, str(e)
    return found, None


def execute(run: Run, data: Splits, device: torch.device, results_dir: Path, progress: bool = True,
            resume: bool = True) -> Path:
    """Train and measure one run; write its record (also when it fails) and return its path.

    With `resume`, a checkpoint of the same spec, profile, variant, seed and configuration left
    by an interrupted run is continued (same run id, same record file) instead of starting over;
    without it, that run's stale checkpoints are removed.
    """
    spec, variant = run.spec, run.variant
    results_dir = Path(results_dir)
    config = run_config_hash(run, data.info)
    trainer = Trainer(run, data, device)
    # Distributed: rank 0 alone finds (and locks), writes and checkpoints; every rank continues the
    # checkpoint it found (the results folder must be shared by the nodes).
    main = distributed.is_main()
    found, why_not = _resumable(trainer, run, results_dir, config, resume) if main else (None, None)
    why_not = distributed.broadcast_object(why_not)
    if why_not:
        raise UserError(why_not)
    lock = found[1] if found else None
    resume_from = distributed.broadcast_object(found[0] if found else None)
    if resume_from:
        ckpt = resume_from
        state = found[2] if main else checkpoint.load_found(ckpt)  # rank 0 loaded and checked it above
        if not main:
            _continue(trainer, ckpt, state)
        distributed.share_cuda_rng(device)
        record = state["record"]
        record.setdefault("resumed_at_epochs", []).append(len(record["epochs"]))
        record["distributed"] = distributed.describe()  # this launch's (a rerun may use other ranks)
    else:
        record = new_record(spec.resolved(), variant.name, run.seed, data.info, provenance(device), config,
                            run_id=distributed.broadcast_object(new_run_id()),  # rank 0's on every rank
                            model=trainer.model_summary(), memory_method=trainer.peak.cpu_method,
                            tensor_memory_method=trainer.tensors.method,
                            distributed=distributed.describe())
        ckpt = checkpoint_path(results_dir, spec.name, spec.profile, variant.name, run.seed, record["run_id"])
        if main:
            lock = RunLock(ckpt)
            lock.acquire()  # a fresh run id: nobody else holds it
    path = record_path(results_dir, spec.name, spec.profile, variant.name, run.seed, record["run_id"])

    def save_progress() -> None:
        state = trainer.state_dict()  # every rank: the gradient exchange's state is gathered
        if main:
            checkpoint.save(ckpt, {"meta": {"format": checkpoint.FORMAT, "config_hash": config,
                                            "run_id": record["run_id"], "variant": variant.name, "seed": run.seed},
                                   "trainer": state, "record": checkpoint.record_text(record)})
            write_record(path, record, overwrite=True)
        distributed.barrier()  # no rank starts the next epoch before the checkpoint to resume from exists

    try:
        train_epochs(trainer, run, record, progress and main, save_progress)
        record["model"].update(trainer.arithmetic())  # known after a forward pass (suite/nn/packed.py)
        if distributed.active():  # DDP and deterministic clipping keep the ranks' weights equal: checked
            record["distributed"]["max_weight_difference"] = distributed.max_weight_difference(trainer.model)
    except UserError:  # the results folder could not be written (full disk, ...): nothing more to record
        if main:
            lock.release(remove=not ckpt.exists())
        raise
    except Exception as e:
        _fail(record, e, path if main else None)
        if main:
            lock.release(remove=not ckpt.exists())
        raise
    except BaseException:  # Ctrl-C: the record says "interrupted", the checkpoint is the last epoch's
        if main:
            lock.release(remove=not ckpt.exists())
        raise
    record["finished"] = now_utc()
    if main:
        write_record(path, record, overwrite=True)
        ckpt.unlink(missing_ok=True)
        lock.release(remove=True)
    return path


def execute_study(run: Run, device: torch.device, results_dir: Path, progress: bool = True) -> Path:
    """Run one variant x seed of a study and write its record (also when it fails); its path."""
    spec, variant = run.spec, run.variant
    params = params_for(spec, variant)
    record = new_record(spec.resolved(), variant.name, run.seed, None, provenance(device), run_config_hash(run, None),
                        study=spec.study.name, params=dataclasses.asdict(params), tables={}, curves={})
    path = record_path(Path(results_dir), spec.name, spec.profile, variant.name, run.seed, record["run_id"])
    # A study keeps no checkpoint, but holds a run lock like a training run: the debris of a killed
    # one (a record's temporary file) is then told apart from a live one's (checkpoint.clean_debris).
    checkpoint.clean_debris(Path(results_dir), spec.name, spec.profile)
    lock = RunLock(checkpoint_path(Path(results_dir), spec.name, spec.profile, variant.name, run.seed,
                                   record["run_id"]))
    lock.acquire()
    try:
        write_record(path, record)  # "interrupted" until it ends: a killed run still shows up
        torch.manual_seed(run.seed)
        t0 = time.perf_counter()
        try:
            out = study_module(spec.study.name).run(params, run.seed, device, progress,
                                                    f"{spec.name}/{variant.name}/s{run.seed}")
        except UserError:
            raise
        except Exception as e:
            _fail(record, e, path)
            raise
        record.update(status="completed", finished=now_utc(), summary={**out.get("summary", {}),
                      "seconds": time.perf_counter() - t0}, tables=out.get("tables", {}),
                      curves=out.get("curves", {}))
        write_record(path, record, overwrite=True)
    finally:
        lock.release(remove=True)
    return path

