// allocator.cpp — the process-wide allocator (see allocator.h).
#include "allocator/allocator.h"

#include <pthread.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "allocator/detail/size_class.h"
#include "allocator/error.h"
#include "allocator/prim/cuda_backend.h"
#include "allocator/prim/sim_backend.h"
#include "offload/nvme_store.h"
#include "offload/pager.h"
#include "profiler/callsite/capture.h"
#include "profiler/clock.h"
#include "profiler/report/output.h"
#include "profiler/trace_writer.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/kernel_activity.h"
#include "profiler/tracker/tracker.h"

namespace spillway {

namespace {

std::atomic<std::uint64_t> g_next_id{1};

struct ArenaCache {
  std::uint64_t owner = 0;  // Allocator::id_ (addresses can be reused by a later instance)
  DeviceHeap* heap = nullptr;
  int device = -1;
  prim::Stream stream = nullptr;
  bool sync = false;
  Arena* arena = nullptr;
};
// initial-exec: no __tls_get_addr call on the hot path (the library is loaded at start-up or
// early by ctypes; the cache is a few dozen bytes of the static TLS surplus).
__attribute__((tls_model("initial-exec"))) thread_local ArenaCache t_cache;

Allocator* g_global = nullptr;
std::string g_global_error;
spillway_status g_global_status = SPILLWAY_OK;

// SPILLWAY_REPORT: the log the reports are made from, and the process that writes them (a
// forked child inherits the handler but logs to path.PID: its log stays for `spillway report`).
std::string g_report_trace;
pid_t g_report_pid = 0;

void AtExit() {
  if (g_global == nullptr) return;
  if (g_global->config().print_stats) {
    std::string s = g_global->summary();
    std::fputs(s.c_str(), stderr);
  }
  // Kernel records CUPTI still holds (SPILLWAY_KERNELS=1). Our handler was registered at the
  // first intercepted allocation, after CUDA's own, so it runs first: the context is alive.
  if (g_global->config().kernels) tracker::FlushKernelActivity();
  g_global->write_access_summaries();  // before the flush: they go into the same log
  g_global->trace_passthrough(trace::Kind{0}, -1, nullptr, nullptr, 0);  // flushes the trace
  if (!g_global->config().report_dir.empty() && getpid() == g_report_pid) {
    // Reports from the log just flushed; no CUDA call (the context may be gone at exit).
    std::string summary, out, err;
    if (report::ReportLog(g_report_trace, g_global->config().report_dir, &summary, &out, &err)) {
      std::fputs(summary.c_str(), stderr);
      std::fprintf(stderr, "spillway: reports written to %s/\n", out.c_str());
    } else {
      std::fprintf(stderr, "spillway: SPILLWAY_REPORT: %s\n", err.c_str());
    }
  }
}

}  // namespace

Allocator::Allocator(std::unique_ptr<prim::Backend> backend, Config cfg)
    : id_(g_next_id.fetch_add(1)), backend_(std::move(backend)), cfg_(std::move(cfg)) {
  for (auto& h : heaps_) h.store(nullptr);
  backend_->set_kernel_copies_to_host(cfg_.offload_copy_kernel);  // SPILLWAY_OFFLOAD_COPY
}

Allocator::~Allocator() {
  write_access_summaries();
  for (auto& pg : pagers_owned_) pg.reset();
  if (trace_) trace_->close();
  for (auto& h : owned_) h.reset();
}

Allocator* Allocator::Global(spillway_status* status) {
  static std::once_flag once;
  std::call_once(once, [] {
    Config cfg;
    std::string err;
    if (!ParseConfig([](const char* n) { return std::getenv(n); }, &cfg, &err)) {
      g_global_error = err;
      g_global_status = SPILLWAY_ERR_CONFIG;
      return;
    }
    std::unique_ptr<prim::Backend> backend;
    if (cfg.use_sim) {
      prim::SimOptions o;
      o.devices = cfg.sim_devices;
      o.device_memory = cfg.sim_device_memory;
      backend = std::make_unique<prim::SimBackend>(o);
    } else {
      backend = prim::CudaBackend::Create(&err);
      if (!backend) {
        g_global_error = err;
        g_global_status = SPILLWAY_ERR_NO_DEVICE;
        return;
      }
    }
    if (!cfg.report_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(cfg.report_dir, ec);
      if (ec) {
        g_global_error = "spillway: cannot create the SPILLWAY_REPORT directory '" +
                         cfg.report_dir + "': " + ec.message();
        g_global_status = SPILLWAY_ERR_CONFIG;
        return;
      }
      if (cfg.trace_path.empty())
        cfg.trace_path = cfg.report_dir + "/spillway-" + std::to_string(getpid()) + ".trace";
      g_report_trace = cfg.trace_path;
      g_report_pid = getpid();
    }
    auto* a = new Allocator(std::move(backend), cfg);  // never deleted: see allocator.h
    if (!cfg.trace_path.empty()) {
      if (a->open_trace(cfg.trace_path) != SPILLWAY_OK) {
        g_global_error = LastError();
        g_global_status = SPILLWAY_ERR_CONFIG;
        return;
      }
      pthread_atfork([] { g_global->trace_->atfork_prepare(); },
                     [] { g_global->trace_->atfork_parent(); },
                     [] { g_global->trace_->atfork_child(); });
    }
    g_global = a;
    std::atexit(AtExit);
  });
  if (g_global == nullptr) {
    *status = Fail(g_global_status, g_global_error);
    return nullptr;
  }
  // Tracking starts after the one-time set-up, so that an allocation made by CUPTI's own
  // start-up (through our hooks) finds the allocator ready instead of re-entering the set-up;
  // such a re-entrant call, or one from another thread meanwhile, runs untracked.
  static std::atomic<int> tracking{0};  // 0 not started, 1 starting or done
  if (g_global->cfg_.track && tracking.load(std::memory_order_acquire) == 0) {
    int expected = 0;
    if (tracking.compare_exchange_strong(expected, 1)) g_global->start_tracking();
  }
  return g_global;
}

const std::string& Allocator::GlobalError() { return g_global_error; }

spillway_status Allocator::open_trace(const std::string& path) {
  std::lock_guard<std::mutex> lk(mu_);
  if (trace_) return Fail(SPILLWAY_ERR_CONFIG, "spillway: a trace is already being recorded");
  auto t = std::make_unique<trace::TraceWriter>();
  std::string err;
  if (!t->open(path, &err)) return Fail(SPILLWAY_ERR_CONFIG, err);
  trace_ = std::move(t);
  for (auto& h : owned_)  // heaps made before: their physical events go to the trace too
    if (h) h->set_trace(trace_.get());
  return SPILLWAY_OK;
}

spillway_status Allocator::heap(int device, DeviceHeap** out) {
  if (device < 0 || device >= kMaxDevices || device >= backend_->device_count())
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: invalid device " + std::to_string(device) + " (" +
                    std::to_string(backend_->device_count()) + " devices)");
  auto idx = static_cast<std::size_t>(device);
  DeviceHeap* h = heaps_[idx].load(std::memory_order_acquire);
  if (h != nullptr) {
    *out = h;
    return SPILLWAY_OK;
  }
  std::lock_guard<std::mutex> lk(mu_);
  h = heaps_[idx].load(std::memory_order_acquire);
  if (h == nullptr) {
    auto nh = std::make_unique<DeviceHeap>(*backend_, device);
    // Spans pay where memory is remapped often: under offload (docs/offload.md).
    const bool spans = cfg_.spans == Config::Spans::kOn ||
                       (cfg_.spans == Config::Spans::kAuto && cfg_.offload);
    spillway_status s = nh->init(0, cfg_.compact, spans, cfg_.span_mib << 20);
    if (s != SPILLWAY_OK) return s;
    std::uint64_t budget = ResolveBudget(cfg_, nh->total_memory());
    if (budget != 0 && budget < nh->granularity())
      return Fail(SPILLWAY_ERR_CONFIG, "spillway: SPILLWAY_DEVICE_BUDGET is smaller than one "
                                       "physical chunk (" + std::to_string(nh->granularity()) +
                                           " bytes)");
    nh->set_budget(budget);
    nh->set_trace(trace_.get());
    h = nh.get();
    owned_[idx] = std::move(nh);
    heaps_[idx].store(h, std::memory_order_release);
  }
  *out = h;
  return SPILLWAY_OK;
}

spillway_status Allocator::allocate(void** out, std::size_t n, int device, prim::Stream stream,
                                    bool sync, trace::Kind kind) {
  if (out == nullptr) return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: NULL output pointer");
  *out = nullptr;
  spillway_status s = SPILLWAY_OK;
  ArenaCache& c = t_cache;
  if (!(c.owner == id_ && c.device == device && c.stream == stream && c.sync == sync)) {
    DeviceHeap* h = nullptr;
    Arena* a = nullptr;
    if ((s = heap(device, &h)) == SPILLWAY_OK) s = h->arena_for(stream, sync, &a);
    if (s == SPILLWAY_OK) c = {id_, h, device, stream, sync, a};
  }
  if (s == SPILLWAY_OK) {
    DeviceHeap* h = c.heap;
    const std::uint64_t cap = h->budget() ? h->budget() : h->total_memory();
    if (n == 0) {
      s = Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: allocation of 0 bytes");
    } else if (n > cap) {
      h->stats().on_oom();
      if (trace_) trace_->physical(trace::Kind::kOom, device, 0, n);
      s = Fail(SPILLWAY_ERR_OUT_OF_MEMORY,
               "spillway: allocation of " + std::to_string(n) + " bytes on device " +
                   std::to_string(device) + " exceeds the " +
                   (h->budget() ? "device budget" : "device memory") + " of " +
                   std::to_string(cap) + " bytes");
    } else if (cfg_.offload) {
      // Offload on: running out evicts cold blocks first, then tries once more.
      const std::uint64_t t0 = MonotonicNs();
      SetQuietOom(true);
      // With SPILLWAY_OFFLOAD_DRAIN=last the pager evicts before the heap waits for the GPU.
      SetAcquireMode(cfg_.offload_drain_last ? AcquireMode::kNoWait : AcquireMode::kAny);
      s = c.arena->allocate(n, out);
      SetAcquireMode(AcquireMode::kAny);
      SetQuietOom(false);
      offload::Pager* pg = nullptr;
      if (s == SPILLWAY_ERR_OUT_OF_MEMORY && pager(device, &pg) == SPILLWAY_OK) {
        pg->make_room(n + h->granularity(), 0);
        s = c.arena->allocate(n, out);
      }
      if (pg != nullptr || (pg = pager_if_any(device)) != nullptr)
        pg->counters().alloc_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
    } else {
      s = c.arena->allocate(n, out);
    }
  }
  if (tracker::BlockIndex* ix = index_.load(std::memory_order_acquire); ix && s == SPILLWAY_OK)
      [[unlikely]]
    ix->add(reinterpret_cast<std::uintptr_t>(*out), n, device);
  if (trace_)
    trace_->record(kind, device, stream, reinterpret_cast<std::uintptr_t>(*out), n,
                   static_cast<std::uint16_t>(s), s == SPILLWAY_OK ? detail::BlockSize(n) : 0);
  // The call site (SPILLWAY_CALLSITE_MIN): after the record, for large blocks only.
  if (trace_ && s == SPILLWAY_OK && cfg_.callsite_min != 0 && n >= cfg_.callsite_min)
    if (const std::string* site = callsite::Capture())
      trace_->callsite(device, reinterpret_cast<std::uintptr_t>(*out), site);
  return s;
}

bool Allocator::on_away(const std::uint64_t* addrs, std::size_t n, prim::Stream stream,
                        bool blind, bool streaming) {
  if (blind) {
    for (auto& pg : pagers_)
      if (offload::Pager* p = pg.load(std::memory_order_acquire)) p->go_strict();
    return true;
  }
  bool ok = true;
  for (std::size_t i = 0; i < n; ++i) {
    const int device = device_of(reinterpret_cast<const void*>(addrs[i]));
    if (offload::Pager* pg = pager_if_any(device)) {
      const std::uint64_t t0 = MonotonicNs();
      const auto p = static_cast<std::uintptr_t>(addrs[i]);
      const spillway_status st =
          streaming ? pg->access_in_place(p, stream) : pg->prefetch(p, stream, true);
      if (st != SPILLWAY_OK) {
        const std::string why = LastError();
        const bool readable = pg->readable(p);  // e.g. host pages mapped at its address
        ok = ok && readable;
        static std::atomic<int> said{0};
        if (said.fetch_add(1) < 4)
          std::fprintf(stderr, "spillway: a launch needs 0x%" PRIx64 " back and it could not "
                       "come: %s%s\n", addrs[i], why.c_str(),
                       readable ? " (it reads the host copy over the link)"
                                : " (it is not readable at its address)");
      }
      pg->counters().launch_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
    }
  }
  return ok;
}

int Allocator::device_of(const void* p) const {
  int device = -1;
  return find_arena(reinterpret_cast<std::uintptr_t>(p), &device) ? device : -1;
}

spillway_status Allocator::pager(int device, offload::Pager** out) {
  if (offload::Pager* pg = pager_if_any(device)) {
    *out = pg;
    return SPILLWAY_OK;
  }
  DeviceHeap* h = nullptr;
  if (spillway_status s = heap(device, &h); s != SPILLWAY_OK) return s;
  std::lock_guard<std::mutex> lk(mu_);
  if (offload::Pager* pg = pager_if_any(device)) {
    *out = pg;
    return SPILLWAY_OK;
  }
  std::string err;
  if (!cfg_.nvme_path.empty() && nvme_ == nullptr) {
    offload::NvmeOptions o;
    o.dir = cfg_.nvme_path;
    o.limit = cfg_.nvme_limit;
    o.verify = cfg_.nvme_verify;
    nvme_ = offload::NvmeStore::Open(o, &err);
    if (nvme_ == nullptr) return Fail(SPILLWAY_ERR_CONFIG, "spillway: SPILLWAY_NVME_PATH: " + err);
  }
  offload::PagerOptions po;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  po.host_limit = ResolveHostLimit(cfg_, pages > 0 && page > 0
                                             ? static_cast<std::uint64_t>(pages) *
                                                   static_cast<std::uint64_t>(page)
                                             : std::uint64_t{16} << 30);
  po.nvme = nvme_.get();
  po.index = index_.load(std::memory_order_acquire);
  po.safety = cfg_.offload_safety == Config::Safety::kStrict ||
                      (cfg_.offload_safety == Config::Safety::kAuto && po.index == nullptr)
                  ? offload::Safety::kStrict
                  : offload::Safety::kTracked;
  if (cfg_.offload_safety == Config::Safety::kTracked && po.index == nullptr)
    return Fail(SPILLWAY_ERR_CONFIG, "spillway: SPILLWAY_OFFLOAD_SAFETY=tracked needs the tracker "
                                     "(SPILLWAY_TRACK=1); use strict or auto");
  auto pg = std::make_unique<offload::Pager>(*h, po);
  if (spillway_status s = pg->init(&err); s != SPILLWAY_OK) return Fail(s, err);
  if (cfg_.offload_return_uses > 0) pg->set_return_uses(cfg_.offload_return_uses);
  if (cfg_.offload_lookahead >= 0) pg->set_lookahead(cfg_.offload_lookahead);
  pg->set_drain_last(cfg_.offload_drain_last);
  // Tracked safety must see every launch, also those of code first run after the launch-hook
  // check (tracker.h).
  if (po.safety == offload::Safety::kTracked) tracker::KeepCuptiLaunchCallbacks();
  *out = pg.get();
  pagers_owned_[static_cast<std::size_t>(device)] = std::move(pg);
  pagers_[static_cast<std::size_t>(device)].store(*out, std::memory_order_release);
  return SPILLWAY_OK;
}

Arena* Allocator::find_arena(std::uintptr_t p, int* device) const {
  const int n = std::min(backend_->device_count(), kMaxDevices);
  for (int d = 0; d < n; ++d) {
    DeviceHeap* h = heaps_[static_cast<std::size_t>(d)].load(std::memory_order_acquire);
    if (h == nullptr) continue;
    if (Arena* a = h->find(p)) {
      *device = d;
      return a;
    }
  }
  return nullptr;
}

spillway_status Allocator::free(void* p, FreeMode mode, prim::Stream stream, trace::Kind kind) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  int device = -1;
  Arena* a = find_arena(addr, &device);
  spillway_status s;
  if (a == nullptr) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "spillway: %p was not allocated by Spillway", p);
    s = Fail(SPILLWAY_ERR_NOT_OWNED, buf);
  } else {
    // Out of the index before the block can be reused (by another thread, at once); an address
    // that is not a live block's start has no entry, and free_block fails for it.
    if (tracker::BlockIndex* ix = index_.load(std::memory_order_acquire)) [[unlikely]] {
      if (auto sum = ix->remove(addr); sum && trace_)
        trace_->access(device, addr, sum->count, sum->first_t_ns, sum->last_t_ns,
                       sum->nstreams + (sum->more_streams ? 1u : 0u));
    }
    s = SPILLWAY_OK;
    if (offload::Pager* pg = pager_if_any(device)) [[unlikely]] {
      // Under the pager's lock whenever a pager exists: an eviction on another thread must not
      // pick the block between the pager's part and the arena's. Timed only while blocks are
      // off the device (the clock read stays off the ordinary path).
      const bool timed = pg->active();
      const std::uint64_t t0 = timed ? MonotonicNs() : 0;
      s = pg->free_block(a, addr, mode, stream);
      if (timed) pg->counters().free_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
    } else {
      s = a->free_block(addr, mode, stream);
    }
  }
  if (trace_ && s != SPILLWAY_ERR_NOT_OWNED)
    trace_->record(kind, device, stream, addr, 0, static_cast<std::uint16_t>(s));
  return s;
}

void Allocator::enable_access_tracking() {
  if (index_.load(std::memory_order_acquire) != nullptr) return;
  index_owner_ = std::make_unique<tracker::BlockIndex>();
  install_touch_sink(*index_owner_);
  index_.store(index_owner_.get(), std::memory_order_release);
}

// Touches (a block's first access in each epoch of 32 tracked operations) go to the event log.
void Allocator::install_touch_sink(tracker::BlockIndex& index) {
  if (!trace_) return;
  index.set_touch_sink(
      [](void* self, const tracker::Block& b, const tracker::Access& a) {
        static_cast<Allocator*>(self)->trace_->touch(b.device(), b.addr(), a.t_ns, a.seq,
                                                     a.stream);
      },
      this);
}

void Allocator::start_tracking() {
  if (cfg_.use_sim) {
    std::fputs("spillway: SPILLWAY_TRACK=1 needs the CUDA backend: running without tracking\n",
               stderr);
    return;
  }
  auto index = std::make_unique<tracker::BlockIndex>();
  install_touch_sink(*index);  // before CUPTI can call back
  // NVTX ranges and marks reach the trace through the same path as spillway_mark.
  auto nvtx_mark = [](void* self, const char* label, std::size_t n, std::uint32_t phase) {
    auto* a = static_cast<Allocator*>(self);
    if (a->trace_) a->trace_->mark(std::string(label, n), phase);
  };
  tracker::SetResidencyHook(
      [](void* self, const std::uint64_t* addrs, std::size_t n, std::uint64_t stream, bool blind,
         bool streaming) {
        return static_cast<Allocator*>(self)->on_away(
            addrs, n, reinterpret_cast<prim::Stream>(stream), blind, streaming);
      },
      this);
  // Prints why once and returns false when CUPTI cannot be had: then no index at all.
  if (!tracker::StartTracking(index.get(), nvtx_mark, this, cfg_.track_launches_cupti)) return;
  if (cfg_.kernels) {
    std::string why;
    auto sink = [](void* self, int device, std::uint64_t start, std::uint64_t end,
                   std::uint32_t stream, std::uint32_t corr, const char* name) {
      if (auto* t = static_cast<Allocator*>(self)->trace_.get())
        t->kernel(device, start, end, stream, corr, name);
    };
    if (!trace_)
      std::fputs("spillway: SPILLWAY_KERNELS=1 without an event log (SPILLWAY_TRACE or "
                 "SPILLWAY_REPORT): kernel times are not recorded\n", stderr);
    else if (!tracker::StartKernelActivity(sink, this, &why))
      std::fprintf(stderr, "spillway: kernel times unavailable (%s)\n", why.c_str());
  }
  index_owner_ = std::move(index);
  index_.store(index_owner_.get(), std::memory_order_release);
}

void Allocator::write_access_summaries() {
  tracker::BlockIndex* ix = index_.load(std::memory_order_acquire);
  if (!ix || !trace_ || summaries_written_.exchange(true)) return;
  for (const tracker::BlockSummary& b : ix->snapshot())
    trace_->access(b.device, b.addr, b.count, b.first_t_ns, b.last_t_ns,
                   b.nstreams + (b.more_streams ? 1u : 0u));
}

bool Allocator::owns_range(const void* p) const {
  int d;
  return find_arena(reinterpret_cast<std::uintptr_t>(p), &d) != nullptr;
}

bool Allocator::is_live(const void* p) const {
  int d;
  Arena* a = find_arena(reinterpret_cast<std::uintptr_t>(p), &d);
  return a != nullptr && a->is_live(reinterpret_cast<std::uintptr_t>(p));
}

spillway_status Allocator::mark(const char* label) {
  if (label == nullptr || *label == '\0')
    return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: a mark needs a non-empty label");
  const std::size_t n = std::strlen(label);
  if (n > 4096)
    return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: mark label longer than 4096 bytes");
  if (trace_) trace_->mark(std::string(label, n), 0);
  return SPILLWAY_OK;
}

void Allocator::trace_passthrough(trace::Kind kind, int device, prim::Stream stream,
                                  const void* addr, std::size_t size) {
  if (!trace_) return;
  if (kind == trace::Kind{0}) {
    trace_->flush();
    return;
  }
  trace_->record(kind, device, stream, reinterpret_cast<std::uintptr_t>(addr), size,
                 trace::kStatusPassedThrough);
}

spillway_status Allocator::stats(int device, spillway_stats* out) {
  if (out == nullptr) return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: NULL stats pointer");
  DeviceHeap* h = nullptr;
  spillway_status s = heap(device, &h);
  if (s == SPILLWAY_OK) h->snapshot(out);
  return s;
}

spillway_status Allocator::reset_peak_stats(int device) {
  DeviceHeap* h = nullptr;
  spillway_status s = heap(device, &h);
  if (s == SPILLWAY_OK) h->stats().reset_peaks();
  return s;
}

spillway_status Allocator::set_budget(int device, std::uint64_t bytes) {
  DeviceHeap* h = nullptr;
  spillway_status s = heap(device, &h);
  if (s == SPILLWAY_OK && bytes != 0 && bytes < h->granularity())
    return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: budget below one physical chunk");
  return s == SPILLWAY_OK ? h->set_budget(bytes) : s;
}

spillway_status Allocator::trim(int device, std::uint64_t keep_bytes) {
  DeviceHeap* h = nullptr;
  spillway_status s = heap(device, &h);
  return s == SPILLWAY_OK ? h->trim(keep_bytes) : s;
}

std::string Allocator::summary() {
  std::string r = "spillway summary (backend " + std::string(backend_->name()) + ")\n";
  const int n = std::min(backend_->device_count(), kMaxDevices);
  for (int d = 0; d < n; ++d) {
    DeviceHeap* h = heaps_[static_cast<std::size_t>(d)].load(std::memory_order_acquire);
    if (h == nullptr) continue;
    spillway_stats s;
    h->snapshot(&s);
    const double mib = 1 << 20;
    char buf[1024];
    std::snprintf(
        buf, sizeof buf,
        "  device %d\n"
        "    allocations       %" PRIu64 " (frees %" PRIu64 ", live %" PRIu64 ", out of memory %" PRIu64 ")\n"
        "    peak allocated    %.1f MiB\n"
        "    peak reserved     %.1f MiB\n"
        "    fragmentation     %.3f (peak reserved / peak allocated)\n"
        "    now               allocated %.1f MiB, reserved %.1f MiB, rounding waste %.1f MiB\n"
        "    driver calls      %" PRIu64 " chunk creates, %" PRIu64 " releases, %" PRIu64 " maps, %" PRIu64 " unmaps\n"
        "    budget            %s\n",
        d, s.alloc_count, s.free_count, s.live_blocks, s.oom_count,
        static_cast<double>(s.peak_allocated_bytes) / mib,
        static_cast<double>(s.peak_reserved_bytes) / mib,
        s.peak_allocated_bytes ? static_cast<double>(s.peak_reserved_bytes) /
                                     static_cast<double>(s.peak_allocated_bytes)
                               : 0.0,
        static_cast<double>(s.allocated_bytes) / mib, static_cast<double>(s.reserved_bytes) / mib,
        static_cast<double>(s.internal_waste_bytes) / mib, s.chunk_create_count,
        s.chunk_release_count, s.map_count, s.unmap_count,
        s.budget_bytes ? (std::to_string(s.budget_bytes >> 20) + " MiB").c_str() : "none");
    r += buf;
    const DeviceHeap::Held held = h->held();
    std::snprintf(buf, sizeof buf,
                  "    held              mapped %.1f MiB (%.1f MiB as spans; cached blocks %.1f "
                  "MiB), idle %.1f MiB (%.1f MiB in spans, %.1f MiB of it in spans partly in use), "
                  "loose chunks %.1f MiB, loose spans %.1f MiB; %" PRIu64
                  " waits for the GPU to reclaim memory\n",
                  static_cast<double>(held.arenas.mapped_bytes) / mib,
                  static_cast<double>(held.arenas.span_bytes) / mib,
                  static_cast<double>(held.arenas.quick_bytes) / mib,
                  static_cast<double>(held.arenas.idle_bytes) / mib,
                  static_cast<double>(held.arenas.span_idle_bytes) / mib,
                  static_cast<double>(held.arenas.span_stuck_bytes) / mib,
                  static_cast<double>(held.loose_chunk_bytes) / mib,
                  static_cast<double>(held.loose_span_bytes) / mib, h->stats().drains());
    r += buf;
    if (offload::Pager* pg = pager_if_any(d)) {
      const offload::PagerCounters& k = pg->counters();
      auto ld = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
      std::snprintf(buf, sizeof buf,
                    "    offload           host %.1f MiB, nvme %.1f MiB now; %" PRIu64
                    " evictions (%" PRIu64 " with no CPU wait, %" PRIu64
                    " of them ordered after queued work, %" PRIu64
                    " taking the rest of a span), %" PRIu64 " fetches (%" PRIu64
                    " prefetches, %" PRIu64
                    " stalls, %.1f ms stalled), %" PRIu64 " cancelled, %" PRIu64 " errors\n"
                    "    traffic           to host %.1f MiB, from host %.1f MiB, to nvme %.1f "
                    "MiB (%" PRIu64 " blocks spilled from a full host tier), from nvme %.1f MiB; "
                    "%" PRIu64 " used in place by streaming kernels (%" PRIu64 " mapped for it, %" PRIu64
                    " brought back instead); safety %s\n",
                    static_cast<double>(pg->host_bytes()) / mib,
                    static_cast<double>(pg->nvme_bytes()) / mib, ld(k.evictions),
                    ld(k.fast_evictions), ld(k.ordered_evictions), ld(k.widened), ld(k.fetches),
                    ld(k.prefetches), ld(k.stalls), static_cast<double>(ld(k.stall_ns)) / 1e6,
                    ld(k.cancelled), ld(k.errors), static_cast<double>(ld(k.bytes_to_host)) / mib,
                    static_cast<double>(ld(k.bytes_from_host)) / mib,
                    static_cast<double>(ld(k.bytes_to_nvme)) / mib, ld(k.spills),
                    static_cast<double>(ld(k.bytes_from_nvme)) / mib, ld(k.in_place),
                    ld(k.in_place_maps), ld(k.in_place_returns),
                    pg->safety() == offload::Safety::kTracked ? "tracked" : "strict");
      r += buf;
    }
  }
  if (index_.load(std::memory_order_acquire)) r += tracker::TrackingSummary();
  return r;
}

}  // namespace spillway
