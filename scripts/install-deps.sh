#!/usr/bin/env bash
# install-deps.sh — installs the Debian/Ubuntu packages Spillway builds with, if missing:
# compilers, CMake, Ninja, GoogleTest, Google Benchmark, liburing, hwloc, pkg-config, clang (for
# the fuzzer). The CUDA 13 toolkit itself is expected under /usr/local/cuda.
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libgtest-dev libbenchmark-dev liburing-dev libhwloc-dev
      clang libclang-rt-dev python3 chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if [ ! -x /usr/local/cuda/bin/nvcc ] && [ ! -f /usr/local/cuda/include/cuda.h ]; then
  echo "install-deps: the CUDA toolkit (13.x) is required under /usr/local/cuda" >&2
  exit 1
fi
