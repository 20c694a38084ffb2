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

// Largest supported head dim: the CUDA kernels size their shared-memory tiles and register
// accumulators for at most this many columns.
constexpr int64_t kMaxHeadDim = 128;

// Whether query i may attend to key j: j is a real position (< length), not padding, and not
// in the future under the causal mask. key_padding_row: the [L] row of batch b, or nullptr.
SRKD_HOST_DEVICE inline bool key_allowed(int64_t i, int64_t j, int64_t length, bool causal,
                                         const bool* key_padding_row) {
  return j < length && (!causal || j <= i) && (key_padding_row == nullptr || !key_padding_row[j]);
}

}  // namespace srkd
