"""A spec's runs in this process, one after another (all ranks together under torchrun): load the
data once, execute each run, print one line per run. A failing run does not stop the others."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import load_splits
from suite.errors import UserError
from suite.run import distributed
from suite.run.execute import execute, execute_study, has_checkpoint
from suite.run.measure import pick_device
from suite.run.plan import Run
from suite.spec import Spec


@dataclass(frozen=True)
class Options:
    """How the runs of one command execute (the `run` command's options)."""

    results_dir: Path
    device: str = "auto"
    data_dir: str | None = None
    download: bool = True
    resume_only: bool = False  # only continue interrupted runs; skip the others
    fresh: bool = False  # start every run anew, never continue a checkpoint
    progress: bool = True


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _failed(run: Run, e: Exception) -> None:
    _say(f"  {run.variant.name} seed {run.seed}: FAILED ({type(e).__name__}: {e})")


def run_all(spec: Spec, runs: list[Run], options: Options) -> int:
    """Execute the runs; the number that failed."""
    if spec.study is not None:
        return _run_studies(spec, runs, options)
    return _run_training(spec, runs, options)


def _run_studies(spec: Spec, runs: list[Run], options: Options) -> int:
    """A study spec's runs: no data to load, no checkpoints (resume-only skips them all)."""
    device = pick_device(options.device)
    _say(f"{spec.name} [{spec.profile}]: study {spec.study.name}, {len(runs)} run(s) on {device}")
    failed = 0
    for run in runs:
        if options.resume_only:
            _say(f"  {run.variant.name} seed {run.seed}: a study has nothing to resume, skipped")
            continue
        try:
            path = execute_study(run, device, options.results_dir, options.progress)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one failing run does not stop the others
            failed += 1
            _failed(run, e)
            continue
        _say(f"  {run.variant.name} seed {run.seed}: completed -> {path}")
    return failed


def _run_training(spec: Spec, runs: list[Run], options: Options) -> int:
    device = distributed.setup(options.device)  # under torchrun: joins the process group
    alone = not distributed.active() and any(spec.train_for(r.variant).gradient_compression != "none" for r in runs)
    if alone:  # a gradient-compression hook needs DDP: a process group of one rank
        distributed.join_alone()
    try:
        return _train_runs(spec, runs, options, device)
    finally:
        if alone:
            distributed.cleanup()


def _train_runs(spec: Spec, runs: list[Run], options: Options, device: torch.device) -> int:
    main = distributed.is_main()
    if not main:
        distributed.barrier()  # rank 0 loads (and maybe downloads) the data first, alone
    data = load_splits(spec.data, options.data_dir, download=options.download).to(device)
    if main:
        distributed.barrier()
        ranks = f"{distributed.world()} ranks ({distributed.describe()['backend']}) x " if distributed.active() else ""
        _say(f"{spec.name} [{spec.profile}]: {len(runs)} run(s) on {ranks}{device}, {torch.get_num_threads()} "
             f"threads; data: {data.info['source']} ({data.info['path']})")
    failed = 0
    for run in runs:
        # Rank 0 decides, so that every rank skips the same runs.
        if options.resume_only and not distributed.broadcast_object(
                has_checkpoint(options.results_dir, run, data.info) if main else None):
            if main:
                _say(f"  {run.variant.name} seed {run.seed}: nothing to resume, skipped")
            continue
        try:
            path = execute(run, data, device, options.results_dir, progress=options.progress,
                           resume=not options.fresh)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one failing run does not stop the others
            failed += 1
            _failed(run, e)
            if distributed.active():
                _say(f"  rank {distributed.rank()} of {distributed.world()}: stopping this launch; rerun the same "
                     "command to continue from the last checkpoint")
                return failed
            continue
        if main:
            rec = json.loads(path.read_text())
            s = rec["summary"]
            _say(f"  {run.variant.name} seed {run.seed}: {rec['status']}, test error "
                 f"{s.get('test_error_at_best_val', float('nan')):.2f}% at best val epoch {s.get('best_epoch')}, "
                 f"{s.get('median_epoch_seconds', float('nan')):.2f} s/epoch -> {path}")
    return failed
