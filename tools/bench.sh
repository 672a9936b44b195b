#!/usr/bin/env bash
# Installs what the benchmarks need (apt), builds goro and the peers, runs the side-by-side
# suite (goro vs Go, Boost.Fiber, std::thread; interleaved, 5 runs) and writes
# docs/benchmarks.md with its chart. `tools/bench.sh --quick` runs the 2-minute subset.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_BUILD_TESTS=OFF \
  -DGORO_BUILD_BENCH=ON >/dev/null
ninja -C build/release
exec python3 bench/compare.py --build-dir build/release --report docs/benchmarks.md "$@"
