// tracker_bench.cpp — Google Benchmark: the CPU cost of one tracked kernel launch, i.e. what the
// CUPTI launch callback does per cuLaunchKernel (tracker::LaunchPath, as tracker.cpp's OnLaunch
// calls it when no graph capture is in progress): the kernel's layout from the LayoutCache,
// the access (clock read, sequence number), the scan of the arguments, the lookups in the
// BlockIndex, the per-block bookkeeping and the touch records (through the sink the allocator
// installs, into a TraceWriter on a temporary file). Needs no GPU and no CUPTI: the cost of
// CUPTI's own dispatch and of the driver is not in these numbers.
//
// Workload (fixed seed): ~2000 live blocks of mixed sizes (60% up to 64 KiB, 30% 1-16 MiB, the
// rest 32-512 MiB) in one device VA range; 160 kernels of 8-20 parameters, 3-6 of them
// pointers, half with a 64-640 byte struct (a TensorIterator closure: 2-3 pointers, then
// sizes/strides); 2048 launches in a fixed order, consecutive launches sharing tensors (a window
// of 48 blocks drifting along the live set), 1 in 16 pointers null, 1 in 5 interior; 1 in 10
// launches through an `extra` buffer (cuBLAS). About 31 words, 5.5 hits and 1.7 touches per
// launch (the H200 run of train_gpt.py: 42 words and 6.0 hits). The arguments are copied into
// a per-thread buffer just before each launch, as the caller writes them.
//
// Benchmarks (one iteration: one launch, or one free+allocation pair):
//   BM_Launch/<trace>/<walk KiB>: trace 1, touches go to the TraceWriter; walk > 0, that much
//       memory is written before each launch (the caller's own work between launches evicting
//       the caches: 1024 KiB is this machine's L2). 1 and 4 threads (one shared index,
//       sequence counter and writer, as in the process). Counter launch_ns: the time inside
//       launch() alone (TSC), per launch: the figure to read (the iteration time includes the
//       walk and the copy of the arguments; BM_Baseline times those alone).
//   BM_Baseline/<walk KiB>: BM_Launch's loop without the launch.
//   BM_IndexChurn: BlockIndex::remove + add at ~2000 live blocks (the allocator's free and
//       allocation under SPILLWAY_TRACK=1); half of the adds reuse the freed address.
//   BM_LogRecord: one allocation record and one free record into a TraceWriter on a temporary
//       file (what the event log costs per allocation/free pair, tracking or not).
// Other counters: words_per_launch, hits_per_launch, touches_per_launch. The machine where this
// is built is shared and noisy: run with --benchmark_repetitions=5 and read the "min" rows.
#include <benchmark/benchmark.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "profiler/trace_writer.h"
#include "profiler/tracker/arg_scan.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/tracker.h"

namespace {

using spillway::tracker::Access;
using spillway::tracker::BlockIndex;
using spillway::tracker::ParamLayout;
using spillway::tracker::ParamSlot;

constexpr std::uint64_t kVaBase = 0x4800000000ull;
constexpr int kLiveBlocks = 2000;
constexpr int kKernels = 160;
constexpr int kLaunches = 2048;
thread_local std::uint64_t t_touches = 0;  // this thread's touch records

struct Kernel {
  ParamLayout layout;
  std::vector<int> kind;  // per param: 0 int32, 1 pointer, 2 int64/size, 3 double, 4 struct
  std::size_t bytes = 0;
};

struct Launch {
  const void* handle = nullptr;  // the kernel (CUfunction stand-in)
  int kernel = 0;
  std::vector<unsigned char> buf;  // packed argument bytes (device layout)
  std::size_t size = 0;
  bool use_extra = false;  // through an `extra` buffer, else kernelParams
  std::uint64_t stream = 0;
};

struct Workload {
  BlockIndex index;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> blocks;  // live: addr, size
  std::vector<Kernel> kernels;
  std::vector<Launch> launches;
  std::uint64_t next_addr = kVaBase;
  spillway::trace::TraceWriter writer;
  std::string path;

  std::uint64_t BlockSize(std::mt19937_64& rng) {
    const unsigned r = static_cast<unsigned>(rng() % 100);
    if (r < 60) return 512 * (1 + rng() % 128);           // up to 64 KiB
    if (r < 90) return (1ull << 20) * (1 + rng() % 16);   // 1..16 MiB
    if (r < 99) return (1ull << 20) * (32 + rng() % 96);  // 32..128 MiB
    return (1ull << 20) * (256 + rng() % 256);            // 256..512 MiB
  }
  void AddBlock(std::mt19937_64& rng) {
    const std::uint64_t n = BlockSize(rng);
    next_addr += 512 * (rng() % 4);  // small gaps
    index.add(next_addr, n, 0);
    blocks.emplace_back(next_addr, n);
    next_addr += (n + 511) / 512 * 512;
  }

  explicit Workload(bool with_trace) {
    std::mt19937_64 rng(12345);
    for (int i = 0; i < kLiveBlocks; ++i) AddBlock(rng);
    if (with_trace) {
      path = "/tmp/spillway-tracker-bench-" + std::to_string(getpid()) + ".trace";
      std::string err;
      if (!writer.open(path, &err)) std::fprintf(stderr, "%s\n", err.c_str());
      // The allocator's sink (allocator.cpp, install_touch_sink), counting touches too.
      index.set_touch_sink(
          [](void* w, const spillway::tracker::Block& b, const Access& a) {
            static_cast<spillway::trace::TraceWriter*>(w)->touch(b.device(), b.addr(), a.t_ns,
                                                                 a.seq, a.stream);
            ++t_touches;
          },
          &writer);
    }
    // Kernels: 8-20 parameters, 3-6 of them pointers; half carry a struct (a TensorIterator
    // closure: pointers, sizes and strides) of 64-640 bytes.
    for (int k = 0; k < kKernels; ++k) {
      Kernel kern;
      const int n = 8 + static_cast<int>(rng() % 13);
      const int nptr = 3 + static_cast<int>(rng() % 4);
      std::vector<int> kinds(static_cast<std::size_t>(n), 0);
      for (int i = 0; i < nptr; ++i) kinds[static_cast<std::size_t>(i)] = 1;
      for (int i = nptr; i < n; ++i)
        kinds[static_cast<std::size_t>(i)] =
            static_cast<int>(rng() % 3) == 0 ? 2 : (rng() % 4 == 0 ? 3 : 0);
      if (rng() % 2 == 0) kinds[static_cast<std::size_t>(n - 1)] = 4;
      std::shuffle(kinds.begin(), kinds.end(), rng);
      std::size_t off = 0;
      for (int kd : kinds) {
        std::size_t size = kd == 0 ? 4 : kd == 4 ? 64 + 8 * (rng() % 73) : 8;
        std::size_t align = kd == 0 ? 4 : 8;
        off = (off + align - 1) / align * align;
        kern.layout.push_back(ParamSlot{off, size});
        kern.kind.push_back(kd);
        off += size;
      }
      kern.bytes = off;
      kernels.push_back(std::move(kern));
    }
    // Launches: consecutive launches share tensors (a window of recent blocks drifting along
    // the live set); 10% through an `extra` buffer (cuBLAS).
    std::size_t window = 0;
    for (int l = 0; l < kLaunches; ++l) {
      Launch la;
      la.kernel = static_cast<int>(rng() % kKernels);
      const Kernel& kern = kernels[static_cast<std::size_t>(la.kernel)];
      la.handle = &kernels[static_cast<std::size_t>(la.kernel)];
      la.buf.assign(kern.bytes + 8, 0);
      la.size = kern.bytes;
      la.stream = rng() % 8 == 0 ? 0x5000 : 0x4000;
      if (l % 3 == 0) window = (window + 1) % blocks.size();
      auto ptr = [&]() -> std::uint64_t {
        if (rng() % 16 == 0) return 0;  // null pointer argument
        const auto& b = blocks[(window + rng() % 48) % blocks.size()];
        return rng() % 5 == 0 ? b.first + (rng() % b.second) / 8 * 8 : b.first;
      };
      for (std::size_t i = 0; i < kern.layout.size(); ++i) {
        unsigned char* p = la.buf.data() + kern.layout[i].offset;
        switch (kern.kind[i]) {
          case 0: {
            const std::uint32_t v = static_cast<std::uint32_t>(rng() % 4096);
            std::memcpy(p, &v, 4);
            break;
          }
          case 1: {
            const std::uint64_t v = ptr();
            std::memcpy(p, &v, 8);
            break;
          }
          case 2: {
            const std::uint64_t v = rng() % (1u << 24);
            std::memcpy(p, &v, 8);
            break;
          }
          case 3: {
            const double v = static_cast<double>(rng() % 1000) / 7.0;
            std::memcpy(p, &v, 8);
            break;
          }
          case 4: {  // a closure: 2-3 pointers, then sizes and strides (small ints)
            const std::size_t words = kern.layout[i].size / 8;
            const std::size_t np = 2 + rng() % 2;
            for (std::size_t w = 0; w < words; ++w) {
              const std::uint64_t v = w < np ? ptr() : (rng() % 4096) | ((rng() % 4096) << 32);
              std::memcpy(p + 8 * w, &v, 8);
            }
            break;
          }
        }
      }
      la.use_extra = rng() % 10 == 0;
      launches.push_back(std::move(la));
    }
  }
  ~Workload() {
    writer.close();
    if (!path.empty()) std::remove(path.c_str());
  }
};

Workload& Shared(bool with_trace) {
  static Workload with(true), without(false);
  return with_trace ? with : without;
}

// A time stamp for timing launch() alone: the TSC where there is one (a few ns to read).
inline std::uint64_t Ticks() {
#if defined(__x86_64__)
  unsigned aux;
  return __rdtscp(&aux);
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}
inline double SteadyNs() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

// A thread's argument buffers for the launch being made (kernelParams and `extra` forms).
struct Stage {
  alignas(64) unsigned char buf[4096];
  void* params[64];
  std::size_t size = 0;
  void* extra[5] = {reinterpret_cast<void*>(std::uintptr_t{1}), buf,
                    reinterpret_cast<void*>(std::uintptr_t{2}), &size, nullptr};
  // Writes the arguments of `la` (as its caller would, just before the launch).
  void fill(const Workload& w, const Launch& la) {
    std::memcpy(buf, la.buf.data(), la.size);
    const ParamLayout& layout = w.kernels[static_cast<std::size_t>(la.kernel)].layout;
    for (std::size_t p = 0; p < layout.size(); ++p) params[p] = buf + layout[p].offset;
    size = la.size;
  }
  void* const* kernel_params(const Launch& la) const { return la.use_extra ? nullptr : params; }
  void* const* extra_form(const Launch& la) { return la.use_extra ? extra : nullptr; }
};

// LayoutCache::Query: the workload's kernels stand in for the driver's cuKernelGetParamInfo.
bool QueryKernel(void*, const void* handle, ParamLayout* out) {
  *out = static_cast<const Kernel*>(handle)->layout;
  return true;
}

// One LaunchPath per workload, like the tracker's one per process.
spillway::tracker::LaunchPath& PathOf(Workload& w) {
  static spillway::tracker::LaunchPath with(&Shared(true).index, &QueryKernel, nullptr);
  static spillway::tracker::LaunchPath without(&Shared(false).index, &QueryKernel, nullptr);
  return &w == &Shared(true) ? with : without;
}

// The caller's work between launches: `bytes` of its own memory written.
std::vector<unsigned char> g_thrash(8u << 20);
void Thrash(std::size_t bytes, std::size_t thread) {
  unsigned char* p = g_thrash.data() + (thread % 4) * (2u << 20);
  for (std::size_t i = 0; i < bytes; i += 64) p[i]++;
  benchmark::ClobberMemory();
}

void BM_Launch(benchmark::State& state) {
  Workload& w = Shared(state.range(0) != 0);
  spillway::tracker::LaunchPath& path = PathOf(w);
  const std::size_t thrash = static_cast<std::size_t>(state.range(1)) << 10;
  const auto thread = static_cast<std::size_t>(state.thread_index());
  std::size_t i = thread * 997;
  Stage stage;
  std::uint64_t ticks = 0;  // inside launch() only
  const double start_ns = SteadyNs();
  const std::uint64_t start_ticks = Ticks();
  const auto before = spillway::tracker::Read(path.counters());
  const std::uint64_t touches0 = t_touches;
  for (auto _ : state) {
    if (thrash != 0) Thrash(thrash, thread);
    const Launch& la = w.launches[i++ % w.launches.size()];
    stage.fill(w, la);
    const std::uint64_t t0 = Ticks();
    path.launch(la.handle, la.stream, stage.kernel_params(la), stage.extra_form(la));
    ticks += Ticks() - t0;
  }
  const double end_ns = SteadyNs();
  const std::uint64_t end_ticks = Ticks();
  if (thread == 0) {
    const auto v = spillway::tracker::Read(path.counters());
    const double n = static_cast<double>(v.launches - before.launches);
    state.counters["words_per_launch"] = static_cast<double>(v.words - before.words) / n;
    state.counters["hits_per_launch"] = static_cast<double>(v.hits - before.hits) / n;
    const double ns_per_tick = (end_ns - start_ns) / static_cast<double>(end_ticks - start_ticks);
    state.counters["launch_ns"] =
        static_cast<double>(ticks) * ns_per_tick / static_cast<double>(state.iterations());
    state.counters["touches_per_launch"] =
        static_cast<double>(t_touches - touches0) / static_cast<double>(state.iterations());
  }
}

// BM_Launch's loop without the launch: the memory walk and the copy of the arguments.
void BM_Baseline(benchmark::State& state) {
  Workload& w = Shared(false);
  const std::size_t thrash = static_cast<std::size_t>(state.range(0)) << 10;
  const auto thread = static_cast<std::size_t>(state.thread_index());
  std::size_t i = thread * 997;
  Stage stage;
  for (auto _ : state) {
    if (thrash != 0) Thrash(thrash, thread);
    const Launch& la = w.launches[i++ % w.launches.size()];
    stage.fill(w, la);
    benchmark::DoNotOptimize(stage.buf);
    benchmark::DoNotOptimize(stage.params);
    benchmark::ClobberMemory();
  }
}

// Index churn: one free and one allocation (remove + add) with ~2000 live blocks.
void BM_IndexChurn(benchmark::State& state) {
  Workload w(false);
  std::mt19937_64 rng(99);
  for (auto _ : state) {
    const std::size_t victim = rng() % w.blocks.size();
    benchmark::DoNotOptimize(w.index.remove(w.blocks[victim].first));
    const std::uint64_t n = w.blocks[victim].second;
    // Reuse the address (an allocator's free list) half the time, else a fresh one.
    if (rng() % 2 == 0) {
      w.index.add(w.blocks[victim].first, n, 0);
    } else {
      w.blocks[victim] = {w.next_addr, n};
      w.index.add(w.next_addr, n, 0);
      w.next_addr += (n + 511) / 512 * 512;
    }
  }
}

}  // namespace

void BM_LogRecord(benchmark::State& state) {
  spillway::trace::TraceWriter writer;
  char path[] = "/tmp/spillway-log-bench-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    state.SkipWithError("mkstemp failed");
    return;
  }
  close(fd);
  std::string error;
  if (!writer.open(path, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::uint64_t addr = kVaBase;
  for (auto _ : state) {
    writer.record(spillway::trace::Kind::kCudaMalloc, 0, nullptr, addr, 4096, 0, 4096);
    writer.record(spillway::trace::Kind::kCudaFree, 0, nullptr, addr, 4096, 0);
    addr += 4096;
  }
  writer.close();
  unlink(path);
}

// With --benchmark_repetitions=N, "min" is reported beside mean/median (a shared build machine
// is noisy: the fastest repetition is the least disturbed).
double Min(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

BENCHMARK(BM_Launch)
    ->ArgsProduct({{0, 1}, {0}})
    ->Threads(1)
    ->Threads(4)
    ->UseRealTime()
    ->ComputeStatistics("min", Min);
BENCHMARK(BM_Launch)
    ->ArgsProduct({{1}, {1024}})
    ->Threads(1)
    ->UseRealTime()
    ->ComputeStatistics("min", Min);
BENCHMARK(BM_Baseline)->Arg(0)->Arg(1024)->UseRealTime()->ComputeStatistics("min", Min);
BENCHMARK(BM_IndexChurn)->UseRealTime()->ComputeStatistics("min", Min);
BENCHMARK(BM_LogRecord)->UseRealTime()->ComputeStatistics("min", Min);
BENCHMARK_MAIN();
