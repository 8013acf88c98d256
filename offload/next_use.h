// next_use.h — the pager's prediction of when a block is needed next, from the tracker's
// bookkeeping of its accesses: the victim rule (Belady's: evict what is needed last) for
// eviction and for spilling the host tier to NVMe. Pure functions; docs/offload.md, "Victim
// choice".
#pragma once

#include <cstdint>

#include "profiler/tracker/block_index.h"

namespace spillway::offload {

// How far (in tracked operations after `now`) the block's next use is expected; larger goes
// first. In order:
//   never used:                                   INT64_MAX (furthest of all);
//   idle at most twice its last gap between uses: gap - idle (in a run of uses, e.g. an
//                                                 optimizer state between foreach passes);
//   seen in several bursts (a period):            period - idle (negative when overdue);
//   seen in one burst:                            idle (activations come back in the reverse
//                                                 order of their making: least recently used).
std::int64_t NextUseDistance(const tracker::BlockSummary& s, std::uint64_t now);

}  // namespace spillway::offload
