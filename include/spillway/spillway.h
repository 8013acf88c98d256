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
  SPILLWAY_ERR_NO_DEVICE = 7      /* no CUDA driver / device, and no simulator selected */
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
  uint64_t map_count;            /* chunk mappings made */
  uint64_t unmap_count;          /* chunk mappings removed */
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
/* Cap reserved device memory at `bytes` (0 removes the cap). Fails with INVALID_VALUE if
 * less than what is live now. */
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

/* The message of the last failure on this thread ("" if none). */
const char* spillway_last_error(void);
const char* spillway_status_string(spillway_status status);

#ifdef __cplusplus
}
#endif
#endif /* SPILLWAY_SPILLWAY_H_ */
