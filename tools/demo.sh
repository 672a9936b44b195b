#!/usr/bin/env bash
# Builds goro (release) and runs the seed demo: 10,000 goroutines, the parked-million mode,
# preemption of a tight loop, a blocking call and LockOSThread, and a goroutine profile.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_BUILD_TESTS=OFF \
  -DGORO_BUILD_BENCH=OFF >/dev/null
ninja -C build/release seed_demo
build/release/examples/seed_demo
build/release/examples/seed_demo park
build/release/examples/seed_demo preempt
build/release/examples/seed_demo blocking
build/release/examples/seed_demo profile
