// allocator.h — the process-wide allocator: picks the backend, owns one DeviceHeap per device,
// routes pointers to their arena, records the trace, and prints the summary. The global
// instance is configured from SPILLWAY_* on first use and never destroyed (the CUDA context may
// already be gone at exit); tests build their own instances over a SimBackend.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "allocator/config.h"
#include "allocator/device_heap.h"
#include "allocator/prim/backend.h"
#include "profiler/trace_format.h"
#include "spillway/spillway.h"

namespace spillway {

namespace trace {
class TraceWriter;
}
namespace tracker {
class BlockIndex;
}
namespace offload {
class Pager;
class NvmeStore;
}  // namespace offload

class Allocator {
 public:
  static constexpr int kMaxDevices = 64;

  Allocator(std::unique_ptr<prim::Backend> backend, Config cfg);
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // The process-wide instance; nullptr (and *status, LastError()) if it cannot start.
  static Allocator* Global(spillway_status* status);
  // Why Global() failed ("" if it did not).
  static const std::string& GlobalError();

  // Stream-ordered (cudaMallocAsync) or synchronous (cudaMalloc) allocation.
  spillway_status allocate(void** out, std::size_t n, int device, prim::Stream stream, bool sync,
                           trace::Kind kind);
  // NOT_OWNED for a pointer Spillway did not allocate (the caller passes it on to CUDA).
  spillway_status free(void* p, FreeMode mode, prim::Stream stream, trace::Kind kind);
  bool owns_range(const void* p) const;  // inside any arena (live or not)
  bool is_live(const void* p) const;

  spillway_status stats(int device, spillway_stats* out);
  spillway_status reset_peak_stats(int device);
  spillway_status set_budget(int device, std::uint64_t bytes);
  spillway_status trim(int device, std::uint64_t keep_bytes);
  int device_count() { return backend_->device_count(); }
  std::string summary();
  // Starts recording the event log to `path` (SPILLWAY_TRACE does this for the global
  // instance; `spillway replay --trace` for a replay).
  spillway_status open_trace(const std::string& path);
  // A phase mark in the trace (no-op without SPILLWAY_TRACE, but the label is still checked).
  spillway_status mark(const char* label);
  void trace_passthrough(trace::Kind kind, int device, prim::Stream stream, const void* addr,
                         std::size_t size);

  // Access tracking (SPILLWAY_TRACK=1 starts it, with CUPTI, for the global instance on the
  // CUDA backend). enable_access_tracking() makes the index of live blocks that allocate/free
  // feed from then on; call it before the first allocation (not concurrently with allocate or
  // free). With a trace, every free of a block writes its access summary (kAccess).
  void enable_access_tracking();
  tracker::BlockIndex* block_index() { return index_.load(std::memory_order_acquire); }
  // kAccess records for the blocks still live (once; at exit and in the destructor).
  void write_access_summaries();

  // The pager of a device (offload/pager.h), created on first use with the host tier and, when
  // SPILLWAY_NVME_PATH is set, the NVMe tier. The device of a pointer Spillway owns, or -1.
  spillway_status pager(int device, offload::Pager** out);
  offload::Pager* pager_if_any(int device) const {
    return device >= 0 && device < kMaxDevices
               ? pagers_[static_cast<std::size_t>(device)].load(std::memory_order_acquire)
               : nullptr;
  }
  int device_of(const void* p) const;
  // The tracker's residency hook (tracker::SetResidencyHook): the blocks an operation about to be
  // enqueued on `stream` names that are not on the device come back first (a stall); `blind`: a
  // launch the tracker could not decode, after which every pager is strict. `streaming`: a
  // streaming kernel's launch, which reads the blocks that only such kernels use where they lie
  // (Pager::access_in_place). False when a block could not be made readable at its address
  // (still on NVMe: the operation would fault).
  bool on_away(const std::uint64_t* addrs, std::size_t n, prim::Stream stream, bool blind,
               bool streaming = false);
  offload::NvmeStore* nvme_store() { return nvme_.get(); }  // tests
  std::string offload_summary();

  prim::Backend& backend() { return *backend_; }
  const Config& config() const { return cfg_; }
  // The heap of a device, created on first use.
  spillway_status heap(int device, DeviceHeap** out);

 private:
  Arena* find_arena(std::uintptr_t p, int* device) const;

  const std::uint64_t id_;
  std::unique_ptr<prim::Backend> backend_;
  Config cfg_;
  std::unique_ptr<trace::TraceWriter> trace_;
  void start_tracking();
  void install_touch_sink(tracker::BlockIndex& index);  // CUPTI and the index (SPILLWAY_TRACK=1); once, from Global()
  // The index of live blocks: null unless tracking (one branch on the hot path when off);
  // published once, never withdrawn while the allocator lives.
  std::atomic<tracker::BlockIndex*> index_{nullptr};
  std::unique_ptr<tracker::BlockIndex> index_owner_;
  std::atomic<bool> summaries_written_{false};
  std::mutex mu_;
  std::array<std::atomic<DeviceHeap*>, kMaxDevices> heaps_{};
  std::array<std::unique_ptr<DeviceHeap>, kMaxDevices> owned_;
  // Declared after the heaps: destroyed first (a pager refers to its heap's arenas).
  std::unique_ptr<offload::NvmeStore> nvme_;
  std::array<std::atomic<offload::Pager*>, kMaxDevices> pagers_{};
  std::array<std::unique_ptr<offload::Pager>, kMaxDevices> pagers_owned_;
};

}  // namespace spillway
