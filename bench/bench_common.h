// bench_common.h — shared setup for Spillway's Google Benchmark programs (pair_bench,
// random_bench): device check, per-thread streams, the cudaMallocAsync pool settings, and
// error-message helpers. Header-only; included by the benchmark .cpp files alone.
#ifndef SPILLWAY_BENCH_COMMON_H_
#define SPILLWAY_BENCH_COMMON_H_

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>
#include <spillway/spillway.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace spillway_bench {

// Most threads any benchmark uses; one stream is created per thread index.
inline constexpr int kMaxThreads = 8;

struct Globals {
  int device = 0;
  std::vector<cudaStream_t> streams;  // streams[i] is used by benchmark thread i
  cudaMemPool_t default_pool = nullptr;
};

inline Globals& globals() {
  static Globals g;
  return g;
}

inline std::string cuda_msg(const char* what, cudaError_t err) {
  return std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
         ")";
}

inline std::string spillway_msg(const char* what, spillway_status st) {
  const char* last = spillway_last_error();
  std::string msg = std::string(what) + " failed: " + spillway_status_string(st);
  if (last != nullptr && last[0] != '\0') {
    msg += ": ";
    msg += last;
  }
  return msg;
}

// Checks for a CUDA device and prepares the globals. Returns true to go on; on false the
// caller exits with *exit_code: 0 when no GPU is present and SPILLWAY_BENCH_ALLOW_NO_GPU=1
// (CI, build machines), 1 otherwise.
inline bool setup(const char* prog, int* exit_code) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    const char* allow = std::getenv("SPILLWAY_BENCH_ALLOW_NO_GPU");
    const bool allowed = allow != nullptr && std::strcmp(allow, "1") == 0;
    std::fprintf(stderr, "%s: no usable CUDA device (%s); %s\n", prog,
                 err != cudaSuccess ? cuda_msg("cudaGetDeviceCount", err).c_str()
                                    : "cudaGetDeviceCount returned 0 devices",
                 allowed ? "SPILLWAY_BENCH_ALLOW_NO_GPU=1, so nothing was run (exit 0)"
                         : "nothing was run (set SPILLWAY_BENCH_ALLOW_NO_GPU=1 to exit 0)");
    *exit_code = allowed ? 0 : 1;
    return false;
  }
  Globals& g = globals();
  if (const char* dev = std::getenv("SPILLWAY_BENCH_DEVICE")) g.device = std::atoi(dev);
  if (g.device < 0 || g.device >= count) {
    std::fprintf(stderr, "%s: SPILLWAY_BENCH_DEVICE=%d but only %d device(s)\n", prog, g.device,
                 count);
    *exit_code = 1;
    return false;
  }
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "%s: %s\n", prog, msg.c_str());
    *exit_code = 1;
    return false;
  };
  cudaError_t e = cudaSetDevice(g.device);
  if (e != cudaSuccess) return fail(cuda_msg("cudaSetDevice", e));
  e = cudaFree(nullptr);  // create the primary context outside any timing
  if (e != cudaSuccess) return fail(cuda_msg("cudaFree(nullptr)", e));
  g.streams.assign(kMaxThreads, nullptr);
  for (cudaStream_t& s : g.streams) {
    e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e != cudaSuccess) return fail(cuda_msg("cudaStreamCreateWithFlags", e));
  }
  // cudaMallocAsync anchor: the device's default pool, keeping everything it ever held.
  e = cudaDeviceGetDefaultMemPool(&g.default_pool, g.device);
  if (e != cudaSuccess) return fail(cuda_msg("cudaDeviceGetDefaultMemPool", e));
  std::uint64_t threshold = UINT64_MAX;
  e = cudaMemPoolSetAttribute(g.default_pool, cudaMemPoolAttrReleaseThreshold, &threshold);
  if (e != cudaSuccess) return fail(cuda_msg("cudaMemPoolSetAttribute(ReleaseThreshold)", e));
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, g.device) == cudaSuccess) {
    std::fprintf(stderr, "%s: device %d: %s\n", prog, g.device, prop.name);
  }
  return true;
}

inline void teardown() {
  Globals& g = globals();
  for (cudaStream_t s : g.streams) {
    if (s != nullptr) {
      cudaStreamSynchronize(s);
      cudaStreamDestroy(s);
    }
  }
  g.streams.clear();
}

// Spends about `seconds` making untimed 512-byte allocate+free pairs with Spillway and with
// cudaMallocAsync on every stream, so that the first benchmark registered does not also pay
// for the process's warm-up (lazy initialisation, CPU clock ramp, first page faults). Errors
// are ignored here: the benchmarks themselves report them.
inline void warm_up_process(double seconds) {
  Globals& g = globals();
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (cudaStream_t s : g.streams) {
      void* p = nullptr;
      if (spillway_malloc_async(&p, 512, g.device, s) == SPILLWAY_OK) spillway_free_async(p, s);
      if (cudaMallocAsync(&p, 512, s) == cudaSuccess) cudaFreeAsync(p, s);
    }
  }
  for (cudaStream_t s : g.streams) cudaStreamSynchronize(s);
  cudaGetLastError();  // reset the runtime's last-error state after any failed call above
}

// The stream of benchmark thread `thread_index`.
inline cudaStream_t stream_for(int thread_index) {
  Globals& g = globals();
  return g.streams[static_cast<std::size_t>(thread_index) % g.streams.size()];
}

// The main() of a benchmark program: flags, device set-up, warm-up, `register_all()` (which
// registers the benchmarks), the run, teardown. Returns the process exit code.
template <class Register>
int run_main(const char* prog, int argc, char** argv, Register register_all) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int exit_code = 0;
  if (!setup(prog, &exit_code)) return exit_code;
  warm_up_process(0.5);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  teardown();
  return 0;
}

}  // namespace spillway_bench

#endif  // SPILLWAY_BENCH_COMMON_H_
