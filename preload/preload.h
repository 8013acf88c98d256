// preload.h — shared pieces of the LD_PRELOAD interposer: the allocator instance (or the reason
// it is disabled), the real CUDA runtime entry points, and the trace kinds of each hook.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include "allocator/allocator.h"
#include "allocator/prim/cuda_driver.h"

namespace spillway::preload {

// The allocator, or nullptr when Spillway could not start (the reason is printed once and the
// CUDA calls then go to CUDA unchanged).
Allocator* Instance();
// The real CUDA driver entry points (never nullptr after Instance() succeeded; may be nullptr
// before if no driver exists).
const prim::CudaDriver* Driver();

// Real runtime functions from the libcudart loaded in this process.
void* RealRuntime(const char* name);
template <class F>
F Real(const char* name) {
  return reinterpret_cast<F>(RealRuntime(name));
}

// Our replacement for a driver or runtime symbol name ("cuMemAlloc_v2", "cudaMalloc"...), or
// nullptr if we do not interpose it.
void* HookFor(const char* symbol);
// Our replacement for a cuGetProcAddress lookup (base name, version, flags), or nullptr.
void* DriverHookFor(const char* symbol, int cuda_version, cuuint64_t flags);

// Our launch interposer in place of `real`, the entry point cuGetProcAddress returned for
// `symbol` (launch_hooks.cpp); nullptr when it is not a launch entry point we know, or
// tracking was not requested.
void* LaunchHookFor(const char* symbol, void* real);
// The launch hooks are wanted: SPILLWAY_TRACK=1 and SPILLWAY_TRACK_LAUNCHES is not `cupti`
// (read when the preload was loaded).
bool TrackingRequested();

// Device of the calling thread's current context (runtime) for cudaMalloc-family calls.
int CurrentDevice();

// Under a device budget, what cudaMemGetInfo/cuMemGetInfo report: the budget as the total, and
// as free the room left under it (memory Spillway holds but does not use counts as free).
// Leaves the figures as they are when no budget is set. `real_free` is the driver's figure.
void ApplyBudget(Allocator* a, int device, size_t real_free, size_t* free_bytes,
                 size_t* total_bytes);

// Frees made on a capturing stream: the blocks stay allocated for the graph's lifetime.
void RetainForGraph(const void* p);

}  // namespace spillway::preload
