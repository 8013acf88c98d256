// torch_pair_bench.cpp — the PyTorch anchor for bench/pair_bench: time of one warm (cached)
// c10::cuda::CUDACachingAllocator::raw_alloc_with_stream + raw_delete pair, at 1 and 8
// threads, for the sizes pair_bench uses. Built on the GPU machine against libtorch
// (bench/torch/build_and_run.sh); no Google Benchmark.
//
// Method: each thread owns a stream from PyTorch's pool (c10::cuda::getStreamFromPool), makes
// one untimed pair, then per repetition (threads released together by a barrier) times ITERS
// pairs with std::chrono::steady_clock. A repetition's figure is the mean over threads of
// (thread's wall time / ITERS) — the per-thread latency of a pair, the quantity collect.py
// derives from pair_bench for its threaded runs; the reported figure is the median over 9
// repetitions.
//
// Usage: torch_pair_bench OUT.json [ITERS (default 20000)]
// Writes {"pytorch": {"1": {"512": ns, ...}, "8": {...}}, "meta": {...}}.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kSizes[] = {512, std::size_t{64} << 10, std::size_t{1} << 20,
                                  std::size_t{16} << 20, std::size_t{256} << 20};
constexpr int kThreadCounts[] = {1, 8};
constexpr int kRepetitions = 9;

// Reusable barrier (C++17; the project may not build with C++20 against these headers).
class Barrier {
 public:
  explicit Barrier(int count) : count_(count), waiting_(0), generation_(0) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned long gen = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen != generation_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
  int waiting_;
  unsigned long generation_;
};

// One raw_alloc_with_stream + raw_delete pair; throws on failure.
inline void pair_once(std::size_t size, cudaStream_t stream) {
  void* p = c10::cuda::CUDACachingAllocator::raw_alloc_with_stream(size, stream);
  if (p == nullptr) throw std::runtime_error("raw_alloc_with_stream returned nullptr");
  c10::cuda::CUDACachingAllocator::raw_delete(p);
}

// Median over repetitions of the mean per-thread ns per pair. Returns a negative value and
// fills *err on failure.
double measure(std::size_t size, int threads, long iters, const std::vector<cudaStream_t>& streams,
               std::string* err) {
  std::vector<std::vector<double>> ns(kRepetitions, std::vector<double>(threads, 0.0));
  std::vector<std::string> errors(threads);
  Barrier barrier(threads);
  auto body = [&](int tid) {
    bool ok = true;
    try {
      if (cudaSetDevice(0) != cudaSuccess) throw std::runtime_error("cudaSetDevice(0) failed");
      pair_once(size, streams[tid]);  // warm
    } catch (const std::exception& e) {
      errors[tid] = e.what();
      ok = false;
    }
    for (int rep = 0; rep < kRepetitions; ++rep) {
      barrier.wait();  // every thread takes part in every barrier, failed or not
      if (!ok) continue;
      try {
        const auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < iters; ++i) pair_once(size, streams[tid]);
        const auto t1 = std::chrono::steady_clock::now();
        ns[rep][tid] =
            std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iters);
      } catch (const std::exception& e) {
        errors[tid] = e.what();
        ok = false;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  body(0);
  for (std::thread& t : pool) t.join();
  for (const std::string& e : errors) {
    if (!e.empty()) {
      *err = e;
      return -1.0;
    }
  }
  std::vector<double> per_rep;
  for (const std::vector<double>& rep : ns) {
    double sum = 0;
    for (double v : rep) sum += v;
    per_rep.push_back(sum / threads);
  }
  std::sort(per_rep.begin(), per_rep.end());
  return per_rep[per_rep.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.json [ITERS]\n", argv[0]);
    return 2;
  }
  const long iters = argc > 2 ? std::atol(argv[2]) : 20000;
  if (iters <= 0) {
    std::fprintf(stderr, "torch_pair_bench: ITERS must be positive\n");
    return 2;
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "torch_pair_bench: no usable CUDA device\n");
    return 1;
  }
  std::vector<cudaStream_t> streams;
  try {
    // Initialises CUDA in PyTorch (lazy init), which initialises the caching allocator.
    at::Tensor t =
        at::empty({1}, at::TensorOptions()
                           .device(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(0)))
                           .dtype(at::kFloat));
    (void)t;
    for (int i = 0; i < kThreadCounts[1]; ++i) {
      streams.push_back(
          c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(0)).stream());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_pair_bench: PyTorch CUDA init failed: %s\n", e.what());
    return 1;
  }
  std::string allocator_name = "?";
  try {
    allocator_name = c10::cuda::CUDACachingAllocator::get()->name();
  } catch (const std::exception&) {
  }

  std::string json = "{\n  \"pytorch\": {";
  bool failed = false;
  for (int ti = 0; ti < 2; ++ti) {
    const int threads = kThreadCounts[ti];
    json += std::string(ti ? ",\n" : "\n") + "    \"" + std::to_string(threads) + "\": {";
    for (std::size_t si = 0; si < std::size(kSizes); ++si) {
      std::string err;
      const double ns = measure(kSizes[si], threads, iters, streams, &err);
      char buf[128];
      if (ns < 0) {
        std::fprintf(stderr, "torch_pair_bench: size %zu threads %d failed: %s\n", kSizes[si],
                     threads, err.c_str());
        std::snprintf(buf, sizeof buf, "null");
        failed = true;
      } else {
        std::snprintf(buf, sizeof buf, "%.2f", ns);
        std::printf("pytorch  threads=%d  size=%-10zu  %10.1f ns/pair (per thread)\n", threads,
                    kSizes[si], ns);
      }
      json += std::string(si ? ", " : "") + "\"" + std::to_string(kSizes[si]) + "\": " + buf;
    }
    json += "}";
  }
  json += "\n  },\n  \"meta\": {";
#ifdef TORCH_VERSION
  json += "\"torch_version\": \"" + std::string(TORCH_VERSION) + "\", ";
#endif
  json += "\"allocator\": \"" + allocator_name +
          "\", \"api\": \"c10::cuda::CUDACachingAllocator::"
          "raw_alloc_with_stream + raw_delete\", \"iterations\": " +
          std::to_string(iters) + ", \"repetitions\": " + std::to_string(kRepetitions) +
          ", \"statistic\": \"median over repetitions of mean per-thread ns per pair\"}\n}\n";

  std::FILE* f = std::fopen(argv[1], "w");
  if (f == nullptr || std::fputs(json.c_str(), f) < 0 || std::fclose(f) != 0) {
    std::fprintf(stderr, "torch_pair_bench: cannot write %s\n", argv[1]);
    return 1;
  }
  return failed ? 1 : 0;
}
