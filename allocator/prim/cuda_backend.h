// cuda_backend.h — the backend on the real GPU, through the CUDA driver's virtual memory
// management API (cuMemAddressReserve/cuMemCreate/cuMemMap/cuMemSetAccess) and events.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "allocator/prim/backend.h"
#include "allocator/prim/cuda_driver.h"

namespace spillway::prim {

class CudaBackend final : public Backend {
 public:
  // Returns nullptr and sets *error when the driver or a VMM-capable device is missing.
  static std::unique_ptr<CudaBackend> Create(std::string* error);

  const char* name() const override { return "cuda"; }
  int device_count() override { return static_cast<int>(ctx_.size()); }
  std::size_t granularity(Location loc) override;
  Status mem_info(int device, MemInfo* out) override;
  Status reserve(int device, std::size_t size, std::size_t align, std::uintptr_t* va) override;
  Status release_va(std::uintptr_t va, std::size_t size) override;
  Status create(Location loc, std::size_t size, PhysHandle* out) override;
  Status release(PhysHandle h) override;
  Status map(std::uintptr_t va, std::size_t size, PhysHandle h) override;
  Status set_access(int device, std::uintptr_t va, std::size_t size) override;
  Status unmap(std::uintptr_t va, std::size_t size) override;
  Status set_access_host(int device, int numa, std::uintptr_t va, std::size_t size) override;
  std::string pci_bus_id(int device) override;
  Status stream_create(int device, Stream* out) override;
  Status stream_destroy(int device, Stream s) override;
  Status copy_async(int device, void* dst, const void* src, std::size_t n, Stream s) override;
  Status copy_to_host_async(int device, void* dst, const void* src, std::size_t n,
                            Stream s) override;
  void set_kernel_copies_to_host(bool on) override {
    kernel_copies_.store(on, std::memory_order_relaxed);
  }
  // Copies to the host written by the kernel so far (tests).
  std::uint64_t kernel_copy_count() const { return kernel_copy_count_.load(); }
  Status event_create(int device, Event* out) override;
  Status event_destroy(Event e) override;
  Status event_record(int device, Event e, Stream s) override;
  Status event_query(Event e, bool* done) override;
  Status event_synchronize(Event e) override;
  Status stream_wait_event(int device, Stream s, Event e) override;
  bool stream_is_capturing(int device, Stream s) override;

  const CudaDriver* driver() const { return d_; }

 private:
  explicit CudaBackend(const CudaDriver* d) : d_(d) {}
  Status check(CUresult r, const char* what) const;
  // Makes `device`'s primary context current for the scope (no-op if it already is).
  class CtxScope;

  // The copy kernel of `device`, loaded from PTX on first use (nullptr and *error if it fails).
  CUfunction copy_kernel(int device, std::string* error);

  const CudaDriver* d_;
  std::vector<CUcontext> ctx_;  // primary context per device
  std::vector<CUdevice> dev_;
  std::atomic<bool> kernel_copies_{false};
  std::atomic<std::uint64_t> kernel_copy_count_{0};
  std::mutex kernel_mu_;
  std::vector<CUfunction> copy_fn_;        // per device, once loaded
  std::vector<std::uint8_t> copy_failed_;  // per device: loading failed (said once)
};

}  // namespace spillway::prim
