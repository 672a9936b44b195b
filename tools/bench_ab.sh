#!/usr/bin/env bash
# Interleaved A/B runs of benchmark programs that print "RESULT <metric>=<value> <unit>" lines
# (everything in bench/ does): each round runs every program once, in the order given, with
# the same arguments; at the end it prints each program's median, minimum and maximum of the
# metric (METRIC may list several, comma-separated: each is read from the same runs).
# This machine's speed drifts by up to 1.5x within minutes, so compare only programs run in
# the same call, and keep a copy of the baseline's binary (a worktree of the old commit) rather
# than figures from an earlier call.
#
#   tools/bench_ab.sh ROUNDS METRIC "ARGS" PROGRAM...
#   tools/bench_ab.sh 7 ns_per_op "-n 10000000 -p 4" /tmp/old/bench_goro_chan_throughput \
#       build/release/bench/bench_goro_chan_throughput build/release/bench/bench_go_chan_throughput
# A PROGRAM may carry flags of its own, before ARGS (split at spaces, so no spaces in paths):
#   B=build/release/bench; tools/bench_ab.sh 5 server_cpu_ns_per_rt "-conns 10000 -seconds 3" \
#       "$B/bench_echo_client -server $B/bench_goro_echo" "$B/bench_echo_client -server $B/bench_go_echo"
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
rounds=$1 metric=$2 args=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
  for prog in "$@"; do
    # shellcheck disable=SC2086  # PROGRAM and ARGS are split into words on purpose
    res=$($prog $args 2>&1 | grep '^RESULT ' || true)
    for m in ${metric//,/ }; do
      v=$(sed -n "s/^RESULT $m=\([0-9.e+-]*\).*/\1/p" <<<"$res" | head -1)
      printf '%s\t%s\t%s\n' "$m" "$prog" "${v:-nan}" >>"$out"
    done
  done
done
python3 - "$out" <<'EOF'
import math, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m, prog, v = line.rstrip("\n").split("\t")
    runs.setdefault(m, {}).setdefault(prog, []).append(float(v))
for m, progs in runs.items():
    if len(runs) > 1:
        print(f"== {m}")
    for prog, vs in progs.items():
        ok = [v for v in vs if not math.isnan(v)]
        if not ok:
            print(f"{prog}: no result")
            continue
        print(f"{prog}: median {statistics.median(ok):.2f}  min {min(ok):.2f}  "
              f"max {max(ok):.2f}  runs {len(ok)}/{len(vs)}")
EOF
