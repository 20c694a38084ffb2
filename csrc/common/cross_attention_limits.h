// Limits and conventions of cross_self_attention shared by the CPU and CUDA kernels
// (host and device code).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SRKD_HOST_DEVICE __host__ __device__
#else
#define SRKD_HOST_DEVICE
#endif

namespace srkd {

// Largest supported head dim: the CUDA kernel keeps a query row of this many floats in
// registers per thread group, the CPU kernel sizes its staging buffers by it.
constexpr int64_t kMaxHeadDim = 128;

// Number of keys query `i` may look at before the key padding mask: all L, or i + 1 under
// the causal mask.
SRKD_HOST_DEVICE inline int64_t causal_key_end(int64_t i, int64_t length, bool causal) {
  return causal ? (i + 1 < length ? i + 1 : length) : length;
}

}  // namespace srkd
