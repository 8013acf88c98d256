#!/usr/bin/env bash
# bench/torch/build_and_run.sh — builds bench/torch/torch_pair_bench against the installed
# torch wheel's libtorch (Release, Ninja if present) in a temporary build folder and runs it,
# writing OUTDIR/torch_pair.json (the PyTorch column of collect.py's pair_ns) and
# OUTDIR/torch_build.log. Run on the GPU machine:  bench/torch/build_and_run.sh OUTDIR
# Environment: PYTHON (default python3), CUDA_HOME (default /usr/local/cuda),
# TORCH_PAIR_ITERS (pairs per timed repetition, default 20000), KEEP_BUILD=1 keeps the build dir.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
outdir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-python3}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
log=$outdir/torch_build.log

if ! prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>"$outdir/torch_import.err"); then
  echo "error: torch is not importable by '$py' (needed for libtorch's CMake package):" >&2
  cat "$outdir/torch_import.err" >&2
  exit 3
fi
rm -f "$outdir/torch_import.err"
torch_version=$("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')
echo "torch $torch_version; CMake prefix $prefix"

if [[ ! -x $cuda_home/bin/nvcc ]]; then
  echo "error: no nvcc at $cuda_home/bin/nvcc (set CUDA_HOME); libtorch's CMake needs it" >&2
  exit 3
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

build=$(mktemp -d "${TMPDIR:-/tmp}/spillway_torch_bench.XXXXXX")
if [[ ${KEEP_BUILD:-0} != 1 ]]; then trap 'rm -rf "$build"' EXIT; fi

echo "configuring in $build (log: $log)"
if ! TORCH_CUDA_ARCH_LIST=9.0 cmake -S "$here" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCUDAToolkit_ROOT="$cuda_home" \
    -DCMAKE_CUDA_COMPILER="$cuda_home/bin/nvcc" \
    -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DTORCH_CUDA_ARCH_LIST=9.0 \
    ${SPILLWAY_TORCH_BENCH_WERROR:+-DSPILLWAY_TORCH_BENCH_WERROR=$SPILLWAY_TORCH_BENCH_WERROR} \
    >"$log" 2>&1; then
  echo "error: CMake configure failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 4
fi
echo "building"
if ! cmake --build "$build" --parallel >>"$log" 2>&1; then
  echo "error: build failed; last lines of $log:" >&2
  tail -n 60 "$log" >&2
  exit 4
fi

# Measure PyTorch's default caching allocator, whatever the caller's environment says.
echo "running torch_pair_bench -> $outdir/torch_pair.json"
env -u PYTORCH_CUDA_ALLOC_CONF -u PYTORCH_ALLOC_CONF -u PYTORCH_NO_CUDA_MEMORY_CACHING \
  "$build/torch_pair_bench" "$outdir/torch_pair.json" "${TORCH_PAIR_ITERS:-20000}"
