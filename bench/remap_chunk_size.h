// remap_chunk_size.h — whether the driver's remapping cost is per mapping or per byte: map +
// grant access + unmap (and create + release) of one range built from physical chunks of 2, 8, 32
// and 128 MiB. If the cost follows the number of chunks, larger chunks for large blocks would cut
// the pager's remapping (docs/offload.md, "Remapping and a pager thread"). Part of
// bench/offload_bench (GPU only).
#pragma once

#include <string>
#include <vector>

#include "allocator/prim/backend.h"

namespace spillway::bench {

struct ChunkRemapCost {
  std::size_t chunk_bytes = 0;
  double map_us_per_2mib = 0;      // cuMemMap of every chunk, per 2 MiB of the range
  double access_us_per_2mib = 0;   // cuMemSetAccess, one call per chunk
  double unmap_us_per_2mib = 0;    // cuMemUnmap, one call per chunk
  double create_us_per_2mib = 0;   // cuMemCreate of every chunk (once, not a median)
  double release_us_per_2mib = 0;  // cuMemRelease of every chunk (once)
};

// Device 0, a 256 MiB range, device chunks; the median of 3 rounds for each size. False with
// *why when the backend refuses something (nothing is left mapped or allocated).
bool MeasureRemapByChunkSize(prim::Backend& be, std::vector<ChunkRemapCost>* out, std::string* why);

}  // namespace spillway::bench
