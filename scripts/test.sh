#!/usr/bin/env bash
# test.sh — the test command (CI runs it through .ci/run): installs what is missing, then builds
# and runs the tests in three configurations:
#   1. AddressSanitizer + UndefinedBehaviorSanitizer, warnings as errors: every test (`cpu`
#      label; `gpu` tests run too and skip visibly when there is no GPU);
#   2. ThreadSanitizer: the concurrent tests;
#   3. clang + libFuzzer: a bounded run of the operation-sequence fuzzer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
jobs=$(nproc)
echo "== [1/3] ASan+UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPILLWAY_WERROR=ON \
  -DSPILLWAY_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
echo "== [2/3] TSan build (concurrent tests)"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPILLWAY_WERROR=ON \
  -DSPILLWAY_SANITIZE=thread -DSPILLWAY_BUILD_GPU_TESTS=OFF >/dev/null
cmake --build build-tsan -j "$jobs"
ctest --test-dir build-tsan --output-on-failure -L cpu -R 'Stress|stress|Thread|thread'
echo "== [3/3] libFuzzer smoke"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSPILLWAY_FUZZ=ON -DSPILLWAY_SANITIZE=address,undefined \
  -DSPILLWAY_BUILD_GPU_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs"
ctest --test-dir build-fuzz --output-on-failure -R fuzz
