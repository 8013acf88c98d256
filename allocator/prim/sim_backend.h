// sim_backend.h — the CPU simulator of the backend: device memory is a memfd, a reserved VA
// range is a PROT_NONE mapping, map is mmap(MAP_FIXED|MAP_SHARED), streams are worker threads
// with FIFO queues and events are sequence numbers. Touching an unmapped range faults, as on a
// GPU. Every allocator test in CI runs on it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "allocator/prim/backend.h"

namespace spillway::prim {

struct SimOptions {
  int devices = 1;
  std::size_t device_memory = std::size_t{16} << 30;  // per simulated device
  std::size_t granularity = std::size_t{2} << 20;
};

class SimStream;

class SimBackend final : public Backend {
 public:
  explicit SimBackend(SimOptions opt = {});
  ~SimBackend() override;
  SimBackend(const SimBackend&) = delete;
  SimBackend& operator=(const SimBackend&) = delete;

  const char* name() const override { return "sim"; }
  int device_count() override { return opt_.devices; }
  std::size_t granularity(Location) override { return opt_.granularity; }
  Status mem_info(int device, MemInfo* out) override;
  Status reserve(int device, std::size_t size, std::size_t align, std::uintptr_t* va) override;
  Status release_va(std::uintptr_t va, std::size_t size) override;
  Status create(Location loc, std::size_t size, PhysHandle* out) override;
  Status release(PhysHandle h) override;
  Status map(std::uintptr_t va, std::size_t size, PhysHandle h) override;
  Status set_access(int device, std::uintptr_t va, std::size_t size) override;
  Status unmap(std::uintptr_t va, std::size_t size) override;
  Status set_access_host(int device, int, std::uintptr_t va, std::size_t size) override {
    return set_access(device, va, size);
  }
  std::string pci_bus_id(int) override { return {}; }
  Status stream_create(int, Stream* out) override {
    *out = create_stream();
    return Status::Ok();
  }
  Status stream_destroy(int, Stream s) override {
    destroy_stream(s);
    return Status::Ok();
  }
  Status copy_async(int device, void* dst, const void* src, std::size_t n, Stream s) override;
  Status event_create(int device, Event* out) override;
  Status event_destroy(Event e) override;
  Status event_record(int device, Event e, Stream s) override;
  Status event_query(Event e, bool* done) override;
  Status event_synchronize(Event e) override;
  Status stream_wait_event(int device, Stream s, Event e) override;
  bool stream_is_capturing(int, Stream) override { return false; }

  // Simulator-only: streams and "kernels" (host functions run in stream order).
  Stream create_stream();
  void destroy_stream(Stream s);
  void enqueue(Stream s, std::function<void()> fn);
  void synchronize(Stream s);
  // Test hook: make the next `n` create() calls fail as if the device were out of memory.
  void fail_next_creates(int n);
  // Test hook: make the next `n` set_access() calls fail.
  void fail_next_accesses(int n);

 private:
  struct Chunk {
    std::size_t offset;
    std::size_t size;
    Location loc;
  };
  SimStream* resolve(Stream s);

  SimOptions opt_;
  int fd_ = -1;
  std::mutex mu_;
  std::size_t file_end_ = 0;
  std::unordered_map<std::size_t, std::vector<std::size_t>> free_offsets_;  // size -> offsets
  std::unordered_map<PhysHandle, Chunk> chunks_;
  // Mapped ranges (start -> size): as with cuMemMap / cuMemUnmap, a range is mapped only where
  // nothing is, and unmapped only in whole mappings (a call may cover several).
  std::map<std::uintptr_t, std::size_t> mapped_;
  std::vector<std::size_t> device_used_;
  PhysHandle next_handle_ = 1;
  int fail_creates_ = 0;
  int fail_accesses_ = 0;
  std::unique_ptr<SimStream> default_stream_;
  std::vector<std::unique_ptr<SimStream>> streams_;
};

}  // namespace spillway::prim
