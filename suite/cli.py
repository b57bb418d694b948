"""Command line: ``python -m suite list | run | plan | summary | report | check``: parse the
arguments and hand them to the package that does the work (spec/, run/, report/, check/).

``run`` trains in this process, under torchrun on all its ranks (suite/run/distributed.py), or with
``--workers N`` as parallel cell processes (suite/run/parallel.py). User errors (bad spec, bad
value, missing data) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import UserError
from suite.run import allocator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suite", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the reproductions and their profiles and variants")

    # `run` and `plan` share the options that choose and configure the runs (plan prints one `run`
    # command per variant x seed cell, with these options passed on).
    cells = argparse.ArgumentParser(add_help=False)
    cells.add_argument("spec", help="spec name (reproductions/NAME.toml) or path to a .toml file")
    cells.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    cells.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec field, e.g. --set train.epochs=3 (repeatable)")
    cells.add_argument("--variant", dest="variants", action="append", metavar="NAME",
                       help="run only this variant (repeatable)")
    seeds = cells.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="N", help="run N seeds: 1..N")
    seeds.add_argument("--seed", type=int, action="append", dest="seed_list", metavar="S",
                       help="run this seed (repeatable)")
    cells.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    cells.add_argument("--data-dir", help="folder holding the datasets (default: $SUITE_DATA_DIR, "
                       "then ~/.cache/lowbit-suite/data)")
    cells.add_argument("--no-download", action="store_true", help="never try to download data")
    cells.add_argument("--results-dir", type=Path, help="default: results/ (or $SUITE_RESULTS_DIR)")
    again = cells.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="only continue interrupted runs (from their last complete epoch); skip the others")
    again.add_argument("--fresh", action="store_true",
                       help="start every run anew even where an interrupted one could be continued "
                       "(default: continue it)")
    run = sub.add_parser("run", parents=[cells], help="run a reproduction's profile and regenerate its table")
    run.add_argument("--quiet", action="store_true", help="no progress bars, only the summary lines")
    run.add_argument("--no-report", action="store_true", help="do not regenerate the table after the runs")
    run.add_argument("--workers", type=int, metavar="N",
                     help="run the variant x seed cells in N parallel processes (at most one per core), "
                     "each with cores / N threads; then the table once")
    plan = sub.add_parser("plan", parents=[cells], help="print one `run` command per variant x seed cell "
                          "(for Slurm arrays or any job runner); then `report` makes the table")
    plan.add_argument("--format", choices=("shell", "json"), default="shell",
                      help="shell: one command per line (default); json: a list of {variant, seed, argv, command}")

    summ = sub.add_parser("summary", help="bit accounting of each variant's model: weight memory, MACs by precision")
    summ.add_argument("spec")
    summ.add_argument("--profile", default="paper", help="default: paper (the paper's model)")
    summ.add_argument("--variant", dest="variants", action="append", metavar="NAME")

    rep = sub.add_parser("report", help="regenerate tables and plots from the records")
    rep.add_argument("spec", nargs="?", help="only this spec (default: every spec with records)")
    rep.add_argument("--profile", help="only this profile")
    rep.add_argument("--results-dir", type=Path)
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--print", action="store_true", help="also print the tables")

    chk = sub.add_parser("check", help="run a profile and compare it with the committed reference (CI regression "
                         "gate; bounds: suite/check.py, README 'Regression checks')")
    chk.add_argument("specs", nargs="*", metavar="SPEC", help="spec name(s)")
    chk.add_argument("--all", action="store_true", help="every spec that has the profile, each in its own process")
    chk.add_argument("--profile", default="smoke", help="default: smoke")
    chk.add_argument("--update", action="store_true", help="(re)make the reference from a run of this checkout")
    chk.add_argument("--seeds", type=int, metavar="N", help="check: the reference's first N seeds (default: all); "
                     "--update: seeds 1..N (default: 5 for smoke, else the spec's)")
    chk.add_argument("--variant", dest="variants", action="append", metavar="NAME",
                     help="only this variant (repeatable)")
    chk.add_argument("--strict", action="store_true", help="a spec or variant without a reference fails too")
    chk.add_argument("--benchmarks", metavar="BENCH.json", help="judge the speed ratios in pytest-benchmark's JSON "
                     "(python -m pytest benchmarks --benchmark-json=BENCH.json) against "
                     "results/reference/benchmarks.json instead; undecided ones are measured again")
    chk.add_argument("--no-timing", action="store_true", help="do not measure time (accuracy, memory, status and "
                     "configuration only)")
    chk.add_argument("--reference-dir", type=Path, help="default: results/reference/")
    chk.add_argument("--data-dir")
    return p


def cmd_list() -> int:
    from tabulate import tabulate

    from suite.spec.catalog import catalog

    print(tabulate(catalog(), headers="keys", tablefmt="github"))
    return 0


def _planned(args):
    """The spec (profile and --set applied) and its runs narrowed by --variant / --seeds / --seed."""
    from suite.run.plan import plan
    from suite.spec import find_spec, load_spec, parse_set

    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    spec = load_spec(find_spec(args.spec), args.profile, parse_set(args.overrides))
    seeds = list(range(1, args.seeds + 1)) if args.seeds else args.seed_list
    return spec, plan(spec, args.variants, seeds)


def _results_dir(given: Path | None) -> Path:
    from suite.paths import results_dir

    out = Path(given) if given else results_dir()
    if out.exists() and not out.is_dir():
        raise UserError(f"--results-dir {out}: a file, not a folder")
    return out


def _report(args, out: Path, spec) -> None:
    from suite.report import report

    for table in report(out, spec.name, spec.profile):
        print(f"table: {table}", file=sys.stderr)
        if not args.quiet:
            print(table.read_text())


def cmd_run(args) -> int:
    from suite.run import distributed
    from suite.run.local import Options, run_all

    spec, runs = _planned(args)
    out = _results_dir(args.results_dir)
    if args.workers is not None:
        return _run_pool(args, spec, runs, out)
    failed = run_all(spec, runs, Options(results_dir=out, device=args.device, data_dir=args.data_dir,
                                         download=not args.no_download, resume_only=args.resume, fresh=args.fresh,
                                         progress=not args.quiet))
    if failed and distributed.active():
        return 1  # the ranks can no longer agree: end the launch (torchrun stops the others)
    if not args.no_report and distributed.is_main():
        _report(args, out, spec)
    distributed.cleanup()
    return 1 if failed else 0


def _run_pool(args, spec, runs, out: Path) -> int:
    """--workers N: each variant x seed cell a `run` subprocess, N at once; then the table."""
    from suite.run import distributed
    from suite.run.parallel import format_results, forwarded_options, plan_cells, run_pool

    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if distributed.launched():
        raise UserError("--workers under torchrun: use one or the other (torchrun trains each run on several "
                        "processes; --workers runs several runs at once)")
    cells = plan_cells(args.spec, runs, forwarded_options(args))
    results = run_pool(cells, args.workers, out, spec.name, spec.profile, progress=not args.quiet)
    print(format_results(results), file=sys.stderr)
    if not args.no_report:
        _report(args, out, spec)
    return 1 if any(r.failed for r in results) else 0


def cmd_plan(args) -> int:
    from suite.run.parallel import format_plan, forwarded_options, plan_cells

    _, runs = _planned(args)
    print(format_plan(plan_cells(args.spec, runs, forwarded_options(args)), args.format))
    return 0


def cmd_summary(args) -> int:
    from suite.data import NUM_CLASSES, in_shape
    from suite.models import build_model
    from suite.nn.summary import format_summary, model_summary
    from suite.spec import find_spec, load_spec

    spec = load_spec(find_spec(args.spec), args.profile)
    if spec.study is not None:
        raise UserError(f"{spec.path}: a study spec (study.name = {spec.study.name!r}) has no model to summarize")
    shape = in_shape(spec.data)
    for name in args.variants or [v.name for v in spec.variants]:
        v = spec.variant(name)
        model = build_model(spec.model_for(v), num_classes=NUM_CLASSES[spec.data.dataset], in_shape=shape,
                            quant=v.quant_config())
        print(f"## {spec.name} [{spec.profile}] — {v.label or v.name}\n")
        print(format_summary(model_summary(model, shape)) + "\n")
    return 0


def cmd_report(args) -> int:
    from suite.report import report

    out = _results_dir(args.results_dir)
    written = report(out, args.spec, args.profile, plots=not args.no_plots)
    if not written:
        raise UserError(f"no records{' of ' + args.spec if args.spec else ''} under {out / 'records'}; "
                        "run a reproduction first (python -m suite run SPEC --profile smoke)")
    for path in written:
        print(f"table: {path}", file=sys.stderr)
        if args.print:
            print(path.read_text())
    return 0


def cmd_check(args) -> int:
    """Exit 0 when every comparison is inside its bound, 1 otherwise."""
    from suite.check import check_all, check_spec, report_rows
    from suite.check.bench import check_benchmarks
    from suite.paths import project_root, results_dir

    root = Path(args.reference_dir) if args.reference_dir else results_dir() / "reference"
    if sum([bool(args.specs), args.all, bool(args.benchmarks)]) != 1:
        raise UserError("check: give spec names, --all, or --benchmarks BENCH.json (one of them)")
    if args.benchmarks:
        rows = check_benchmarks(Path(args.benchmarks), root / "benchmarks.json", args.update, project=project_root())
    elif args.all:
        rows = check_all(args.profile, root, args.update, args.seeds, args.data_dir, timing=not args.no_timing)
    else:
        rows = [r for s in args.specs for r in check_spec(s, args.profile, root, args.update, args.seeds,
                                                            args.variants, args.data_dir, timing=not args.no_timing)]
    return report_rows(rows, args.strict, args.update)


COMMANDS = {"list": lambda args: cmd_list(), "run": cmd_run, "plan": cmd_plan, "summary": cmd_summary,
            "report": cmd_report, "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    allocator.keep_freed_memory()  # reuse freed buffers step to step (suite/run/allocator.py)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
