#!/usr/bin/env bash
# test.sh — the test command (CI runs it through .ci/run): installs what is missing, then builds
# and runs the tests in four configurations:
#   1. AddressSanitizer + UndefinedBehaviorSanitizer, warnings as errors: every test (`cpu`
#      label; `gpu` tests run too and skip visibly when there is no GPU);
#   2. Release, warnings as errors: every test again, plus those that cannot run under a
#      sanitizer (the preload in an uninstrumented program, the Python package);
#   3. ThreadSanitizer: the concurrent tests;
#   4. clang + libFuzzer: a bounded run of the operation-sequence fuzzer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
jobs=$(nproc)
echo "== [1/4] ASan+UBSan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPILLWAY_WERROR=ON \
  -DSPILLWAY_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
echo "== [2/4] Release build"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_WERROR=ON >/dev/null
cmake --build build-release -j "$jobs"
ctest --test-dir build-release --output-on-failure -j "$jobs"
echo "== [3/4] TSan build (concurrent tests)"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPILLWAY_WERROR=ON \
  -DSPILLWAY_SANITIZE=thread -DSPILLWAY_BUILD_GPU_TESTS=OFF >/dev/null
cmake --build build-tsan -j "$jobs"
ctest --test-dir build-tsan --output-on-failure -L cpu -R 'Stress|stress|Thread|thread'
echo "== [4/4] libFuzzer smoke"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSPILLWAY_FUZZ=ON -DSPILLWAY_SANITIZE=address,undefined \
  -DSPILLWAY_BUILD_GPU_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs"
ctest --test-dir build-fuzz --output-on-failure -R fuzz
