"""Many runs at once: a spec's variant x seed cells (grid cells are variants) as separate
``python -m suite run`` processes, in a local pool (``run --workers N``) or printed one command per
cell for a job runner (``plan``).

A cell's command is ``python -m suite run SPEC --profile P --variant V --seed S --no-report --quiet``
plus the options of the command that planned it (--set, --device, --data-dir, --no-download,
--results-dir, --resume / --fresh). Each cell writes its own record and checkpoint, so cells share
nothing, a failing cell never stops the others, and rerunning the pool continues interrupted
cells. The table is made once, after every cell.

Local pool: at most one process per usable core, each with OMP_NUM_THREADS = cores // workers so
that the processes do not oversubscribe the cores; a cell's output goes to
``RESULTS/logs/SPEC/PROFILE/VARIANT-sSEED.log``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Cell:
    variant: str
    seed: int
    argv: tuple[str, ...]  # the arguments after ``python -m suite``

    def command(self, python: str = "python") -> list[str]:
        return [python, "-m", "suite", *self.argv]


def forwarded_options(args) -> list[str]:
    """The options of a `run` / `plan` command line that every cell's command repeats."""
    out = ["--profile", args.profile]
    for item in args.overrides:
        out += ["--set", item]
    if args.device != "auto":
        out += ["--device", args.device]
    if args.data_dir:
        out += ["--data-dir", str(args.data_dir)]
    if args.no_download:
        out.append("--no-download")
    if args.results_dir:
        out += ["--results-dir", str(args.results_dir)]
    if args.resume:
        out.append("--resume")
    if args.fresh:
        out.append("--fresh")
    return out


def plan_cells(spec_arg: str, runs, options: list[str]) -> list[Cell]:
    """One cell per planned run (harness.plan: variant x seed)."""
    return [Cell(r.variant.name, r.seed, ("run", spec_arg, *options, "--variant", r.variant.name,
                                          "--seed", str(r.seed), "--no-report", "--quiet"))
            for r in runs]


def format_plan(cells: list[Cell], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"variant": c.variant, "seed": c.seed, "argv": c.command(),
                            "command": shlex.join(c.command())} for c in cells], indent=1)
    return "\n".join(shlex.join(c.command()) for c in cells)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroup cpusets
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class CellResult:
    cell: Cell
    returncode: int
    seconds: float
    log: Path
    records: list[tuple[str, str]] = field(default_factory=list)  # (path, status) written by the cell

    @property
    def failed(self) -> bool:
        return self.returncode != 0


def _log_path(results_dir: Path, spec: str, profile: str, cell: Cell) -> Path:
    safe = re.sub(r"[^\w.+-]", "_", cell.variant)
    return Path(results_dir) / "logs" / spec / profile / f"{safe}-s{cell.seed}.log"


def _records_of(results_dir: Path, spec: str, profile: str, cell: Cell, since: float) -> list[tuple[str, str]]:
    """The records of this cell's variant and seed written since the cell started."""
    folder = Path(results_dir) / "records" / spec / profile
    found = []
    for path in sorted(folder.glob(f"*-{glob.escape(cell.variant)}-s{cell.seed}.json")):
        try:
            if path.stat().st_mtime < since:
                continue
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("variant") == cell.variant and rec.get("seed") == cell.seed:
            found.append((str(path), rec.get("status", "?")))
    return found


def last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


class _Pool:
    """Runs cells as subprocesses, at most `workers` at once; stops the live ones on Ctrl-C."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run_one(self, cell: Cell, log: Path, results_dir: Path, spec: str, profile: str) -> CellResult:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(log, "w") as out:
            out.write(shlex.join(cell.command()) + "\n")
            out.flush()
            proc = subprocess.Popen(cell.command(sys.executable), stdout=out, stderr=subprocess.STDOUT, env=env)
            with self.lock:
                self.live.add(proc)
            code = proc.wait()
            with self.lock:
                self.live.discard(proc)
        return CellResult(cell, code, time.time() - start, log,
                          _records_of(results_dir, spec, profile, cell, start - 1.0))

    def stop(self) -> None:
        with self.lock:
            for proc in self.live:
                proc.terminate()


def run_pool(cells: list[Cell], workers: int, results_dir: Path, spec: str, profile: str,
             progress: bool = True) -> list[CellResult]:
    """Run every cell; the results in the cells' order. `workers` is capped at the usable cores."""
    cores = usable_cores()
    workers = max(1, min(workers, cores, len(cells)))
    pool = _Pool(workers, max(1, cores // workers))
    print(f"{len(cells)} cell(s) in {workers} parallel process(es), {pool.threads} thread(s) each "
          f"({cores} cores); logs in {Path(results_dir) / 'logs' / spec / profile}", file=sys.stderr)
    results: dict[Cell, CellResult] = {}
    bar = tqdm(total=len(cells), unit="cell", desc=f"{spec} [{profile}]", disable=not progress)
    executor = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [executor.submit(pool.run_one, c, _log_path(results_dir, spec, profile, c), results_dir,
                                   spec, profile) for c in cells]
        for future in as_completed(futures):
            r = future.result()
            results[r.cell] = r
            if r.failed:
                bar.write(f"  {r.cell.variant} seed {r.cell.seed}: FAILED (exit {r.returncode}): {last_line(r.log)}",
                          file=sys.stderr)
            bar.update()
            bar.set_postfix(failed=sum(x.failed for x in results.values()))
    except BaseException:  # Ctrl-C: stop the running cells (they checkpoint per epoch; rerun continues)
        executor.shutdown(wait=False, cancel_futures=True)
        pool.stop()
        raise
    finally:
        bar.close()
    executor.shutdown()
    return [results[c] for c in cells]


def format_results(results: list[CellResult]) -> str:
    """One row per cell: its record's status and path (or, where it failed, its log and last line)."""
    rows = []
    for r in results:
        status = ", ".join(s for _, s in r.records) or "no record"
        where = "; ".join(p for p, _ in r.records)
        if r.failed:
            where = f"{where + '; ' if where else ''}log {r.log}: {last_line(r.log)}"
        rows.append([r.cell.variant, r.cell.seed, "FAILED" if r.failed else "ok", r.returncode, status,
                     f"{r.seconds:.1f}", where])
    failed = sum(r.failed for r in results)
    head = f"{len(results) - failed} of {len(results)} cell(s) ok" + (f", {failed} FAILED" if failed else "")
    return head + "\n" + tabulate(rows, headers=["variant", "seed", "cell", "exit", "record status", "seconds",
                                                 "record (log if failed)"], tablefmt="github")
