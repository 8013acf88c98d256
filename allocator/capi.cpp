// capi.cpp — the C API of include/spillway/spillway.h over the process-wide Allocator.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "offload/pager.h"
#include "profiler/tracker/tracker.h"
#include "spillway/spillway.h"

using spillway::Allocator;
using spillway::FreeMode;
namespace trace = spillway::trace;

namespace {
Allocator* Get(spillway_status* s) {
  *s = SPILLWAY_OK;
  return Allocator::Global(s);
}
}  // namespace

extern "C" {

void* spillway_malloc(ssize_t size, int device, void* stream) {
  if (size == 0) return nullptr;
  if (size < 0) {
    spillway::Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: negative size");
    return nullptr;
  }
  spillway_status s;
  Allocator* a = Get(&s);
  void* p = nullptr;
  if (a)
    a->allocate(&p, static_cast<std::size_t>(size), device, stream, false, trace::Kind::kApiMalloc);
  return p;
}

void spillway_free(void* ptr, ssize_t, int, void* stream) {
  if (ptr == nullptr) return;
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return;
  s = a->free(ptr, FreeMode::kStreamOrdered, stream, trace::Kind::kApiFree);
  if (s != SPILLWAY_OK) {
    // The pluggable-allocator signature cannot return an error: say it, never abort.
    std::string msg = std::string(spillway::LastError()) + "\n";
    (void)!write(2, msg.data(), msg.size());
  }
}

spillway_status spillway_malloc_async(void** out, size_t size, int device, void* stream) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->allocate(out, size, device, stream, false, trace::Kind::kApiMalloc) : s;
}

spillway_status spillway_free_async(void* ptr, void* stream) {
  if (ptr == nullptr) return SPILLWAY_OK;
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->free(ptr, FreeMode::kStreamOrdered, stream, trace::Kind::kApiFree) : s;
}

spillway_status spillway_malloc_sync(void** out, size_t size, int device) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->allocate(out, size, device, nullptr, true, trace::Kind::kApiMallocSync) : s;
}

spillway_status spillway_free_sync(void* ptr) {
  if (ptr == nullptr) return SPILLWAY_OK;
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->free(ptr, FreeMode::kSynchronous, nullptr, trace::Kind::kApiFreeSync) : s;
}

int spillway_owns(const void* ptr) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a != nullptr && a->is_live(ptr) ? 1 : 0;
}

spillway_status spillway_get_stats(int device, spillway_stats* out) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->stats(device, out) : s;
}

spillway_status spillway_reset_peak_stats(int device) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->reset_peak_stats(device) : s;
}

spillway_status spillway_set_budget(int device, uint64_t bytes) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->set_budget(device, bytes) : s;
}

spillway_status spillway_trim(int device, uint64_t keep_bytes) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->trim(device, keep_bytes) : s;
}

int spillway_device_count(void) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->device_count() : 0;
}

spillway_status spillway_print_summary(int fd) {
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return s;
  std::string text = a->summary();
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w <= 0) return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: cannot write summary");
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  return SPILLWAY_OK;
}

spillway_status spillway_mark(const char* label) {
  spillway_status s;
  Allocator* a = Get(&s);
  return a ? a->mark(label) : s;
}

spillway_status spillway_set_tracking(int on) {
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return s;
  if (on != 0 && on != 1)
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE,
                          "spillway: spillway_set_tracking(on): on must "
                          "be 0 or 1, got " +
                              std::to_string(on));
  if (a->block_index() == nullptr || !spillway::tracker::TrackingActive())
    return spillway::Fail(SPILLWAY_ERR_CONFIG,
                          "spillway: tracking is not running (set SPILLWAY_TRACK=1; CUPTI must be "
                          "available)");
  if (!spillway::tracker::SetPaused(on == 0))
    return spillway::Fail(SPILLWAY_ERR_BUSY,
                          "spillway: tracking cannot pause while offload runs "
                          "in tracked safety (it must see every launch)");
  return SPILLWAY_OK;
}

namespace {
// The device and pager of a pointer Spillway owns.
spillway_status PagerOf(const void* ptr, spillway::offload::Pager** out) {
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return s;
  if (ptr == nullptr) return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: NULL pointer");
  const int device = a->device_of(ptr);
  if (device < 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "spillway: %p was not allocated by Spillway", ptr);
    return spillway::Fail(SPILLWAY_ERR_NOT_OWNED, buf);
  }
  return a->pager(device, out);
}
}  // namespace

spillway_status spillway_offload(void* ptr, spillway_tier tier) {
  spillway::offload::Pager* pg = nullptr;
  spillway_status s = PagerOf(ptr, &pg);
  if (s != SPILLWAY_OK) return s;
  if (tier != SPILLWAY_TIER_DEVICE && tier != SPILLWAY_TIER_HOST && tier != SPILLWAY_TIER_NVME)
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE,
                          "spillway: unknown tier " + std::to_string(static_cast<int>(tier)));
  return pg->offload(reinterpret_cast<std::uintptr_t>(ptr),
                     static_cast<spillway::trace::Tier>(tier), false);
}

spillway_status spillway_prefetch(void* ptr, void* stream) {
  spillway::offload::Pager* pg = nullptr;
  spillway_status s = PagerOf(ptr, &pg);
  return s != SPILLWAY_OK ? s : pg->prefetch(reinterpret_cast<std::uintptr_t>(ptr), stream);
}

spillway_status spillway_advise(void* ptr, spillway_hint hint) {
  spillway::offload::Pager* pg = nullptr;
  spillway_status s = PagerOf(ptr, &pg);
  return s != SPILLWAY_OK ? s
                          : pg->advise(reinterpret_cast<std::uintptr_t>(ptr),
                                       static_cast<spillway::offload::Advice>(hint));
}

spillway_status spillway_residency(const void* ptr, spillway_tier* out) {
  if (out == nullptr)
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: NULL output pointer");
  spillway::offload::Pager* pg = nullptr;
  spillway_status s = PagerOf(ptr, &pg);
  if (s != SPILLWAY_OK) return s;
  switch (pg->residency(reinterpret_cast<std::uintptr_t>(ptr))) {
    case spillway::offload::Residency::kHost:
      *out = SPILLWAY_TIER_HOST;
      break;
    case spillway::offload::Residency::kNvme:
      *out = SPILLWAY_TIER_NVME;
      break;
    default:
      *out = SPILLWAY_TIER_DEVICE;
  }
  return SPILLWAY_OK;
}

spillway_status spillway_offload_synchronize(int device) {
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return s;
  if (device < 0 || device >= a->device_count())
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE,
                          "spillway: no device " + std::to_string(device));
  spillway::offload::Pager* pg = a->pager_if_any(device);
  return pg ? pg->synchronize() : SPILLWAY_OK;
}

spillway_status spillway_get_offload_stats(int device, spillway_offload_stats* out) {
  spillway_status s;
  Allocator* a = Get(&s);
  if (a == nullptr) return s;
  if (out == nullptr)
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: NULL output pointer");
  if (device < 0 || device >= a->device_count())
    return spillway::Fail(SPILLWAY_ERR_INVALID_VALUE,
                          "spillway: no device " + std::to_string(device));
  *out = {};
  spillway::offload::Pager* pg = a->pager_if_any(device);
  if (pg == nullptr) return SPILLWAY_OK;
  pg->poll();
  const auto& k = pg->counters();
  auto ld = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  out->host_bytes = pg->host_bytes();
  out->nvme_bytes = pg->nvme_bytes();
  out->host_pool_bytes = pg->host_pool().created_bytes();
  out->evictions = ld(k.evictions);
  out->fetches = ld(k.fetches);
  out->prefetches = ld(k.prefetches);
  out->stalls = ld(k.stalls);
  out->stall_ns = ld(k.stall_ns);
  out->cancelled = ld(k.cancelled);
  out->errors = ld(k.errors);
  out->bytes_to_host = ld(k.bytes_to_host);
  out->bytes_from_host = ld(k.bytes_from_host);
  out->bytes_to_nvme = ld(k.bytes_to_nvme);
  out->bytes_from_nvme = ld(k.bytes_from_nvme);
  out->fast_evictions = ld(k.fast_evictions);
  out->remap_ns = ld(k.remap_ns);
  out->in_place = ld(k.in_place);
  out->in_place_returns = ld(k.in_place_returns);
  out->alloc_ns = ld(k.alloc_ns);
  out->make_room_ns = ld(k.make_room_ns);
  out->free_ns = ld(k.free_ns);
  out->launch_ns = ld(k.launch_ns);
  using spillway::prim::Call;
  const spillway::prim::Backend& b = a->backend();
  out->cpu_waits = ld(b.times(Call::kWait).calls);
  out->cpu_wait_ns = ld(b.times(Call::kWait).ns);
  out->create_ns = ld(b.times(Call::kCreate).ns);
  out->release_ns = ld(b.times(Call::kRelease).ns);
  out->map_ns = ld(b.times(Call::kMap).ns);
  out->access_ns = ld(b.times(Call::kAccess).ns);
  out->unmap_ns = ld(b.times(Call::kUnmap).ns);
  out->access_calls = ld(b.times(Call::kAccess).calls);
  out->pager_maps = ld(k.pager_maps);
  return SPILLWAY_OK;
}

const char* spillway_last_error(void) {
  return spillway::LastError();
}

const char* spillway_status_string(spillway_status status) {
  switch (status) {
    case SPILLWAY_OK:
      return "SPILLWAY_OK";
    case SPILLWAY_ERR_INVALID_VALUE:
      return "SPILLWAY_ERR_INVALID_VALUE";
    case SPILLWAY_ERR_OUT_OF_MEMORY:
      return "SPILLWAY_ERR_OUT_OF_MEMORY";
    case SPILLWAY_ERR_NOT_OWNED:
      return "SPILLWAY_ERR_NOT_OWNED";
    case SPILLWAY_ERR_DOUBLE_FREE:
      return "SPILLWAY_ERR_DOUBLE_FREE";
    case SPILLWAY_ERR_BACKEND:
      return "SPILLWAY_ERR_BACKEND";
    case SPILLWAY_ERR_CONFIG:
      return "SPILLWAY_ERR_CONFIG";
    case SPILLWAY_ERR_NO_DEVICE:
      return "SPILLWAY_ERR_NO_DEVICE";
    case SPILLWAY_ERR_IO:
      return "SPILLWAY_ERR_IO";
    case SPILLWAY_ERR_BUSY:
      return "SPILLWAY_ERR_BUSY";
  }
  return "SPILLWAY_ERR_UNKNOWN";
}

}  // extern "C"
