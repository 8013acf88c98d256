// trace_format.h — the event log written with SPILLWAY_TRACE=path: allocation calls, physical
// memory (map, unmap, chunks), marks and out-of-memory events; read by `spillway replay` and
// `spillway report`. Layout documented in docs/trace-format.md. Little-endian.
#pragma once

#include <cstdint>

namespace spillway::trace {

inline constexpr char kMagic[8] = {'S', 'P', 'W', 'T', 'R', 'A', 'C', 'E'};
inline constexpr std::uint32_t kVersion = 2;  // readers also accept version 1 (48-byte records)

struct Header {            // 64 bytes
  char magic[8];           // "SPWTRACE"
  std::uint32_t version;   // kVersion
  std::uint32_t header_size;  // sizeof(Header)
  std::uint32_t record_size;  // sizeof(Record): 64 (version 2), 48 (version 1)
  std::uint32_t pid;
  std::uint64_t start_unix_ns;  // wall clock at the first record's t_ns == 0
  std::int32_t rank;            // RANK / LOCAL_RANK of the process, -1 if none (version 2)
  std::uint32_t granularity;    // physical chunk size in bytes, 0 if unknown (version 2)
  std::uint8_t reserved[24];
};

enum class Kind : std::uint16_t {
  // Allocation calls (odd: allocate, even: free).
  kCudaMalloc = 1,
  kCudaFree = 2,
  kCudaMallocAsync = 3,
  kCudaFreeAsync = 4,
  kCuMemAlloc = 5,
  kCuMemFree = 6,
  kCuMemAllocAsync = 7,
  kCuMemFreeAsync = 8,
  kApiMalloc = 9,   // spillway_malloc / spillway_malloc_async (stream-ordered)
  kApiFree = 10,    // spillway_free / spillway_free_async (stream-ordered)
  kApiMallocSync = 11,
  kApiFreeSync = 12,
  // Physical memory (version 2).
  kMap = 20,           // addr: VA of a page, size: bytes mapped
  kUnmap = 21,         // addr, size
  kChunkCreate = 22,   // size: bytes of device memory created (reserved grows)
  kChunkRelease = 23,  // size: bytes released (reserved shrinks)
  // Marks and failures (version 2).
  kMark = 30,    // addr: label id (a kString defines it), aux2: 0 instant, 1 begin, 2 end
  kOom = 31,     // size: bytes requested
  kString = 40,  // addr: label id; device: label length; aux2: chunk number; the 24 text
                 // bytes of the chunk are stored in size, stream, aux (in that order)
  kCallSite = 41,  // the call site of the block just allocated at addr: aux: id of its text (a
                   // kString defines it: one frame a line, innermost first, docs/trace-format.md)
  // Tracker (SPILLWAY_TRACK=1), written when a block is freed and at exit for live blocks.
  kAccess = 50,  // addr: block; size: accesses; aux: first access t_ns; stream: last access
                 // t_ns (both 0 when size is 0); aux2: distinct streams (5 = more than 4)
  kTouch = 51,   // t_ns: when the operation was issued; addr: block; aux: the tracker's
                 // operation number (launches, copies, sets counted together); stream: its
                 // stream. At most one per block per 32 operations (tracker/block_index.h).
  kKernel = 52,  // SPILLWAY_KERNELS=1: one kernel's execution (CUPTI activity record): t_ns its
                 // start on the GPU; aux its duration in ns; addr: id of its name (a kString
                 // defines it); stream: CUPTI's stream id; aux2: CUPTI's correlation id
  // Offload (offload/, issue 4). Tiers: 0 device, 1 host, 2 NVMe (enum Tier).
  kEvict = 60,  // a block's bytes left a tier: t_ns when the move finished; addr: block; size:
                // bytes moved (the block's whole pages); aux: ns the move took; stream: the copy
                // stream; aux2: (from << 8) | to
  kFetch = 61,  // a block came back toward the device: fields as kEvict; aux2 also has bit 16
                // (kFetchDemand) set when a launch or an access waited for it (a stall: aux is
                // then the time it waited); otherwise it was a prefetch
  kOffloadError = 62,  // a move that did not happen: addr, size; aux2: OffloadErrorReason;
                       // status: the spillway_status; the data stayed where it was
};
enum Tier : std::uint32_t { kTierDevice = 0, kTierHost = 1, kTierNvme = 2 };
inline constexpr std::uint32_t kFetchDemand = 1u << 16;
enum OffloadErrorReason : std::uint32_t {
  kErrHostLimit = 1,  // SPILLWAY_HOST_LIMIT reached (or pinned host memory could not be made)
  kErrNvmeFull = 2,   // the disk is full or SPILLWAY_NVME_LIMIT reached
  kErrNvmeIo = 3,     // an I/O error (the data stayed on the host)
  kErrChecksum = 4,   // SPILLWAY_NVME_VERIFY found a mismatch on a read
  kErrDeviceFull = 5  // no device memory to bring a block back
};

inline constexpr std::uint16_t kStatusPassedThrough = 100;  // handed to CUDA (foreign/capture)

struct Record {            // 64 bytes (version 2)
  std::uint64_t t_ns;      // monotonic nanoseconds since the trace started
  std::uint64_t addr;      // block address (0 for a failed allocation)
  std::uint64_t size;      // requested bytes (0 for frees)
  std::uint64_t stream;    // cudaStream_t value; 0 = legacy default stream
  std::uint64_t seq;       // record number in this process
  std::uint64_t aux;       // allocations: the block's size after rounding (0 if failed)
  std::int32_t device;
  std::uint16_t kind;      // Kind
  std::uint16_t status;    // spillway_status, or kStatusPassedThrough
  std::uint32_t aux2;      // see Kind
  std::uint32_t reserved;  // zero
};

struct RecordV1 {          // 48 bytes (version 1): Record without aux, aux2, reserved
  std::uint64_t t_ns, addr, size, stream, seq;
  std::int32_t device;
  std::uint16_t kind, status;
};

static_assert(sizeof(Header) == 64);
static_assert(sizeof(Record) == 64);
static_assert(sizeof(RecordV1) == 48);

inline bool IsAlloc(std::uint16_t k) { return k % 2 == 1 && k <= 11; }
inline bool IsFree(std::uint16_t k) { return k % 2 == 0 && k >= 2 && k <= 12; }
inline bool IsSyncKind(std::uint16_t k) {
  return k == 1 || k == 2 || k == 5 || k == 6 || k == 11 || k == 12;
}

}  // namespace spillway::trace
