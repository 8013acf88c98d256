// trace_format.h — the binary allocation trace written with SPILLWAY_TRACE=path and read by
// `spillway replay` and the profiler. Layout documented in docs/trace-format.md. Little-endian.
#pragma once

#include <cstdint>

namespace spillway::trace {

inline constexpr char kMagic[8] = {'S', 'P', 'W', 'T', 'R', 'A', 'C', 'E'};
inline constexpr std::uint32_t kVersion = 1;

struct Header {            // 64 bytes
  char magic[8];           // "SPWTRACE"
  std::uint32_t version;   // kVersion
  std::uint32_t header_size;  // sizeof(Header)
  std::uint32_t record_size;  // sizeof(Record)
  std::uint32_t pid;
  std::uint64_t start_unix_ns;  // wall clock at the first record's t_ns == 0
  std::uint8_t reserved[32];
};

enum class Kind : std::uint16_t {
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
};

inline constexpr std::uint16_t kStatusPassedThrough = 100;  // handed to CUDA (foreign/capture)

struct Record {            // 48 bytes
  std::uint64_t t_ns;      // monotonic nanoseconds since the trace started
  std::uint64_t addr;      // block address (0 for a failed allocation)
  std::uint64_t size;      // requested bytes (0 for frees)
  std::uint64_t stream;    // cudaStream_t value; 0 = legacy default stream
  std::uint64_t seq;       // record number in this process
  std::int32_t device;
  std::uint16_t kind;      // Kind
  std::uint16_t status;    // spillway_status, or kStatusPassedThrough
};

static_assert(sizeof(Header) == 64);
static_assert(sizeof(Record) == 48);

inline bool IsAlloc(std::uint16_t k) { return k % 2 == 1 && k <= 11; }
inline bool IsSyncKind(std::uint16_t k) {
  return k == 1 || k == 2 || k == 5 || k == 6 || k == 11 || k == 12;
}

}  // namespace spillway::trace
