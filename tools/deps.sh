#!/usr/bin/env bash
# Installs, with apt, whatever goro's build, tests and benchmarks need and this machine lacks.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang pkg-config libgtest-dev libgmock-dev libbenchmark-dev libdw-dev
      libelf-dev libboost-fiber-dev libboost-context-dev golang-go python3 python3-matplotlib procps
      libhttp-parser-dev python3-prometheus-client
      redis-server libhiredis-dev postgresql libpq-dev libcpp-httplib-dev wrk liburing-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tools/deps.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
