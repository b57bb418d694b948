#!/usr/bin/env bash
# CI, repeated: is the gate stable, and does it catch what it guards?
#
#   scripts/ci_repeat.sh [--times N]                      N fresh clones of HEAD, each running `bash .ci/run`
#   scripts/ci_repeat.sh --slowdown PATCH [--times N]     one clone with PATCH applied (scripts/slowdowns/),
#                                                         its gates run N times: each run must FAIL
#        [--only EXPR]                                    ... the gates on the benchmarks matching EXPR only
#                                                         (pytest -k): the same rule on the ratios the patch
#                                                         touches, a minute a run instead of eight
#
# Each clone lies in a temporary folder with `shared` beside it (a link to this project's ../shared),
# as CI has it. One line per run: its number, exit code, verdict, minutes; then a summary. Logs stay
# in the printed folder. Run it on a quiet machine: nothing else should use the CPU meanwhile.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
times=10
patch=""
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --times) times=$2; shift 2 ;;
    --slowdown) patch=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    --only) only=(-- -k "$2"); shift 2 ;;
    *) echo "usage: $0 [--times N] [--slowdown PATCH [--only EXPR]]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d "${TMPDIR:-/tmp}/ci-repeat-XXXXXX")
shared=$(cd "$root/.." && pwd)/shared
echo "logs in $work; HEAD $(git -C "$root" rev-parse --short HEAD)${patch:+; slowdown $(basename "$patch")}${only[2]:+; benchmarks -k ${only[2]}}"

clone() {  # a fresh clone of HEAD at $1/main, with shared/ beside it
  mkdir -p "$1" && ln -s "$shared" "$1/shared" && git clone -q "$root" "$1/main"
}

passed=0
if [ -z "$patch" ]; then
  for i in $(seq 1 "$times"); do
    clone "$work/run$i"
    start=$(date +%s)
    (cd "$work/run$i/main" && bash .ci/run) > "$work/run$i.log" 2>&1
    code=$?
    minutes=$(awk "BEGIN {printf \"%.1f\", ($(date +%s) - $start) / 60}")
    verdict=$([ $code -eq 0 ] && echo passed || echo FAILED)
    [ $code -eq 0 ] && passed=$((passed + 1))
    echo "run $i: exit $code, $verdict, $minutes min"
    rm -rf "$work/run$i/main/.tox"  # 5.5 GB each
  done
  echo "$passed of $times fresh-clone CI runs passed"
  [ "$passed" -eq "$times" ]
else
  clone "$work/slow"
  git -C "$work/slow/main" apply "$patch" || { echo "the patch does not apply" >&2; exit 2; }
  caught=0
  for i in $(seq 1 "$times"); do
    start=$(date +%s)
    (cd "$work/slow/main" && python3 -m tox -e gates "${only[@]}") > "$work/slow$i.log" 2>&1
    code=$?
    minutes=$(awk "BEGIN {printf \"%.1f\", ($(date +%s) - $start) / 60}")
    failing=$(grep -E "SLOWER" "$work/slow$i.log" | tr -s ' ' | sort -u | head -3 | cut -c1-160)
    [ $code -ne 0 ] && [ -n "$failing" ] && caught=$((caught + 1))
    echo "run $i: exit $code, $minutes min, $([ $code -ne 0 ] && echo caught || echo MISSED): ${failing:-no SLOWER row}"
  done
  echo "$caught of $times runs caught the slowdown"
  [ "$caught" -eq "$times" ]
fi
