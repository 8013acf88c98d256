/* spillway.h — the C API of Spillway: a caching GPU allocator usable as PyTorch's
 * CUDAPluggableAllocator, from C and C++, and the statistics/budget controls behind it.
 *
 * Thread safety: every function may be called from any thread.
 * Streams are passed as `void*` (ABI-identical to cudaStream_t / CUstream) so this header
 * needs no CUDA headers. A NULL stream is CUDA's legacy default stream. */
#ifndef SPILLWAY_SPILLWAY_H_
#define SPILLWAY_SPILLWAY_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */

#ifdef __cplusplus
extern "C" {
#endif

#define SPILLWAY_VERSION_MAJOR 0
#define SPILLWAY_VERSION_MINOR 1

typedef enum spillway_status {
  SPILLWAY_OK = 0,
  SPILLWAY_ERR_INVALID_VALUE = 1, /* size 0, absurd size, bad device, NULL out-pointer */
  SPILLWAY_ERR_OUT_OF_MEMORY = 2, /* budget or device memory exhausted (cache trimmed first) */
  SPILLWAY_ERR_NOT_OWNED = 3,     /* pointer was not allocated by Spillway (foreign) */
  SPILLWAY_ERR_DOUBLE_FREE = 4,   /* pointer inside Spillway's memory but not a live block */
  SPILLWAY_ERR_BACKEND = 5,       /* the CUDA driver (or the simulator) failed */
  SPILLWAY_ERR_CONFIG = 6,        /* a SPILLWAY_* variable or an argument is malformed */
  SPILLWAY_ERR_NO_DEVICE = 7,     /* no CUDA driver / device, and no simulator selected */
  SPILLWAY_ERR_IO = 8,            /* the NVMe tier failed (disk full, I/O error, checksum) */
  SPILLWAY_ERR_BUSY = 9           /* the block is being moved or is in use; try again */
} spillway_status;

typedef struct spillway_stats {
  uint64_t allocated_bytes;      /* bytes requested by live allocations */
  uint64_t peak_allocated_bytes; /* high-water mark of allocated_bytes */
  uint64_t reserved_bytes;       /* physical device memory held (mapped or pooled) */
  uint64_t peak_reserved_bytes;  /* high-water mark of reserved_bytes */
  uint64_t internal_waste_bytes; /* rounding waste of live blocks (block size - requested) */
  uint64_t live_blocks;          /* allocations not yet freed */
  uint64_t alloc_count;          /* successful allocations since start */
  uint64_t free_count;           /* frees since start */
  uint64_t oom_count;            /* allocations that failed for lack of memory */
  uint64_t chunk_create_count;   /* physical chunks created through the driver */
  uint64_t chunk_release_count;  /* physical chunks released to the driver */
  uint64_t map_count;            /* mappings made (a span of 32 MiB counts once) */
  uint64_t unmap_count;          /* mappings removed */
  uint64_t budget_bytes;         /* reserved-memory cap; 0 = none (device size) */
  uint64_t granularity_bytes;    /* physical chunk size (2 MiB on H200) */
} spillway_stats;

/* --- PyTorch CUDAPluggableAllocator signatures (exact) ----------------------------------- */
/* Stream-ordered allocation on `stream` of `device`. Returns NULL on failure (see
 * spillway_last_error()); size 0 returns NULL without error. */
void* spillway_malloc(ssize_t size, int device, void* stream);
/* Stream-ordered free: the block may be reused by work on `stream` at once. */
void spillway_free(void* ptr, ssize_t size, int device, void* stream);

/* --- Status-returning API ------------------------------------------------------------------ */
/* Stream-ordered allocation (cudaMallocAsync semantics). */
spillway_status spillway_malloc_async(void** out, size_t size, int device, void* stream);
/* Stream-ordered free (cudaFreeAsync semantics). */
spillway_status spillway_free_async(void* ptr, void* stream);
/* Allocation with cudaMalloc semantics: usable from any stream. */
spillway_status spillway_malloc_sync(void** out, size_t size, int device);
/* Free with cudaFree semantics: reused only after all work enqueued before this call has
 * finished on every stream Spillway knows (events, never a device-wide synchronize). */
spillway_status spillway_free_sync(void* ptr);
/* 1 if ptr lies inside a live Spillway block, else 0. */
int spillway_owns(const void* ptr);

spillway_status spillway_get_stats(int device, spillway_stats* out);
spillway_status spillway_reset_peak_stats(int device);
/* Cap reserved device memory at `bytes` (0 removes the cap). Releases cached memory to meet
 * it; fails with INVALID_VALUE (the old cap stays) if less than what is allocated now, or than
 * the physical pages live blocks hold (a block holds whole pages). */
spillway_status spillway_set_budget(int device, uint64_t bytes);
/* Return cached physical memory to the driver until at most `keep_bytes` of cache remain. */
spillway_status spillway_trim(int device, uint64_t keep_bytes);
/* Number of devices Spillway manages (CUDA devices, or simulated ones). */
int spillway_device_count(void);
/* Writes the human-readable summary (the one printed at exit with SPILLWAY_STATS=1). */
spillway_status spillway_print_summary(int fd);

/* A phase mark ("forward", "step 12"...) in the SPILLWAY_TRACE event log; reports show marks
 * on their timelines. 1..4096 bytes of text; a no-op when no trace is recorded. */
spillway_status spillway_mark(const char* label);

/* Pauses (on = 0) or resumes (on = 1) the tracker (SPILLWAY_TRACK=1): while paused, kernel
 * launches, copies and sets are not recorded (allocations still are). For measuring the
 * tracker's cost inside one run, or skipping phases. SPILLWAY_ERR_CONFIG when tracking is not
 * running; SPILLWAY_ERR_BUSY when offload runs in tracked safety (it must see every launch). */
spillway_status spillway_set_tracking(int on);

/* ---- Offload (docs/offload.md) ------------------------------------------------------------
 * A block moves by its whole pages (2 MiB on H200; the first and last page, shared with
 * neighbours, stay on the device). Only blocks spanning at least one whole page can move. */
typedef enum spillway_tier {
  SPILLWAY_TIER_DEVICE = 0,
  SPILLWAY_TIER_HOST = 1, /* pinned host memory; kernels still read the block, over PCIe */
  SPILLWAY_TIER_NVME = 2  /* SPILLWAY_NVME_PATH; the block must be prefetched before use */
} spillway_tier;
typedef enum spillway_hint {
  SPILLWAY_ADVISE_NONE = 0,
  SPILLWAY_ADVISE_KEEP_ON_DEVICE = 1, /* never evicted automatically, refused by offload */
  SPILLWAY_ADVISE_EVICT_FIRST = 2     /* evicted before any other block when room is needed */
} spillway_hint;
/* Moves the block that starts at `ptr` to `tier`, after all work that may use it (see the safety
 * modes). To the host: queued, completes in the background (spillway_offload_synchronize
 * waits). To NVMe: returns once written. To the device: as spillway_prefetch on the legacy
 * stream. Errors: NOT_OWNED, INVALID_VALUE (not a block start, a block too small to move),
 * OUT_OF_MEMORY (SPILLWAY_HOST_LIMIT), IO (disk full, I/O error: the data stays on the host),
 * CONFIG (NVMe tier off). */
spillway_status spillway_offload(void* ptr, spillway_tier tier);
/* Brings the block back to the device; work enqueued on `stream` afterwards sees its data (the
 * CPU does not wait for the copy). On the device already: nothing to do. */
spillway_status spillway_prefetch(void* ptr, void* stream);
spillway_status spillway_advise(void* ptr, spillway_hint hint);
/* Where the block is now (a block moving out counts as on the device). */
spillway_status spillway_residency(const void* ptr, spillway_tier* out);
/* Completes every move in flight on `device`. */
spillway_status spillway_offload_synchronize(int device);

typedef struct spillway_offload_stats {
  uint64_t host_bytes;         /* bytes of blocks on the host tier now */
  uint64_t nvme_bytes;         /* bytes of blocks on the NVMe tier now */
  uint64_t host_pool_bytes;    /* pinned host memory created by the host tier */
  uint64_t evictions;          /* device -> host moves completed */
  uint64_t fetches;            /* host -> device moves (prefetches + stalls) */
  uint64_t prefetches;         /* fetches made ahead of use */
  uint64_t stalls;             /* fetches a launch or access waited for */
  uint64_t stall_ns;           /* time spent in stalls */
  uint64_t cancelled;          /* evictions abandoned (block used or freed meanwhile) */
  uint64_t errors;             /* moves that failed (data kept where it was) */
  uint64_t bytes_to_host, bytes_from_host, bytes_to_nvme, bytes_from_nvme;
  uint64_t fast_evictions;     /* evictions that needed no wait (tracked: last use known done) */
  uint64_t remap_ns;           /* CPU time in the driver's map/unmap/access calls */
  uint64_t in_place;           /* blocks streaming kernels used where they lay (not fetched) */
  uint64_t in_place_returns;   /* blocks such a kernel named that came back instead (needed
                                  again sooner than the device blocks that made room) */
  /* CPU time Spillway added to the calling threads (the launch path) while offload is on: */
  uint64_t alloc_ns;           /* in allocations on this device (make_room_ns included) */
  uint64_t make_room_ns;       /* in evictions that made room for an allocation */
  uint64_t free_ns;            /* in frees on this device while blocks were off it */
  uint64_t launch_ns;          /* in launches that named blocks off the device (stalls included) */
  /* Every device of the process (filled for a device that has a pager): */
  uint64_t cpu_waits;          /* times Spillway made a CPU thread wait for the GPU */
  uint64_t cpu_wait_ns;        /* the time of those waits */
  uint64_t create_ns, release_ns, map_ns, access_ns, unmap_ns; /* CPU time in the driver's
                                  physical-memory calls of each kind (cuMemCreate, cuMemRelease,
                                  cuMemMap, cuMemSetAccess, cuMemUnmap); the simulator times
                                  map, access and unmap only */
  uint64_t access_calls;       /* cuMemSetAccess calls (every device) */
  uint64_t pager_maps;         /* mappings the pager made on this device (blocks brought back,
                                  host chunks mapped at a block's address); the allocator's own
                                  are spillway_stats.map_count */
} spillway_offload_stats;
spillway_status spillway_get_offload_stats(int device, spillway_offload_stats* out);

/* The message of the last failure on this thread ("" if none). */
const char* spillway_last_error(void);
const char* spillway_status_string(spillway_status status);

#ifdef __cplusplus
}
#endif
#endif /* SPILLWAY_SPILLWAY_H_ */
