#!/usr/bin/env bash
# Builds goro (release) and runs the seed demo: 10,000 goroutines, then the parked-million mode.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_BUILD_TESTS=OFF \
  -DGORO_BUILD_BENCH=OFF >/dev/null
ninja -C build/release seed_demo
build/release/examples/seed_demo
build/release/examples/seed_demo park
