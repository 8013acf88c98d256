// launch_remap.h — whether the driver's VMM calls hold up kernel launches made meanwhile from
// another thread: the question behind a mapping thread that remaps ahead of the launches
// (docs/offload.md, "Next, in order"). Part of bench/offload_bench (GPU only).
#pragma once

#include <string>

#include "allocator/prim/backend.h"

namespace spillway::bench {

struct LaunchRemap {
  double launch_us_alone = 0;          // CPU time per cuLaunchKernel of an empty kernel, median
  double launch_us_remapping = 0;      // the same while another thread remaps device chunks
  double launch_us_max_remapping = 0;  // the slowest batch's mean while remapping
  double remap_us_per_page = 0;  // that thread's map + access + unmap of a 2 MiB page meanwhile
};

// Device 0. An empty kernel is JIT-compiled from PTX (no nvcc needed) and launched in batches of
// 256 on a non-blocking stream (synchronized between batches, so the queue never fills): first
// alone, then while a second thread maps, grants access to and unmaps 2 MiB device chunks in a
// loop. False with *why when the driver or the backend refuses something.
bool MeasureLaunchWhileRemapping(prim::Backend& be, LaunchRemap* out, std::string* why);

}  // namespace spillway::bench
