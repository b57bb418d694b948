"""Is the regression gate flaky? Run `python -m suite check ARGS` N times on an unchanged checkout
and report how many passed and, per compared metric, how close it came to its bound.

    python scripts/check_repeat.py --times 20 -- binaryconnect-mnist
    python scripts/check_repeat.py --times 5 -- --all --profile smoke

"margin" is the share of the bound used (1.0 = at the bound; accuracy: |ours - ref| / tolerance,
time and memory: ratio / bound); "judged" counts the checks that compared the metric (times are
not judged while other processes load the machine). Each check runs in its own process, as CI
runs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--times", type=int, default=20)
    p.add_argument("check_args", nargs=argparse.REMAINDER, help="after --: the arguments of `suite check`")
    args = p.parse_args()
    check_args = [a for a in args.check_args if a != "--"]
    passed, worst, judged, failures = 0, {}, {}, []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.times):
            rows_json = Path(tmp) / f"rows{i}.json"
            code = subprocess.run([sys.executable, "-m", "suite", "check", *check_args, "--rows-json", str(rows_json)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            rows = json.loads(rows_json.read_text()) if rows_json.exists() else []
            passed += code == 0
            for r in rows:
                key = (r["spec"], r["variant"], r["metric"])
                judged.setdefault(key, 0)
                if r["margin"] is not None:  # None: not judged (a busy machine's times) or nothing to bound
                    worst[key] = max(worst.get(key, 0.0), r["margin"])
                    judged[key] += 1
                if not r["ok"]:
                    failures.append((i + 1, *key, r["verdict"]))
            print(f"check {i + 1}/{args.times}: {'passed' if code == 0 else f'FAILED (exit {code})'}", file=sys.stderr)
    print(tabulate([[*k, f"{n}/{args.times}", f"{worst[k]:.2f}" if k in worst else "-"] for k, n in judged.items()],
                   headers=["spec", "variant", "metric", "judged", "worst margin"], tablefmt="github"))
    if failures:
        print("\n" + tabulate(failures, headers=["repeat", "spec", "variant", "metric", "verdict"], tablefmt="github"))
    print(f"\n{passed}/{args.times} checks passed ({time.perf_counter() - t0:.0f} s)")
    return 0 if passed == args.times else 1


if __name__ == "__main__":
    sys.exit(main())
