// random_bench.cpp — Google Benchmark: RMM-style random allocations (after RMM's
// benchmarks/random_allocations), Spillway vs cudaMallocAsync, reported as operations/second.
//
// The trace (made once per max size from a fixed seed, then replayed identically for every
// allocator): up to 2*N steps; each step draws a size uniform in [1, max_size]; with no live
// allocation it allocates, otherwise it allocates with probability 73% while fewer than N
// allocations were made and live bytes + size stay under 16000 MiB (RMM's cap), else it frees
// a uniformly chosen live allocation. Whatever is live at the end is freed. N = 10000.
// One benchmark iteration replays the whole trace; ops = allocations + frees.
//
// Benchmark names (bench/collect.py parses them):  random/<allocator>/<max_size_bytes>
//   allocator: spillway | cudaMallocAsync;  max size: 1048576, 4194304, 67108864
// Google Benchmark appends "/repeats:5/real_time". Counter "ops_per_s" (wall-clock rate; the
// median aggregate is what collect.py reads); also "trace_ops" and "trace_peak_live_MiB".
// Allocations and frees go to one non-blocking stream (stream-ordered, as in pair_bench).
// One untimed replay warms each allocator; each benchmark ends by returning cached memory
// (cudaMemPoolTrimTo / spillway_trim) so the two allocators do not hold each other's peak.
// Without a CUDA device: exits 1, or 0 with nothing run when SPILLWAY_BENCH_ALLOW_NO_GPU=1.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>
#include <spillway/spillway.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using spillway_bench::cuda_msg;
using spillway_bench::spillway_msg;

constexpr std::size_t kNumAllocations = 10000;
constexpr std::uint64_t kMaxUsageBytes = std::uint64_t{16000} << 20;  // RMM's 16000 MiB
constexpr int kAllocPercent = 73;
constexpr std::uint64_t kSeed = 0x5311'3a7bULL;

struct Op {
  std::size_t size;   // bytes to allocate; 0 for a free
  std::size_t index;  // for a free: index into the live vector (swap-with-last removal)
};

struct Trace {
  std::vector<Op> ops;
  std::uint64_t peak_live_bytes = 0;
};

Trace make_trace(std::size_t max_size) {
  Trace t;
  std::mt19937_64 gen(kSeed);
  std::uniform_int_distribution<std::size_t> size_dist(1, max_size);
  std::uniform_int_distribution<int> op_dist(0, 99);
  std::uniform_int_distribution<std::size_t> index_dist(0, kNumAllocations - 1);
  std::vector<std::size_t> live;  // sizes, mirrored exactly as the replay mirrors pointers
  std::size_t alloc_count = 0;
  std::uint64_t live_bytes = 0;
  t.ops.reserve(4 * kNumAllocations);
  for (std::size_t i = 0; i < 2 * kNumAllocations; ++i) {
    const std::size_t size = size_dist(gen);
    bool do_alloc = true;
    if (!live.empty()) {
      do_alloc = op_dist(gen) < kAllocPercent && alloc_count < kNumAllocations &&
                 live_bytes + size < kMaxUsageBytes;
    }
    if (do_alloc) {
      t.ops.push_back({size, 0});
      live.push_back(size);
      ++alloc_count;
      live_bytes += size;
      t.peak_live_bytes = std::max(t.peak_live_bytes, live_bytes);
    } else if (!live.empty()) {
      const std::size_t index = index_dist(gen) % live.size();
      t.ops.push_back({0, index});
      live_bytes -= live[index];
      live[index] = live.back();
      live.pop_back();
    }
  }
  while (!live.empty()) {  // free everything left, last first
    t.ops.push_back({0, live.size() - 1});
    live.pop_back();
  }
  return t;
}

const Trace& trace_for(std::size_t max_size) {
  static std::map<std::size_t, Trace> cache;  // benchmarks run on the main thread only
  auto it = cache.find(max_size);
  if (it == cache.end()) it = cache.emplace(max_size, make_trace(max_size)).first;
  return it->second;
}

enum class Kind { kSpillway, kCudaMallocAsync };

template <Kind K>
inline bool do_alloc(void** p, std::size_t size, int device, cudaStream_t stream,
                     std::string* err) {
  if constexpr (K == Kind::kSpillway) {
    const spillway_status st = spillway_malloc_async(p, size, device, stream);
    if (st != SPILLWAY_OK) [[unlikely]] {
      *err = spillway_msg("spillway_malloc_async", st) + " (size " + std::to_string(size) + ")";
      return false;
    }
  } else {
    (void)device;
    const cudaError_t e = cudaMallocAsync(p, size, stream);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaMallocAsync", e) + " (size " + std::to_string(size) + ")";
      return false;
    }
  }
  return true;
}

template <Kind K>
inline bool do_free(void* p, cudaStream_t stream, std::string* err) {
  if constexpr (K == Kind::kSpillway) {
    const spillway_status st = spillway_free_async(p, stream);
    if (st != SPILLWAY_OK) [[unlikely]] {
      *err = spillway_msg("spillway_free_async", st);
      return false;
    }
  } else {
    const cudaError_t e = cudaFreeAsync(p, stream);
    if (e != cudaSuccess) [[unlikely]] {
      *err = cuda_msg("cudaFreeAsync", e);
      return false;
    }
  }
  return true;
}

// Replays the trace once. On failure frees what is still live and returns false.
template <Kind K>
bool replay(const Trace& t, std::vector<void*>& live, int device, cudaStream_t stream,
            std::string* err) {
  live.clear();
  for (const Op& op : t.ops) {
    if (op.size != 0) {
      void* p = nullptr;
      if (!do_alloc<K>(&p, op.size, device, stream, err)) [[unlikely]] {
        break;
      }
      live.push_back(p);
    } else {
      void* p = live[op.index];
      live[op.index] = live.back();
      live.pop_back();
      if (!do_free<K>(p, stream, err)) [[unlikely]] {
        break;
      }
    }
  }
  if (live.empty() && err->empty()) return true;
  std::string ignored;
  for (void* p : live) do_free<K>(p, stream, &ignored);
  live.clear();
  if (err->empty()) *err = "trace ended with live allocations (bug in the trace)";
  return false;
}

template <Kind K>
void BM_random(benchmark::State& state) {
  const auto max_size = static_cast<std::size_t>(state.range(0));
  const int device = spillway_bench::globals().device;
  cudaStream_t stream = spillway_bench::stream_for(0);
  const Trace& trace = trace_for(max_size);
  std::vector<void*> live;
  live.reserve(kNumAllocations);
  std::string err;

  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    state.SkipWithError(cuda_msg("cudaSetDevice", e).c_str());
    return;
  }
  // Warm: one untimed replay fills the allocator's cache.
  if (!replay<K>(trace, live, device, stream, &err)) {
    state.SkipWithError(("warm-up: " + err).c_str());
    return;
  }
  if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) {
    state.SkipWithError(cuda_msg("cudaStreamSynchronize", e).c_str());
    return;
  }
  for (auto _ : state) {
    if (!replay<K>(trace, live, device, stream, &err)) [[unlikely]] {
      state.SkipWithError(err.c_str());
      break;
    }
  }
  if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess && !state.error_occurred()) {
    state.SkipWithError(cuda_msg("cudaStreamSynchronize", e).c_str());
  }
  // Give the cache back so the next benchmark starts from the same device state.
  if constexpr (K == Kind::kSpillway) {
    if (spillway_status st = spillway_trim(device, 0);
        st != SPILLWAY_OK && !state.error_occurred()) {
      state.SkipWithError(spillway_msg("spillway_trim", st).c_str());
    }
  } else {
    if (cudaError_t e = cudaMemPoolTrimTo(spillway_bench::globals().default_pool, 0);
        e != cudaSuccess && !state.error_occurred()) {
      state.SkipWithError(cuda_msg("cudaMemPoolTrimTo", e).c_str());
    }
  }
  const double ops = static_cast<double>(trace.ops.size());
  state.counters["ops_per_s"] = benchmark::Counter(ops * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
  state.counters["trace_ops"] = benchmark::Counter(ops);
  state.counters["trace_peak_live_MiB"] =
      benchmark::Counter(static_cast<double>(trace.peak_live_bytes) / double(1 << 20));
}

constexpr std::int64_t kMaxSizes[] = {std::int64_t{1} << 20, std::int64_t{4} << 20,
                                      std::int64_t{64} << 20};

void register_kind(const char* name, void (*fn)(benchmark::State&)) {
  const std::string family = std::string("random/") + name;
  for (std::int64_t max_size : kMaxSizes) {
    benchmark::RegisterBenchmark(family.c_str(), fn)
        ->Arg(max_size)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Repetitions(5)
        ->ReportAggregatesOnly(true);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return spillway_bench::run_main("random_bench", argc, argv, [] {
    register_kind("spillway", &BM_random<Kind::kSpillway>);
    register_kind("cudaMallocAsync", &BM_random<Kind::kCudaMallocAsync>);
  });
}
