// crc32c.h — CRC32C (Castagnoli) checksums of the NVMe tier's stored data (SPILLWAY_NVME_VERIFY):
// SSE4.2 instructions when the CPU has them, a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spillway::offload {

// CRC32C of n bytes at p. `seed` is the CRC of the bytes before (0 to start), so
// Crc32c(b, nb, Crc32c(a, na)) == Crc32c(a followed by b). Crc32c("123456789", 9) == 0xE3069283.
std::uint32_t Crc32c(const void* p, std::size_t n, std::uint32_t seed = 0);

// The table version (what Crc32c uses without SSE4.2), for tests and comparisons.
std::uint32_t Crc32cPortable(const void* p, std::size_t n, std::uint32_t seed = 0);

// True when Crc32c uses the SSE4.2 crc32 instruction (checked once at run time).
bool Crc32cUsesSse42();

}  // namespace spillway::offload
