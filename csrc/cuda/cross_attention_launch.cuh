// Host-side helpers shared by the cross_self_attention CUDA launchers: head-dim buckets,
// dtype dispatch, the direction table and the shared-memory opt-in.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <type_traits>

namespace srkd::cuda {

// Calls f(std::integral_constant<int, bucket>) for the smallest bucket >= head_dim.
template <typename F>
void dispatch_head_dim(int64_t head_dim, F&& f) {
  if (head_dim <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (head_dim <= 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    f(std::integral_constant<int, 128>{});
  }
}

#define SRKD_DISPATCH_CUDA_ATTENTION_TYPES(TYPE, NAME, ...)              \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                         \
                     AT_DISPATCH_CASE(at::ScalarType::Float, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::ScalarType::Half, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::ScalarType::BFloat16, __VA_ARGS__))

// Kernels that need more than the default 48 KiB of dynamic shared memory must opt in.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

// The [B, H, L, D] tensors of one direction: direction 0 = a queries on b keys/values,
// direction 1 = b queries on a keys/values.
template <typename scalar_t>
struct DirectionPointers {
  const scalar_t* query;
  const scalar_t* key;
  const scalar_t* value;
};

}  // namespace srkd::cuda
