#!/usr/bin/env bash
# Builds goro from scratch and runs every test: a g++ release build (library, tests, examples,
# benchmarks) with the full suite, a clang++ build (warnings are errors), a scheduler-chaos
# build, and ASan+UBSan and TSan builds of the suite with the sanitizers' fiber annotations.
#
#   tools/test.sh            everything
#   tools/test.sh quick      only the g++ release build and its suite
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
mode=${1:-all}
jobs=$(nproc)
export DEBUGINFOD_URLS=""   # symbolization must never wait on the network

run_suite() {  # build-dir, label, extra env...
  local dir=$1 label=$2
  shift 2
  echo "=== tests: $label ==="
  env "$@" ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

configure_build() {  # dir, cmake args...
  local dir=$1
  shift
  rm -rf "$dir"
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  ninja -C "$dir"
}

configure_build build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_BUILD_BENCH=ON
run_suite build/release "release (g++)"
[ "$mode" = quick ] && exit 0

configure_build build/clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DGORO_BUILD_BENCH=ON
run_suite build/clang "clang++" GORO_TEST_SCALE=0.3

configure_build build/chaos -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_CHAOS=ON -DGORO_BUILD_BENCH=OFF
run_suite build/chaos "scheduler chaos (random order, forced migration)" GORO_TEST_SCALE=0.2

configure_build build/asan -DCMAKE_BUILD_TYPE=Debug -DGORO_SANITIZE=address -DGORO_BUILD_BENCH=OFF
run_suite build/asan "ASan+UBSan" GORO_TEST_SCALE=0.1 \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# report_signal_unsafe=0: the stack-overflow handler symbolizes the creation site (libdw
# allocates) on purpose, as the process is ending (src/stack/stack.cpp); TSan would flag it.
configure_build build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGORO_SANITIZE=thread -DGORO_BUILD_BENCH=OFF
run_suite build/tsan "TSan" GORO_TEST_SCALE=0.05 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0
echo "=== all test builds passed ==="
