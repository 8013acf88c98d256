// replay.cpp — `spillway replay TRACE`: runs a recorded SPILLWAY_TRACE through the allocator
// on the CPU simulator (same allocation and free order, same stream structure) and prints the
// summary that the original run would show. With --gpu-lag-ms L the replay keeps the recorded
// pace and every stream finishes each operation L ms after the host issued it: a model of a GPU
// running behind the CPU, which decides when freed pages may be reused elsewhere.
#include <chrono>
#include <cstdio>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/sim_backend.h"
#include "preload/cli/commands.h"
#include "profiler/trace_reader.h"

namespace spillway::cli {

namespace {

const char kReplayUsage[] =
    "usage: spillway replay TRACE [--device-memory BYTES] [--gpu-lag-ms L] [--trace OUT]\n";

}  // namespace

int Replay(int argc, char** argv) {
  std::string path;
  std::uint64_t device_memory = std::uint64_t{192} << 30;
  double lag_ms = 0;
  std::string out_trace;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trace" && i + 1 < argc) {
      out_trace = argv[++i];
      continue;
    }
    if (a == "--gpu-lag-ms" && i + 1 < argc) {
      char* end = nullptr;
      lag_ms = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(lag_ms >= 0 && lag_ms <= 10000)) {
        std::fprintf(stderr, "spillway replay: bad --gpu-lag-ms '%s' (0..10000)\n", argv[i]);
        return 2;
      }
    } else if (a == "--device-memory" && i + 1 < argc) {
      if (!ParseBytes(argv[++i], &device_memory)) {
        std::fprintf(stderr, "spillway replay: bad --device-memory '%s' (e.g. 80G)\n", argv[i]);
        return 2;
      }
    } else if (path.empty() && a[0] != '-') {
      path = a;
    } else {
      std::fprintf(stderr, "%s", kReplayUsage);
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "%s", kReplayUsage);
    return 2;
  }
  trace::Trace t;
  std::string err;
  if (!trace::ReadTrace(path, &t, &err)) {
    std::fprintf(stderr, "spillway replay: %s\n", err.c_str());
    return 1;
  }
  const trace::Header& h = t.header;
  const std::vector<trace::Record>& recs = t.records;
  int devices = 1;
  for (const auto& r : recs) devices = std::max(devices, r.device + 1);
  prim::SimOptions opt;
  opt.devices = devices;
  opt.device_memory = device_memory;
  auto sim = std::make_unique<prim::SimBackend>(opt);
  prim::SimBackend* simp = sim.get();
  Config cfg;  // the reserve policy comes from the environment, as in a real run
  std::string cfg_err;
  if (!ParseConfig([](const char* n) { return std::getenv(n); }, &cfg, &cfg_err)) {
    std::fprintf(stderr, "%s\n", cfg_err.c_str());
    return 2;
  }
  cfg.use_sim = true;
  cfg.trace_path.clear();
  Allocator alloc(std::move(sim), cfg);
  // The replayed allocator's own event log (with its chunks and mappings), for `spillway report`.
  if (!out_trace.empty() && alloc.open_trace(out_trace) != SPILLWAY_OK) {
    std::fprintf(stderr, "spillway replay: %s\n", LastError());
    return 1;
  }

  std::map<std::uint64_t, prim::Stream> streams;  // recorded stream -> simulated stream
  auto stream_of = [&](std::uint64_t s) -> prim::Stream {
    if (s == 0) return nullptr;
    auto it = streams.find(s);
    if (it == streams.end()) it = streams.emplace(s, simp->create_stream()).first;
    return it->second;
  };
  std::unordered_map<std::uint64_t, void*> addr;  // recorded address -> replayed block
  std::size_t allocs = 0, frees = 0, skipped = 0, failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const auto lag = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double, std::milli>(lag_ms));
  for (const auto& r : recs) {
    if (lag_ms > 0) {  // keep the recorded pace; the stream completes this op L ms later
      std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(r.t_ns));
      const auto done_at = std::chrono::steady_clock::now() + lag;
      simp->enqueue(stream_of(r.stream), [done_at] { std::this_thread::sleep_until(done_at); });
    }
    if (!trace::IsAlloc(r.kind) && !trace::IsFree(r.kind)) continue;  // not a call to replay
    if (r.status != SPILLWAY_OK) {  // failed or passed to CUDA: nothing to replay
      ++skipped;
      continue;
    }
    const bool sync = trace::IsSyncKind(r.kind);
    if (trace::IsAlloc(r.kind)) {
      void* p = nullptr;
      if (alloc.allocate(&p, r.size, r.device, stream_of(r.stream), sync,
                         static_cast<trace::Kind>(r.kind)) != SPILLWAY_OK) {
        ++failed;
        continue;
      }
      addr[r.addr] = p;
      ++allocs;
    } else {
      auto it = addr.find(r.addr);
      if (it == addr.end()) {
        ++skipped;
        continue;
      }
      alloc.free(it->second, sync ? FreeMode::kSynchronous : FreeMode::kStreamOrdered,
                 stream_of(r.stream), static_cast<trace::Kind>(r.kind));
      addr.erase(it);
      ++frees;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double span_s = recs.empty() ? 0 : static_cast<double>(recs.back().t_ns) / 1e9;
  std::printf("replayed %s: %zu records from pid %u (%.1f s of recorded time), %zu allocations, "
              "%zu frees, %zu skipped, %zu failed, in %.3f s on the CPU simulator (GPU lag "
              "model %.0f ms, reserve policy %s)\n",
              path.c_str(), recs.size(), h.pid, span_s, allocs, frees, skipped, failed, secs,
              lag_ms, cfg.compact ? "compact" : "fast");
  std::fputs(alloc.summary().c_str(), stdout);
  for (auto& [k, s] : streams) simp->synchronize(s);
  return failed == 0 ? 0 : 1;
}

}  // namespace spillway::cli
