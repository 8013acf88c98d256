// pair_bench.cpp — Google Benchmark: time of one warm (cached) allocate+free pair, for
// Spillway (spillway_malloc_async/spillway_free_async), cudaMallocAsync/cudaFreeAsync on the
// default pool (release threshold UINT64_MAX) and cudaMalloc/cudaFree, at 1 and 8 threads.
//
// Benchmark names (bench/collect.py parses them):  pair/<allocator>/<size_bytes>
//   allocator: spillway | cudaMallocAsync | cudaMalloc
//   size:      512, 65536, 1048576, 16777216, 268435456
// Google Benchmark appends "/repeats:9/real_time" and, for the 8-thread runs, "/threads:8".
// Every benchmark runs 9 repetitions and reports aggregates only (mean, median, stddev, cv) in
// wall-clock time. For a threaded run Google Benchmark reports wall time / (threads x
// iterations per thread); multiply by the thread count for the per-thread latency of a pair
// (collect.py does).
//
// Each thread uses its own non-blocking stream (thread i -> stream i, created once in main)
// and makes one untimed pair before timing, so every timed pair is a cache hit.
// Without a CUDA device: exits 1, or 0 with nothing run when SPILLWAY_BENCH_ALLOW_NO_GPU=1.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>
#include <spillway/spillway.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bench_common.h"

namespace {

using spillway_bench::cuda_msg;
using spillway_bench::spillway_msg;

enum class Kind { kSpillway, kCudaMallocAsync, kCudaMalloc };

// One allocate+free pair. Returns false and fills *err on failure (messages are built only
// on that path, so the timed loop does no std::string work).
template <Kind K>
inline bool pair_once(std::size_t size, int device, cudaStream_t stream, std::string* err) {
  void* p = nullptr;
  if constexpr (K == Kind::kSpillway) {
    spillway_status st = spillway_malloc_async(&p, size, device, stream);
    if (st != SPILLWAY_OK) [[unlikely]] {
      *err = spillway_msg("spillway_malloc_async", st);
      return false;
    }
    benchmark::DoNotOptimize(p);
    st = spillway_free_async(p, stream);
    if (st != SPILLWAY_OK) [[unlikely]] {
      *err = spillway_msg("spillway_free_async", st);
      return false;
    }
  } else if constexpr (K == Kind::kCudaMallocAsync) {
    (void)device;
    cudaError_t e = cudaMallocAsync(&p, size, stream);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaMallocAsync", e);
      return false;
    }
    benchmark::DoNotOptimize(p);
    e = cudaFreeAsync(p, stream);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaFreeAsync", e);
      return false;
    }
  } else {
    (void)device;
    (void)stream;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaMalloc", e);
      return false;
    }
    benchmark::DoNotOptimize(p);
    e = cudaFree(p);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaFree", e);
      return false;
    }
  }
  return true;
}

template <Kind K>
void BM_pair(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const int device = spillway_bench::globals().device;
  cudaStream_t stream = spillway_bench::stream_for(state.thread_index());
  std::string err;

  // Benchmark threads are fresh threads: select the device on each.
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    state.SkipWithError(cuda_msg("cudaSetDevice", e).c_str());
    return;
  }
  // Warm: one untimed pair, so the timed ones hit the allocator's cache.
  if (!pair_once<K>(size, device, stream, &err)) {
    state.SkipWithError(("warm-up: " + err).c_str());
    return;
  }
  for (auto _ : state) {
    if (!pair_once<K>(size, device, stream, &err)) [[unlikely]] {
      state.SkipWithError(err.c_str());
      break;
    }
  }
  // Outside the timed region (the timer stops when the loop ends).
  if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess && !state.error_occurred()) {
    state.SkipWithError(cuda_msg("cudaStreamSynchronize", e).c_str());
  }
}

constexpr std::int64_t kSizes[] = {512, std::int64_t{64} << 10, std::int64_t{1} << 20,
                                   std::int64_t{16} << 20, std::int64_t{256} << 20};

void register_kind(const char* name, void (*fn)(benchmark::State&)) {
  const std::string family = std::string("pair/") + name;
  for (std::int64_t size : kSizes) {
    benchmark::RegisterBenchmark(family.c_str(), fn)
        ->Arg(size)
        ->Unit(benchmark::kNanosecond)
        ->UseRealTime()
        ->Repetitions(9)
        ->ReportAggregatesOnly(true);
  }
  for (std::int64_t size : kSizes) {
    benchmark::RegisterBenchmark(family.c_str(), fn)
        ->Arg(size)
        ->Unit(benchmark::kNanosecond)
        ->Threads(spillway_bench::kMaxThreads)
        ->UseRealTime()
        ->Repetitions(9)
        ->ReportAggregatesOnly(true);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return spillway_bench::run_main("pair_bench", argc, argv, [] {
    register_kind("spillway", &BM_pair<Kind::kSpillway>);
    register_kind("cudaMallocAsync", &BM_pair<Kind::kCudaMallocAsync>);
    register_kind("cudaMalloc", &BM_pair<Kind::kCudaMalloc>);
  });
}
