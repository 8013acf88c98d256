// kernel_activity.cpp — CUPTI kernel activity records to a sink (see kernel_activity.h).
#include "profiler/tracker/kernel_activity.h"

#include <cupti.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "allocator/prim/cuda_driver.h"
#include "profiler/clock.h"
#include "profiler/tracker/tracker.h"

namespace spillway::tracker {

namespace {

using EnableFn = CUptiResult (*)(CUpti_ActivityKind);
using RegisterFn = CUptiResult (*)(CUpti_BuffersCallbackRequestFunc,
                                   CUpti_BuffersCallbackCompleteFunc);
using NextRecordFn = CUptiResult (*)(uint8_t*, size_t, CUpti_Activity**);
using FlushAllFn = CUptiResult (*)(uint32_t);
using TimestampFn = CUptiResult (*)(uint64_t*);
using DroppedFn = CUptiResult (*)(CUcontext, uint32_t, size_t*);

struct Activity {
  KernelSink sink = nullptr;
  void* ctx = nullptr;
  NextRecordFn next = nullptr;
  FlushAllFn flush = nullptr;
  DroppedFn dropped = nullptr;
  std::int64_t offset_ns = 0;  // CLOCK_MONOTONIC - CUPTI timestamp
  std::atomic<std::uint64_t> delivered{0}, lost{0};
};
Activity* g_activity = nullptr;  // set once; never freed (CUPTI's thread may call back late)
std::mutex g_mu;

constexpr std::size_t kBufferBytes = std::size_t{4} << 20;
constexpr std::size_t kAlign = 8;

// The name a copy gets among the kernels (scripts/gpu_overlap.py reads these).
const char* CopyName(std::uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
      return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
      return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD:
      return "memcpy DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP:
      return "memcpy PtoP";
    default:
      return "memcpy other";
  }
}

void CUPTIAPI BufferRequested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kAlign, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI BufferCompleted(CUcontext ctx, uint32_t stream, uint8_t* buffer, size_t /*size*/,
                              size_t valid) {
  Activity* a = g_activity;
  if (a != nullptr && buffer != nullptr) {
    CUpti_Activity* rec = nullptr;
    const auto mono = [a](std::uint64_t t) {
      const std::int64_t v = static_cast<std::int64_t>(t) + a->offset_ns;
      return v > 0 ? static_cast<std::uint64_t>(v) : 0;
    };
    while (a->next(buffer, valid, &rec) == CUPTI_SUCCESS) {
      if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
        const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
        a->sink(a->ctx, static_cast<int>(c->deviceId), mono(c->start), mono(c->end), c->streamId,
                c->correlationId, CopyName(c->copyKind));
        a->delivered.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
          rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
        continue;
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      a->sink(a->ctx, static_cast<int>(k->deviceId), mono(k->start), mono(k->end), k->streamId,
              k->correlationId, k->name);
      a->delivered.fetch_add(1, std::memory_order_relaxed);
    }
    std::size_t dropped = 0;
    if (a->dropped != nullptr && a->dropped(ctx, stream, &dropped) == CUPTI_SUCCESS)
      a->lost.fetch_add(dropped, std::memory_order_relaxed);
  }
  std::free(buffer);
}

}  // namespace

bool StartKernelActivity(KernelSink sink, void* ctx, std::string* why) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_activity != nullptr) return true;
  void* lib = CuptiLibrary();
  if (lib == nullptr) {
    *why = "the CUPTI tracker is not running (SPILLWAY_KERNELS=1 needs SPILLWAY_TRACK=1)";
    return false;
  }
  auto sym = [lib](const char* n) { return prim::RealDlsym(lib, n); };
  auto enable = reinterpret_cast<EnableFn>(sym("cuptiActivityEnable"));
  auto reg = reinterpret_cast<RegisterFn>(sym("cuptiActivityRegisterCallbacks"));
  auto timestamp = reinterpret_cast<TimestampFn>(sym("cuptiGetTimestamp"));
  auto a = new Activity;
  a->sink = sink;
  a->ctx = ctx;
  a->next = reinterpret_cast<NextRecordFn>(sym("cuptiActivityGetNextRecord"));
  a->flush = reinterpret_cast<FlushAllFn>(sym("cuptiActivityFlushAll"));
  a->dropped = reinterpret_cast<DroppedFn>(sym("cuptiActivityGetNumDroppedRecords"));
  if (enable == nullptr || reg == nullptr || timestamp == nullptr || a->next == nullptr ||
      a->flush == nullptr) {
    *why = "libcupti lacks the activity API";
    delete a;
    return false;
  }
  std::uint64_t ts = 0;
  const std::uint64_t mono = MonotonicNs();
  if (timestamp(&ts) != CUPTI_SUCCESS) {
    *why = "cuptiGetTimestamp failed";
    delete a;
    return false;
  }
  a->offset_ns = static_cast<std::int64_t>(mono) - static_cast<std::int64_t>(ts);
  g_activity = a;  // before CUPTI can call back
  if (CUptiResult r = reg(BufferRequested, BufferCompleted); r != CUPTI_SUCCESS) {
    *why = "cuptiActivityRegisterCallbacks: CUPTI error " + std::to_string(static_cast<int>(r));
    return false;
  }
  if (CUptiResult r = enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL); r != CUPTI_SUCCESS) {
    *why = "cuptiActivityEnable(CONCURRENT_KERNEL): CUPTI error " +
           std::to_string(static_cast<int>(r));
    return false;
  }
  if (CUptiResult r = enable(CUPTI_ACTIVITY_KIND_MEMCPY); r != CUPTI_SUCCESS) {
    *why = "cuptiActivityEnable(MEMCPY): CUPTI error " + std::to_string(static_cast<int>(r));
    return false;
  }
  return true;
}

void FlushKernelActivity() {
  Activity* a = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    a = g_activity;
  }
  if (a != nullptr) a->flush(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
}

std::uint64_t KernelsDelivered() {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_activity ? g_activity->delivered.load(std::memory_order_relaxed) : 0;
}

std::uint64_t KernelRecordsDropped() {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_activity ? g_activity->lost.load(std::memory_order_relaxed) : 0;
}

}  // namespace spillway::tracker
