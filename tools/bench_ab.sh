#!/usr/bin/env bash
# Interleaved A/B runs of benchmark programs that print "RESULT <metric>=<value> <unit>" lines
# (everything in bench/ does): each round runs every program once, in the order given, with
# the same arguments; at the end it prints each program's median and minimum of the metric.
# This machine's speed drifts by up to 1.5x within minutes, so compare only programs run in
# the same call, and keep a copy of the baseline's binary (a worktree of the old commit) rather
# than figures from an earlier call.
#
#   tools/bench_ab.sh ROUNDS METRIC "ARGS" PROGRAM...
#   tools/bench_ab.sh 7 ns_per_op "-n 10000000 -p 4" /tmp/old/bench_goro_chan_throughput \
#       build/release/bench/bench_goro_chan_throughput build/release/bench/bench_go_chan_throughput
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
rounds=$1 metric=$2 args=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
  for prog in "$@"; do
    # shellcheck disable=SC2086  # ARGS is a list of flags
    v=$("$prog" $args 2>&1 | sed -n "s/^RESULT $metric=\([0-9.e+-]*\).*/\1/p" | head -1)
    echo "$prog ${v:-nan}" >>"$out"
  done
done
python3 - "$out" <<'EOF'
import math, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    prog, v = line.rsplit(" ", 1)
    runs.setdefault(prog, []).append(float(v))
for prog, vs in runs.items():
    ok = [v for v in vs if not math.isnan(v)]
    if not ok:
        print(f"{prog}: no result")
        continue
    print(f"{prog}: median {statistics.median(ok):.2f}  min {min(ok):.2f}  "
          f"max {max(ok):.2f}  runs {len(ok)}/{len(vs)}")
EOF
