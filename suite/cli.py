"""Command line: ``python -m suite list | run SPEC --profile P | report [SPEC]``.

User errors (bad spec, bad value, missing data) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from suite.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suite", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the reproductions and their profiles and variants")

    run = sub.add_parser("run", help="run a reproduction's profile and regenerate its table")
    run.add_argument("spec", help="spec name (reproductions/NAME.toml) or path to a .toml file")
    run.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, e.g. --set train.epochs=3 (repeatable)")
    run.add_argument("--variant", dest="variants", action="append", metavar="NAME",
                     help="run only this variant (repeatable)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="N", help="run N seeds: 1..N")
    seeds.add_argument("--seed", type=int, action="append", dest="seed_list", metavar="S",
                       help="run this seed (repeatable)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    run.add_argument("--data-dir", help="folder holding the datasets (default: $SUITE_DATA_DIR, "
                     "then ~/.cache/lowbit-suite/data)")
    run.add_argument("--no-download", action="store_true", help="never try to download data")
    run.add_argument("--results-dir", type=Path, help="default: results/ (or $SUITE_RESULTS_DIR)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, only the summary lines")
    run.add_argument("--no-report", action="store_true", help="do not regenerate the table after the runs")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="only continue interrupted runs (from their last complete epoch); skip the others")
    again.add_argument("--fresh", action="store_true",
                       help="start every run anew even where an interrupted one could be continued "
                       "(default: continue it)")

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
    return p


def cmd_list() -> int:
    from tabulate import tabulate

    from suite.spec import read_toml, reproductions_dir

    rows = []
    for path in sorted(reproductions_dir().glob("*.toml")):
        raw = read_toml(path)
        rows.append([path.stem, raw.get("title", ""), ", ".join(raw.get("profiles", {})),
                     ", ".join(raw.get("variants", {}))])
    print(tabulate(rows, headers=["spec", "title", "profiles", "variants"], tablefmt="github"))
    return 0


def cmd_run(args) -> int:
    import torch

    from suite.data import load_splits
    from suite.harness import execute, has_checkpoint, plan
    from suite.measure import pick_device
    from suite.paths import results_dir
    from suite.report import report
    from suite.spec import find_spec, load_spec, parse_set

    spec = load_spec(find_spec(args.spec), args.profile, parse_set(args.overrides))
    seeds = list(range(1, args.seeds + 1)) if args.seeds else args.seed_list
    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    runs = plan(spec, args.variants, seeds)
    device = pick_device(args.device)
    out = args.results_dir or results_dir()
    data = load_splits(spec.data, args.data_dir, download=not args.no_download).to(device)
    print(f"{spec.name} [{spec.profile}]: {len(runs)} run(s) on {device}, "
          f"{torch.get_num_threads()} threads; data: {data.info['source']} ({data.info['path']})",
          file=sys.stderr)
    failed = 0
    for run in runs:
        if args.resume and not has_checkpoint(out, run, data.info):
            print(f"  {run.variant.name} seed {run.seed}: nothing to resume, skipped", file=sys.stderr)
            continue
        try:
            path = execute(run, data, device, out, progress=not args.quiet, resume=not args.fresh)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one failing run does not stop the others
            failed += 1
            print(f"  {run.variant.name} seed {run.seed}: FAILED ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        import json

        rec = json.loads(path.read_text())
        s = rec["summary"]
        print(f"  {run.variant.name} seed {run.seed}: {rec['status']}, test error "
              f"{s.get('test_error_at_best_val', float('nan')):.2f}% at best val epoch {s.get('best_epoch')}, "
              f"{s.get('median_epoch_seconds', float('nan')):.2f} s/epoch -> {path}", file=sys.stderr)
    if not args.no_report:
        for table in report(out, spec.name, spec.profile):
            print(f"table: {table}", file=sys.stderr)
            if not args.quiet:
                print(table.read_text())
    return 1 if failed else 0


def cmd_summary(args) -> int:
    from suite.data import IN_SHAPES, NUM_CLASSES
    from suite.harness import quant_config
    from suite.models import build_model
    from suite.nn.summary import format_summary, model_summary
    from suite.spec import find_spec, load_spec

    spec = load_spec(find_spec(args.spec), args.profile)
    for name in args.variants or [v.name for v in spec.variants]:
        v = spec.variant(name)
        shape = IN_SHAPES[spec.data.dataset]
        model = build_model(spec.model, num_classes=NUM_CLASSES[spec.data.dataset], in_shape=shape,
                            quant=quant_config(v))
        print(f"## {spec.name} [{spec.profile}] — {v.label or v.name}\n")
        print(format_summary(model_summary(model, shape)) + "\n")
    return 0


def cmd_report(args) -> int:
    from suite.paths import results_dir
    from suite.report import report

    out = args.results_dir or results_dir()
    written = report(out, args.spec, args.profile, plots=not args.no_plots)
    if not written:
        raise UserError(f"no records{' of ' + args.spec if args.spec else ''} under {out / 'records'}; "
                        "run a reproduction first (python -m suite run SPEC --profile smoke)")
    for path in written:
        print(f"table: {path}", file=sys.stderr)
        if args.print:
            print(path.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.environ.get("CI") and args.command == "run":
        args.quiet = True  # CI logs: no progress bars
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "summary":
            return cmd_summary(args)
        return cmd_report(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
