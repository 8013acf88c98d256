// remap_under_copy.h — whether the driver's VMM calls cost more while copies are in flight: under
// offload traffic the step stats of `activations` showed cuMemSetAccess at ~27 us per 2 MiB page
// (0.4 s a step) against 6.7 us with the GPU idle, and no cheaper for 32 MiB spans or for one
// call over a whole run of pages (docs/offload.md, "Driver calls under copy traffic"). Here the
// same map / grant access / unmap of 8 MiB device chunks is timed with the GPU idle and while
// device -> host copies run on another stream; then the grants alone while the same 4 GiB move
// in other shapes (copies of 8 or 2 MiB each, host -> device): whether the wait depends on the
// size of each copy. Part of bench/offload_bench (GPU only).
#pragma once

#include <string>

#include "allocator/prim/backend.h"

namespace spillway::bench {

struct RemapUnderCopy {
  // Per 2 MiB of a 256 MiB range of 8 MiB chunks, one call per chunk (access also as one call
  // for the whole range), medians of 3 rounds.
  double map_us_idle = 0, access_us_idle = 0, access_range_us_idle = 0, unmap_us_idle = 0;
  double map_us_copying = 0, access_us_copying = 0, access_range_us_copying = 0,
         unmap_us_copying = 0;
  double slowest_access_call_ms_copying = 0;  // the longest single call among those rounds
  double copy_ms = 0;    // the copies queued for a round (device -> pinned host), alone
  double copy_gbps = 0;  // their speed
  // cuMemSetAccess per 2 MiB (one call per 8 MiB chunk, median of 3 rounds) while the 4 GiB
  // move as: device -> host in copies of 8 MiB and of 2 MiB, host -> device in 1 GiB and 8 MiB.
  double access_us_d2h_8m = 0, access_us_d2h_2m = 0, access_us_h2d_1g = 0, access_us_h2d_8m = 0;
  // cuMemSetAccess per 2 MiB while the 4 GiB move to the host in 1 GiB copies, one call per
  // physical allocation of 2, 32 and 128 MiB (8 MiB: access_us_copying): per mapping or per byte?
  double access_us_d2h_chunk2 = 0, access_us_d2h_chunk32 = 0, access_us_d2h_chunk128 = 0;
  // The same 4 GiB to the host written by the backend's copy kernel (SMs storing to the host
  // buffer, no copy engine; measured with 1056 blocks at 0b3a69e, 264 since): its speed, and
  // cuMemSetAccess per 2 MiB of 8 MiB chunks meanwhile. Copy engine contention or the link's device
  // -> host direction?
  double sm_copy_gbps = 0, access_us_sm_copy = 0;
  // cuMemSetAccess per 2 MiB of 8 MiB chunks while 4 GiB move device -> device (512 MiB
  // copies): by the copy engine, and by the copy kernel (SMs busy on device memory only).
  double access_us_d2d_ce = 0, access_us_d2d_sm = 0;
};

// Device 0, host chunks on NUMA node `numa`. False with *why when the backend refuses something
// (nothing is left mapped or allocated).
bool MeasureRemapUnderCopy(prim::Backend& be, int numa, RemapUnderCopy* out, std::string* why);

}  // namespace spillway::bench
