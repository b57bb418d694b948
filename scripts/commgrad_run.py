"""Run a spec whose variants choose a gradient-compression hook (``gradient_compression``, a key
the spec loader does not know yet) on W gloo ranks, through the harness's own Trainer, and write
one JSON record per variant and a markdown table.

    OMP_NUM_THREADS=1 flock -s /tmp/cpu.lock python scripts/commgrad_run.py \
        reproductions/pending/terngrad-cifar10.toml --profile quick [--variant float ...] [--ranks 2]

How: the spec's `gradient_compression` keys (train.* and variants.*.*, profile overrides included)
are taken out and the rest is loaded by suite.spec.load_spec, so every other key is checked as
the CLI checks it. Each variant then runs in W spawned processes (one torch thread each) joined
in a gloo group: the harness's Trainer builds the model, wraps it in DDP (suite.distributed) and
trains epoch by epoch; the hook is registered on that DDP model before the first step. Rank 0
writes the record: the epochs as the harness measures them, the hook's bytes per step, and the
largest weight difference between the ranks at the end.

Timing mode (--timing-steps N): instead of training, each variant runs N steps per round, in an
order rotating every round (--rounds), and the table gives the median ms per step of each
variant and its ratio to the first variant's. Run it under the exclusive lock (a quiet machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suite import distributed  # noqa: E402
from suite.harness import Run, Trainer, summarize  # noqa: E402
from suite.spec import load_spec, read_toml  # noqa: E402
from suite.train import gradient_compression  # noqa: E402

KEY = "gradient_compression"


def split_spec(path: Path) -> tuple[dict, dict]:
    """The spec without its gradient_compression keys, and those keys: {"train": ref,
    "variants": {name: ref}, "profiles": {profile: {"train": ref, "variants": {name: ref}}}}."""
    raw = copy.deepcopy(read_toml(path))
    refs: dict = {"train": raw.get("train", {}).pop(KEY, "none"), "variants": {}, "profiles": {}}
    for name, v in raw.get("variants", {}).items():
        if KEY in v:
            refs["variants"][name] = v.pop(KEY)
    for prof, table in raw.get("profiles", {}).items():
        found: dict = {"variants": {}}
        for key in list(table):
            if key == f"train.{KEY}":
                found["train"] = table.pop(key)
            elif key.startswith("variants.") and key.endswith(f".{KEY}"):
                found["variants"][key.split(".")[1]] = table.pop(key)
        refs["profiles"][prof] = found
    return raw, refs


def compression_of(refs: dict, profile: str, variant: str) -> str:
    prof = refs["profiles"].get(profile, {})
    return prof.get("variants", {}).get(variant) or refs["variants"].get(variant) or prof.get("train") \
        or refs["train"]


def load(path: Path, profile: str, overrides: dict):
    """The spec (every key but gradient_compression checked by the loader) and the refs."""
    raw, refs = split_spec(path)
    with tempfile.TemporaryDirectory() as tmp:
        stripped = Path(tmp) / path.name
        stripped.write_bytes(tomli_w.dumps(raw).encode())
        spec = load_spec(stripped, profile, overrides)
    for v in spec.variants:
        gradient_compression.build(compression_of(refs, profile, v.name))  # a bad reference fails here
    return spec, refs


def _join(rank: int, world: int, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def _train_worker(rank: int, world: int, store: str, args: dict) -> None:
    _join(rank, world, store)
    try:
        spec, refs = load(Path(args["spec"]), args["profile"], args["overrides"])
        variant = spec.variant(args["variant"])
        ref = compression_of(refs, args["profile"], variant.name)
        from suite.data import load_splits

        data = load_splits(spec.data)
        trainer = Trainer(Run(spec, variant, args["seed"]), data, torch.device("cpu"))
        hook = gradient_compression.attach(trainer.method.model, ref)
        epochs = []
        for number in range(1, spec.train.epochs + 1):
            e = trainer.epoch(number)
            e["comm"] = hook.summary() if hook is not None else None
            steps = e["samples_per_second"] * e["train_seconds"] / spec.train.batch_size
            e["ms_per_step"] = 1000 * e["train_seconds"] / max(steps, 1)
            epochs.append(e)
            if rank == 0:
                print(f"{variant.name} epoch {number}: loss {e['train_loss']:.4f} val {e['val_error']} "
                      f"test {e['test_error']:.2f}% {e['ms_per_step']:.1f} ms/step", flush=True)
        diff = distributed.max_weight_difference(trainer.model)
        if rank == 0:
            record = {"spec": spec.name, "profile": spec.profile, "variant": variant.name, "label": variant.label,
                      "seed": args["seed"], "gradient_compression": ref, "world_size": world, "backend": "gloo",
                      "threads_per_rank": torch.get_num_threads(), "data": data.info,
                      "model_parameters": sum(p.numel() for p in trainer.model.parameters()),
                      "epochs": epochs, "summary": summarize(epochs), "max_weight_difference": diff,
                      "communication": hook.summary() if hook is not None else None,
                      "overrides": args["overrides"], "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            out = Path(args["out"]) / f"{spec.name}.{spec.profile}.{variant.name}.s{args['seed']}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1))
    finally:
        distributed.cleanup()


def _timing_worker(rank: int, world: int, store: str, args: dict) -> None:
    """Rotating rounds of N steps per variant on one batch stream; rank 0 writes the samples."""
    _join(rank, world, store)
    try:
        spec, refs = load(Path(args["spec"]), args["profile"], args["overrides"])
        from suite.data import batch_indices, load_splits

        data = load_splits(spec.data)
        runs = []
        for name in args["variants"]:
            variant = spec.variant(name)
            trainer = Trainer(Run(spec, variant, args["seed"]), data, torch.device("cpu"))
            hook = gradient_compression.attach(trainer.method.model, compression_of(refs, args["profile"], name))
            runs.append((name, trainer, hook))
        n = args["timing_steps"]
        batches = distributed.shard_batches(batch_indices(len(data.train_x), spec.train.batch_size,
                                                          torch.Generator().manual_seed(0), "cpu"))[:n]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for rnd in range(args["rounds"] + 1):  # round 0 warms up (first DDP steps rebuild buckets)
            k = rnd % len(runs)
            for name, trainer, _ in runs[k:] + runs[:k]:
                dist.barrier()
                start = time.perf_counter()
                trainer.method.epoch(data.train_x, data.train_y, batches)
                dist.barrier()
                if rnd:
                    samples[name].append((time.perf_counter() - start) / len(batches))
        if rank == 0:
            out = Path(args["out"]) / f"{spec.name}.{spec.profile}.timing.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"samples_s_per_step": samples, "steps_per_sample": len(batches),
                                       "bytes_per_step": {name: (h.bytes_per_step if h else None)
                                                          for name, _, h in runs},
                                       "world_size": world, "threads_per_rank": 1}, indent=1))
    finally:
        distributed.cleanup()


def _paper_rows(spec) -> list[str]:
    """The baselines file's rows, as printed (context: the paper's setting is not ours)."""
    import csv

    path = ROOT / "baselines" / spec.baselines
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.open()))
    out = ["| paper row | value | source, confidence |", "|:--|--:|:--|"]
    out += [f"| {r['model']}, {r['method']} ({r['metric']}) | {r['value']} {r['unit']} | {r['table']}; "
            f"{r['confidence']} |" for r in rows]
    return out


def table(spec, out: Path) -> str:
    """Markdown: one row per variant from the records in `out` (mean over seeds), the timing run
    if one was made, and the paper's rows as context."""
    recs: dict[str, list[dict]] = {}
    for p in sorted(out.glob(f"{spec.name}.{spec.profile}.*.s*.json")):
        r = json.loads(p.read_text())
        recs.setdefault(r["variant"], []).append(r)
    lines = [f"# {spec.title}: profile `{spec.profile}` ({len(recs)} variants)", "",
             "Made by `scripts/commgrad_run.py` from its records (the spec's gradient_compression key is not in the "
             "loader yet); do not edit by hand.", "", f"Profile: {spec.profile_note}", ""]
    float_bytes = None
    for rs in recs.values():
        c = rs[0]["communication"]
        if c and c["method"] == "allreduce":
            float_bytes = c["bytes_per_step"]
    head = ("| variant | gradient exchange | n | test error at best val (%) | final test error (%) | final train loss "
            "| bytes sent per step per rank | x fewer than float32 | ms/step (busy machine) | max weight diff. |")
    lines += [head, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for v in spec.variants:
        rs = recs.get(v.name)
        if not rs:
            continue
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        best = mean([r["summary"]["test_error_at_best_val"] for r in rs])
        final = mean([r["summary"]["final_test_error"] for r in rs])
        loss = mean([r["epochs"][-1]["train_loss"] for r in rs])
        c = rs[0]["communication"]
        b = c["bytes_per_step"] if c else None
        fewer = f"{float_bytes / b:.1f}" if b and float_bytes else "-"
        ms = statistics.median(e["ms_per_step"] for r in rs for e in r["epochs"])
        diff = max(r["max_weight_difference"] for r in rs)
        seeds = ", ".join(f"s{r['seed']} {r['summary']['test_error_at_best_val']:.1f}" for r in rs)
        lines.append(f"| {v.label or v.name} | `{rs[0]['gradient_compression']}` | {len(rs)} | {best:.2f} ({seeds}) "
                     f"| {final:.2f} | {loss:.4f} | {b if b is not None else '-'} | {fewer} | {ms:.0f} | {diff:g} |")
    timing = out / f"{spec.name}.{spec.profile}.timing.json"
    if timing.exists():
        t = json.loads(timing.read_text())
        names = list(t["samples_s_per_step"])
        base = min(t["samples_s_per_step"][names[0]])
        lines += ["", f"Time per step on a quiet machine (exclusive lock; {t['world_size']} gloo ranks, "
                      f"{t['threads_per_rank']} thread each; {t['steps_per_sample']} steps per sample, order rotating "
                      "each round, the first round left out):", "",
                  f"| variant | min ms/step | median ms/step | samples | min / min({names[0]}) |",
                  "|:--|--:|--:|--:|--:|"]
        for n, smp in t["samples_s_per_step"].items():
            lines.append(f"| {n} | {1000 * min(smp):.1f} | {1000 * statistics.median(smp):.1f} | {len(smp)} "
                         f"| {min(smp) / base:.3f} |")
    lines += ["", "Deviations: " + "; ".join(spec.deviations), "", "The paper's numbers (context: other model, data "
              "and scale):", ""] + _paper_rows(spec)
    return "\n".join(lines) + "\n"


def spawn(worker, world: int, args: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(world, str(Path(tmp) / "store"), args), nprocs=world, join=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--variant", action="append", help="run only these (default: the profile's)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None, help="default: the spec's first seed")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as `suite run --set`")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "commgrad")
    ap.add_argument("--timing-steps", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--table", type=Path, default=None, help="write the markdown table here (no runs if "
                    "--no-run)")
    ap.add_argument("--no-run", action="store_true", help="only make the table from existing records")
    a = ap.parse_args()
    from suite.spec import parse_set

    overrides = parse_set(a.set)
    spec, _ = load(a.spec, a.profile, overrides)
    variants = a.variant or [v.name for v in spec.variants]
    common = {"spec": str(a.spec), "profile": a.profile, "overrides": overrides, "out": str(a.out),
              "seed": a.seed if a.seed is not None else spec.seeds[0]}
    if a.no_run:
        a.table = a.table or ROOT / "results" / f"{spec.name}.{a.profile}.md"
        a.table.write_text(table(spec, a.out))
        print(a.table)
        return
    if a.timing_steps:
        spawn(_timing_worker, a.ranks, {**common, "variants": variants, "timing_steps": a.timing_steps,
                                        "rounds": a.rounds})
        t = json.loads((a.out / f"{spec.name}.{a.profile}.timing.json").read_text())
        base = min(t["samples_s_per_step"][variants[0]])
        for name, s in t["samples_s_per_step"].items():
            print(f"{name}: median {1000 * statistics.median(s):.1f} ms/step, min {1000 * min(s):.1f}, "
                  f"min/min({variants[0]}) {min(s) / base:.3f}, {t['bytes_per_step'][name]} B/step")
        return
    for v in variants:
        spawn(_train_worker, a.ranks, {**common, "variant": v})
    if a.table:
        a.table.write_text(table(spec, a.out))


if __name__ == "__main__":
    main()
