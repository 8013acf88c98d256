// kernel_activity.h — SPILLWAY_KERNELS=1: when each kernel and each copy ran on the GPU, from
// CUPTI activity records (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL and _MEMCPY; a copy is named
// "memcpy HtoD", "memcpy DtoH", ...), for the Chrome trace. CUPTI hands the records
// over in buffers, on its own thread, some time after the kernels ran; the start and end
// timestamps are converted to CLOCK_MONOTONIC (the event log's clock) with one pair of readings
// taken at start. Uses the libcupti the tracker loaded (tracker.h): start the tracker first.
#pragma once

#include <cstdint>
#include <string>

namespace spillway::tracker {

// One kernel: device, CLOCK_MONOTONIC ns of its start and end, CUPTI stream and correlation ids,
// and its name (valid during the call only).
using KernelSink = void (*)(void* ctx, int device, std::uint64_t start_ns, std::uint64_t end_ns,
                            std::uint32_t stream, std::uint32_t correlation, const char* name);

// Enables the kernel activity records. False with *why (the tracker not running, libcupti
// lacking the activity API, CUPTI refusing). Once per process.
bool StartKernelActivity(KernelSink sink, void* ctx, std::string* why);
// Hands over the records CUPTI still holds (at exit, while the CUDA context is alive).
void FlushKernelActivity();
// Kernels delivered and records CUPTI dropped (buffers full), for the summary.
std::uint64_t KernelsDelivered();
std::uint64_t KernelRecordsDropped();

}  // namespace spillway::tracker
