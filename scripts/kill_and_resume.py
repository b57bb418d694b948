"""Kill a run at random moments, rerun it, and check that it ends as an uninterrupted run does.

    python scripts/kill_and_resume.py [--experiments 20] [--epochs 6] [--seed 0]

One uninterrupted run of a smoke configuration with more epochs (binaryconnect-mnist, stochastic
BinaryConnect, a 2 x 1024 MLP on the embedded MNIST subset: a checkpoint of about 50 MB, so that
kills also land inside checkpoint writes) gives the reference metrics. Then each experiment, in a
fresh results folder, starts the same command and sends it SIGKILL, SIGINT or SIGTERM, one to
three times, each time rerunning the same command, and finally lets it finish. A signal is sent
after a random delay (uniform over an uninterrupted run's duration), or when the k-th checkpoint
write of that process (k random) has begun, plus up to 5 ms (half of the kills each). It checks
that:

- every record is completed (an interrupted one was continued, not left behind), and its per-epoch
  metrics (epoch, lr, train loss, validation and test error) are bit-identical to the
  uninterrupted run's;
- no debris remains: no checkpoint, lock or temporary file, no empty file, only records;
- a signalled run ends as that signal should (Ctrl-C: exit 130, never a one-line error).

Whether a kill landed inside a checkpoint write is seen from the temporary checkpoint file it
left. Prints one row per kill and a summary; exit code 1 if any experiment differs, leaves
debris, or fewer kills than experiments were made. Runs with OMP_NUM_THREADS=1 unless set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
METRICS = ("epoch", "lr", "train_loss", "val_error", "test_error")
# How a signalled run may end: Ctrl-C is "interrupted" (130; -2 while Python starts, before its
# handler exists); SIGKILL and SIGTERM end the process (their default action). 0: it had finished.
EXPECTED_EXIT = {"SIGINT": (130, -2, 0), "SIGKILL": (-9, 0), "SIGTERM": (-15, 0)}


def command(epochs: int) -> list[str]:
    return [sys.executable, "-m", "suite", "run", "binaryconnect-mnist", "--profile", "smoke", "--variant", "stoch",
            "--quiet", "--no-report", "--set", "data.source=embedded", "--set", "data.train_size=3000",
            "--set", "data.val_size=1000", "--set", "model.hidden=[1024, 1024]", "--set", f"train.epochs={epochs}"]


def start(results: Path, epochs: int) -> subprocess.Popen:
    env = dict(os.environ, SUITE_RESULTS_DIR=str(results))
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.Popen(command(epochs), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def records(results: Path) -> list[dict]:
    out = []
    for path in sorted((results / "records").rglob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            out.append({"status": "unreadable", "epochs": []})
    return out


def metrics(record: dict) -> list[tuple]:
    return [tuple(e[k] for k in METRICS) for e in record["epochs"]]


def debris(results: Path) -> list[str]:
    """Every file that is not a finished record: checkpoints, locks, temporary or empty files."""
    left = []
    for path in results.rglob("*"):
        if path.is_dir():
            continue
        record = path.suffix == ".json" and path.parent.parent.parent.name == "records" and path.stat().st_size > 0
        if not record or path.name.startswith("."):
            left.append(str(path.relative_to(results)))
    return sorted(left)


def epochs_done(results: Path) -> int:
    return max((len(r["epochs"]) for r in records(results)), default=0)


def partial_checkpoints(results: Path) -> set[Path]:
    """The temporary files of checkpoint writes under way (or cut short)."""
    return set((results / "checkpoints").rglob(".*.pt.*.tmp")) if (results / "checkpoints").exists() else set()


def in_checkpoint_write(results: Path, before: frozenset = frozenset()) -> bool:
    return bool(partial_checkpoints(results) - before)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random delays and signals")
    ap.add_argument("--keep", action="store_true", help="keep the results folders (printed)")
    args = ap.parse_args()
    # A shell starts a background job with Ctrl-C ignored, and the runs would inherit that: a SIGINT
    # would then be no interrupt at all. Its default handler here gives the runs the default action.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="kill-and-resume-"))
    try:
        return run_experiments(args, rng, base)
    finally:
        if args.keep:
            print(f"results folders kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def kill_at_random(proc: subprocess.Popen, results: Path, rng: random.Random, duration: float,
                   epochs: int, left_before: frozenset) -> tuple[str, float]:
    """Wait, then signal: half the time after a delay uniform over the run's duration, half the time
    when the k-th checkpoint write of this process (k random) has begun (its temporary file
    appears), plus up to 5 ms. Returns (when, seconds since the start); when is "" if the run
    ended before the signal."""
    t0 = time.monotonic()
    if rng.random() < 0.5:
        try:
            proc.wait(timeout=rng.uniform(0.0, duration))
            return "", time.monotonic() - t0
        except subprocess.TimeoutExpired:
            return "random time", time.monotonic() - t0
    target, seen, writing = rng.randint(1, max(1, epochs - 1)), 0, False  # the epoch whose checkpoint write
    while proc.poll() is None:
        now = in_checkpoint_write(results, left_before)
        seen += now and not writing
        writing = now
        if writing and seen == target:
            time.sleep(rng.uniform(0.0, 0.005))  # a 50 MB write takes ~0.1 s on a quiet machine
            return f"checkpoint write {target} began", time.monotonic() - t0
        time.sleep(0.002)
    return "", time.monotonic() - t0


def run_experiments(args, rng: random.Random, base: Path) -> int:
    runs = []
    for name in ("warm-up", "uninterrupted"):  # the first builds the fused kernels and warms the caches
        t0 = time.monotonic()
        proc = start(base / name, args.epochs)
        _, err = proc.communicate()
        found = records(base / name)
        if proc.returncode != 0 or len(found) != 1 or found[0]["status"] != "completed":
            print(f"the {name} run failed (exit {proc.returncode}): {err.strip()[-500:]}")
            return 1
        runs.append((metrics(found[0]), time.monotonic() - t0))
    (warm, _), (expected, duration) = runs
    print(f"uninterrupted run: {args.epochs} epochs in {duration:.1f} s (startup included; a second one gave "
          f"{'the same' if warm == expected else 'OTHER'} metrics); command: {' '.join(command(args.epochs)[1:])}")
    print()
    print("| experiment | kill | signal | sent at | after (s) | epochs recorded | left a partial checkpoint | exit |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {"kills": 0, "in_write": 0, "identical": 0, "debris": 0}
    by_signal: dict[str, int] = {}
    failures = []
    for number in range(1, args.experiments + 1):
        results = base / f"experiment-{number:02d}"
        finished = False
        for kill in range(1, rng.randint(1, 3) + 1):
            name = rng.choice(list(SIGNALS))
            left_before = frozenset(partial_checkpoints(results))  # an earlier kill's, until this run cleans them
            proc = start(results, args.epochs)
            when, after = kill_at_random(proc, results, rng, duration, args.epochs, left_before)
            if not when:
                code = proc.wait()
                print(f"| {number} | {kill} | – | the run ended first | {after:.2f} | {epochs_done(results)} | – | "
                      f"{code} |")
                finished = code == 0
                break
            proc.send_signal(SIGNALS[name])
            code = proc.wait()
            if code not in EXPECTED_EXIT[name]:  # e.g. a Ctrl-C reported as an error
                failures.append(f"experiment {number}, kill {kill}: {name} ended with exit code {code}")
            writing = in_checkpoint_write(results, left_before)
            summary["kills"] += 1
            summary["in_write"] += writing
            by_signal[name] = by_signal.get(name, 0) + 1
            print(f"| {number} | {kill} | {name} | {when} | {after:.2f} | {epochs_done(results)} | "
                  f"{'yes' if writing else 'no'} | {code} |")
        err = ""
        if not finished:
            proc = start(results, args.epochs)  # the rerun that finishes
            _, err = proc.communicate()
        every = records(results)
        done = [r for r in every if r.get("status") == "completed"]
        same = bool(done) and len(done) == len(every) and all(metrics(r) == expected for r in done)
        left = debris(results)
        resumed = [r.get("resumed_at_epochs") for r in done]
        print(f"| {number} | rerun | – | – | – | completed records: {len(done)} of {len(every)}, resumed after "
              f"epochs {resumed} | identical: {'yes' if same else 'NO'}; debris: {', '.join(left) or 'none'} | "
              f"{proc.returncode} |")
        summary["identical"] += same
        summary["debris"] += bool(left)
        if proc.returncode != 0 or not same or left:
            failures.append(f"experiment {number}: exit {proc.returncode}, identical {same}, debris {left}, "
                            f"{err.strip()[-300:]}")
    print()
    print(f"{args.experiments} experiments, {summary['kills']} kills "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_signal.items()))}), {summary['in_write']} of them leaving a "
          f"partial checkpoint file (killed inside a checkpoint write); {summary['identical']} of {args.experiments} "
          f"ended bit-identical to the uninterrupted run; {summary['debris']} left debris")
    for line in failures:
        print("FAILED:", line)
    return 1 if failures or summary["kills"] < args.experiments else 0


if __name__ == "__main__":
    sys.exit(main())
