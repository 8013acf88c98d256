// runtime_hooks.cpp — interposers of the CUDA runtime's allocation calls: cudaMalloc, cudaFree,
// cudaMallocAsync, cudaFreeAsync (and their _ptsz forms), cudaMemGetInfo, and the default
// memory pool's statistics and trimming that PyTorch's cudaMallocAsync backend reads.
#include <cstdio>

#include "allocator/error.h"
#include "preload/preload.h"

using spillway::Allocator;
using spillway::FreeMode;
namespace trace = spillway::trace;
namespace pl = spillway::preload;

namespace {

cudaError_t ToRuntime(spillway_status s) {
  switch (s) {
    case SPILLWAY_OK: return cudaSuccess;
    case SPILLWAY_ERR_OUT_OF_MEMORY: return cudaErrorMemoryAllocation;
    case SPILLWAY_ERR_NO_DEVICE: return cudaErrorNoDevice;
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t Complain(spillway_status s) {
  if (s != SPILLWAY_ERR_OUT_OF_MEMORY) std::fprintf(stderr, "%s\n", spillway::LastError());
  return ToRuntime(s);
}

cudaError_t MallocAsync(void** p, size_t n, cudaStream_t s, const char* real_name) {
  Allocator* a = pl::Instance();
  const int dev = pl::CurrentDevice();
  if (a == nullptr || p == nullptr || a->backend().stream_is_capturing(dev, s)) {
    // Capturing: CUDA makes this a graph memory node, whose lifetime the graph owns.
    auto real = pl::Real<cudaError_t (*)(void**, size_t, cudaStream_t)>(real_name);
    cudaError_t r = real ? real(p, n, s) : cudaErrorNotSupported;
    if (a && r == cudaSuccess) a->trace_passthrough(trace::Kind::kCudaMallocAsync, dev, s, *p, n);
    return r;
  }
  if (n == 0) {  // as CUDA: success and no memory
    *p = nullptr;
    return cudaSuccess;
  }
  spillway_status st = a->allocate(p, n, dev, s, false, trace::Kind::kCudaMallocAsync);
  return st == SPILLWAY_OK ? cudaSuccess : Complain(st);
}

cudaError_t FreeAsync(void* p, cudaStream_t s, const char* real_name) {
  Allocator* a = pl::Instance();
  if (p == nullptr) return cudaSuccess;
  if (a != nullptr && a->owns_range(p)) {
    if (a->backend().stream_is_capturing(pl::CurrentDevice(), s)) {
      pl::RetainForGraph(p);
      return cudaSuccess;
    }
    spillway_status st = a->free(p, FreeMode::kStreamOrdered, s, trace::Kind::kCudaFreeAsync);
    return st == SPILLWAY_OK ? cudaSuccess : Complain(st);
  }
  auto real = pl::Real<cudaError_t (*)(void*, cudaStream_t)>(real_name);
  return real ? real(p, s) : cudaErrorNotSupported;
}

// The default pool of a device, to recognise PyTorch's statistics queries.
cudaMemPool_t DefaultPool(int dev) {
  static cudaMemPool_t pools[Allocator::kMaxDevices] = {};
  if (dev < 0 || dev >= Allocator::kMaxDevices) return nullptr;
  if (pools[dev] == nullptr) {
    auto real = pl::Real<cudaError_t (*)(cudaMemPool_t*, int)>("cudaDeviceGetDefaultMemPool");
    if (real) real(&pools[dev], dev);
  }
  return pools[dev];
}

}  // namespace

extern "C" {

cudaError_t cudaMalloc(void** p, size_t n) {
  Allocator* a = pl::Instance();
  if (a == nullptr) {
    auto real = pl::Real<cudaError_t (*)(void**, size_t)>("cudaMalloc");
    return real ? real(p, n) : cudaErrorNotSupported;
  }
  if (p == nullptr) return cudaErrorInvalidValue;
  if (n == 0) {
    *p = nullptr;
    return cudaSuccess;
  }
  spillway_status st = a->allocate(p, n, pl::CurrentDevice(), nullptr, true, trace::Kind::kCudaMalloc);
  return st == SPILLWAY_OK ? cudaSuccess : Complain(st);
}

cudaError_t cudaFree(void* p) {
  Allocator* a = pl::Instance();
  if (p == nullptr) {
    // cudaFree(0) is the idiom that initialises the runtime: keep it.
    auto real = pl::Real<cudaError_t (*)(void*)>("cudaFree");
    return real ? real(p) : cudaSuccess;
  }
  if (a != nullptr && a->owns_range(p)) {
    spillway_status st = a->free(p, FreeMode::kSynchronous, nullptr, trace::Kind::kCudaFree);
    return st == SPILLWAY_OK ? cudaSuccess : Complain(st);
  }
  auto real = pl::Real<cudaError_t (*)(void*)>("cudaFree");
  return real ? real(p) : cudaErrorNotSupported;
}

cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t s) {
  return MallocAsync(p, n, s, "cudaMallocAsync");
}
cudaError_t cudaMallocAsync_ptsz(void** p, size_t n, cudaStream_t s) {
  return MallocAsync(p, n, s == nullptr ? cudaStreamPerThread : s, "cudaMallocAsync_ptsz");
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) { return FreeAsync(p, s, "cudaFreeAsync"); }
cudaError_t cudaFreeAsync_ptsz(void* p, cudaStream_t s) {
  return FreeAsync(p, s == nullptr ? cudaStreamPerThread : s, "cudaFreeAsync_ptsz");
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  auto real = pl::Real<cudaError_t (*)(size_t*, size_t*)>("cudaMemGetInfo");
  if (real == nullptr) return cudaErrorNotSupported;
  cudaError_t r = real(free_bytes, total_bytes);
  if (r != cudaSuccess || pl::Instance() == nullptr) return r;
  // cudart's own call may already have gone through our cuMemGetInfo hook: start again from
  // the real driver figure so that the adjustment is made once.
  size_t real_free = *free_bytes, real_total = 0;
  pl::Driver()->cuMemGetInfo(&real_free, &real_total);
  pl::ApplyBudget(pl::Instance(), pl::CurrentDevice(), real_free, free_bytes, total_bytes);
  return r;
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  auto real = pl::Real<cudaError_t (*)(cudaMemPool_t, cudaMemPoolAttr, void*)>(
      "cudaMemPoolGetAttribute");
  Allocator* a = pl::Instance();
  const int dev = pl::CurrentDevice();
  spillway_stats st;
  if (a != nullptr && value != nullptr && pool == DefaultPool(dev) &&
      a->stats(dev, &st) == SPILLWAY_OK) {
    auto* v = static_cast<cuuint64_t*>(value);
    switch (attr) {
      case cudaMemPoolAttrReservedMemCurrent: *v = st.reserved_bytes; return cudaSuccess;
      case cudaMemPoolAttrReservedMemHigh: *v = st.peak_reserved_bytes; return cudaSuccess;
      case cudaMemPoolAttrUsedMemCurrent: *v = st.allocated_bytes; return cudaSuccess;
      case cudaMemPoolAttrUsedMemHigh: *v = st.peak_allocated_bytes; return cudaSuccess;
      default: break;
    }
  }
  return real ? real(pool, attr, value) : cudaErrorNotSupported;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  auto real = pl::Real<cudaError_t (*)(cudaMemPool_t, cudaMemPoolAttr, void*)>(
      "cudaMemPoolSetAttribute");
  Allocator* a = pl::Instance();
  const int dev = pl::CurrentDevice();
  if (a != nullptr && pool == DefaultPool(dev) &&
      (attr == cudaMemPoolAttrReservedMemHigh || attr == cudaMemPoolAttrUsedMemHigh))
    a->reset_peak_stats(dev);
  return real ? real(pool, attr, value) : cudaErrorNotSupported;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep) {
  auto real = pl::Real<cudaError_t (*)(cudaMemPool_t, size_t)>("cudaMemPoolTrimTo");
  Allocator* a = pl::Instance();
  const int dev = pl::CurrentDevice();
  if (a != nullptr && pool == DefaultPool(dev)) a->trim(dev, keep);
  return real ? real(pool, keep) : cudaErrorNotSupported;
}

}  // extern "C"
