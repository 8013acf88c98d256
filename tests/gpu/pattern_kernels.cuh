// pattern_kernels.cuh — the GPU tests' byte pattern: a kernel that writes it over a block and
// one that counts the bytes that differ from it.
#pragma once

#include <cstddef>

namespace spillway::test {

__global__ inline void Fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    p[i] = static_cast<unsigned char>((i * 2654435761u) ^ seed);
}

__global__ inline void Check(const unsigned char* p, size_t n, unsigned seed,
                             unsigned long long* bad) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    if (p[i] != static_cast<unsigned char>((i * 2654435761u) ^ seed)) atomicAdd(bad, 1ull);
}

}  // namespace spillway::test
