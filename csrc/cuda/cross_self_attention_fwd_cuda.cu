// CUDA forward of cross_self_attention (flash-attention style, float32 accumulation).
//
// Grid (query blocks, B * H, 2 directions); a block loads its kBlockQ queries into shared
// memory once, then streams the key/value tiles it can see (up to its last query under the
// causal mask) through shared memory with an online softmax. Only the outputs and the row
// log-sum-exp are written; rows whose keys are all masked get zeros and lse = +inf.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "common/cross_attention_checks.h"
#include "common/cross_attention_limits.h"
#include "cuda/cross_attention_launch.cuh"
#include "cuda/cross_attention_traits.cuh"

namespace srkd::cuda {
namespace {

template <typename scalar_t>
struct ForwardParams {
  DirectionPointers<scalar_t> dir[2];
  scalar_t* out[2];
  float* lse;             // [2, B, H, L]
  const bool* key_mask;   // [B, L] or nullptr
  int heads, length, head_dim;
  bool causal;
  float scale;
};

template <typename scalar_t, typename Traits>
__global__ void __launch_bounds__(kThreads) cross_attention_forward_kernel(const ForwardParams<scalar_t> p) {
  constexpr int kBlockQ = Traits::kBlockQ, kBlockK = Traits::kBlockK, kHeadDim = Traits::kHeadDim;
  constexpr int kRows = Traits::kRowsPerThread, kKeys = Traits::kKeysPerThread, kDims = Traits::kDimsPerThread;
  constexpr int kStride = Traits::kRowStride, kScoreStride = Traits::kScoreStride;
  extern __shared__ float shared[];
  float* q_tile = shared;                           // [kBlockQ][kStride]
  float* k_tile = q_tile + kBlockQ * kStride;       // [kBlockK][kStride]
  float* v_tile = k_tile + kBlockK * kStride;       // [kBlockK][kStride]
  float* p_tile = v_tile + kBlockK * kStride;       // [kBlockQ][kScoreStride]
  float* row_max = p_tile + kBlockQ * kScoreStride; // [kBlockQ]
  float* row_sum = row_max + kBlockQ;               // [kBlockQ]
  float* row_rescale = row_sum + kBlockQ;           // [kBlockQ]

  const int tid = threadIdx.x, ty = tid / kThreadCols, tx = tid % kThreadCols;
  const int direction = blockIdx.z, bh = blockIdx.y, batch = bh / p.heads;
  const int length = p.length, head_dim = p.head_dim;
  const int q0 = blockIdx.x * kBlockQ;
  const int64_t slice_offset = static_cast<int64_t>(bh) * length * head_dim;
  // Selected by value: indexing the parameter array with a runtime index would copy it to local memory.
  const DirectionPointers<scalar_t> ptr = direction == 0 ? p.dir[0] : p.dir[1];
  const scalar_t* query = ptr.query + slice_offset;
  const scalar_t* key = ptr.key + slice_offset;
  const scalar_t* value = ptr.value + slice_offset;
  const bool* mask_row = p.key_mask != nullptr ? p.key_mask + static_cast<int64_t>(batch) * length : nullptr;
  const float inf = INFINITY;

  for (int e = tid; e < kBlockQ * kHeadDim; e += kThreads) {
    const int r = e / kHeadDim, d = e % kHeadDim;
    q_tile[r * kStride + d] =
        (q0 + r < length && d < head_dim) ? static_cast<float>(query[(q0 + r) * head_dim + d]) : 0.f;
  }
  if (tid < kBlockQ) {
    row_max[tid] = -inf;
    row_sum[tid] = 0.f;
  }
  float acc[kRows][kDims];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int c = 0; c < kDims; ++c) acc[r][c] = 0.f;

  const int key_end = p.causal ? min(length, q0 + kBlockQ) : length;
  for (int k0 = 0; k0 < key_end; k0 += kBlockK) {
    __syncthreads();  // the previous tile's K, V, P are no longer read
    for (int e = tid; e < kBlockK * kHeadDim; e += kThreads) {
      const int r = e / kHeadDim, d = e % kHeadDim;
      const bool inside = k0 + r < length && d < head_dim;
      k_tile[r * kStride + d] = inside ? static_cast<float>(key[(k0 + r) * head_dim + d]) : 0.f;
      v_tile[r * kStride + d] = inside ? static_cast<float>(value[(k0 + r) * head_dim + d]) : 0.f;
    }
    __syncthreads();

    // Scores of rows ty * kRows + r and keys tx + 8 c.
    float s[kRows][kKeys];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kKeys; ++c) s[r][c] = 0.f;
    for (int d = 0; d < head_dim; ++d) {
      float qv[kRows], kv[kKeys];
#pragma unroll
      for (int r = 0; r < kRows; ++r) qv[r] = q_tile[(ty * kRows + r) * kStride + d];
#pragma unroll
      for (int c = 0; c < kKeys; ++c) kv[c] = k_tile[(tx + kThreadCols * c) * kStride + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kKeys; ++c) s[r][c] = fmaf(qv[r], kv[c], s[r][c]);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = ty * kRows + r;
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        const int col = tx + kThreadCols * c;
        p_tile[row * kScoreStride + col] =
            key_allowed(q0 + row, k0 + col, length, p.causal, mask_row) ? s[r][c] * p.scale : -inf;
      }
    }
    __syncthreads();

    // Online softmax: two neighbouring threads (one warp) share a row, half the columns each.
    {
      const int row = tid / 2, half = tid % 2;
      float* prow = p_tile + row * kScoreStride + half * (kBlockK / 2);
      float tile_max = -inf;
      for (int c = 0; c < kBlockK / 2; ++c) tile_max = fmaxf(tile_max, prow[c]);
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      const float old_max = row_max[row];
      const float new_max = fmaxf(old_max, tile_max);
      float tile_sum = 0.f;
      for (int c = 0; c < kBlockK / 2; ++c) {
        const float e = new_max == -inf ? 0.f : expf(prow[c] - new_max);
        prow[c] = e;
        tile_sum += e;
      }
      tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
      // exp(old - new) rescales what was accumulated; 0 when nothing was (old_max = -inf).
      const float rescale = old_max == -inf ? 0.f : expf(old_max - new_max);
      __syncwarp();
      if (half == 0) {
        row_sum[row] = row_sum[row] * rescale + tile_sum;
        row_max[row] = new_max;
        row_rescale[row] = rescale;
      }
    }
    __syncthreads();

    // acc = acc * rescale + P V for rows ty * kRows + r, columns tx + 8 c.
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float rescale = row_rescale[ty * kRows + r];
#pragma unroll
      for (int c = 0; c < kDims; ++c) acc[r][c] *= rescale;
    }
    const int tile_keys = min(kBlockK, key_end - k0);
    for (int j = 0; j < tile_keys; ++j) {
      float pv[kRows], vv[kDims];
#pragma unroll
      for (int r = 0; r < kRows; ++r) pv[r] = p_tile[(ty * kRows + r) * kScoreStride + j];
#pragma unroll
      for (int c = 0; c < kDims; ++c) vv[c] = v_tile[j * kStride + tx + kThreadCols * c];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kDims; ++c) acc[r][c] = fmaf(pv[r], vv[c], acc[r][c]);
    }
  }
  __syncthreads();

  scalar_t* out = (direction == 0 ? p.out[0] : p.out[1]) + slice_offset;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = ty * kRows + r;
    if (q0 + row >= length) continue;
    const float sum = row_sum[row];
    const float inv = sum > 0.f ? 1.f / sum : 0.f;  // fully masked rows: zeros
#pragma unroll
    for (int c = 0; c < kDims; ++c) {
      const int d = tx + kThreadCols * c;
      if (d < head_dim) out[(q0 + row) * head_dim + d] = static_cast<scalar_t>(acc[r][c] * inv);
    }
  }
  if (tid < kBlockQ && q0 + tid < length) {
    const float sum = row_sum[tid];
    p.lse[(static_cast<int64_t>(direction) * gridDim.y + bh) * length + q0 + tid] =
        sum > 0.f ? row_max[tid] + logf(sum) : inf;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_self_attention_fwd_cuda(
    const at::Tensor& q_a_in, const at::Tensor& k_a_in, const at::Tensor& v_a_in, const at::Tensor& q_b_in,
    const at::Tensor& k_b_in, const at::Tensor& v_b_in, const std::optional<at::Tensor>& key_padding_mask,
    bool causal, double scale) {
  check_attention_inputs({&q_a_in, &k_a_in, &v_a_in, &q_b_in, &k_b_in, &v_b_in}, key_padding_mask);
  TORCH_CHECK(q_a_in.is_cuda(), "cross_self_attention_fwd (CUDA kernel): q_a is on ", q_a_in.device());
  TORCH_CHECK(q_a_in.scalar_type() != at::kDouble,
              "cross_self_attention_fwd (CUDA kernel): float64 is not supported on CUDA (use float32)");
  const c10::cuda::CUDAGuard guard(q_a_in.device());
  const at::Tensor q_a = q_a_in.contiguous(), k_a = k_a_in.contiguous(), v_a = v_a_in.contiguous();
  const at::Tensor q_b = q_b_in.contiguous(), k_b = k_b_in.contiguous(), v_b = v_b_in.contiguous();
  const int64_t batch = q_a.size(0), heads = q_a.size(1), length = q_a.size(2), head_dim = q_a.size(3);
  TORCH_CHECK(batch * heads < 65536, "cross_self_attention_fwd (CUDA kernel): B * H must be below 65536");
  auto o_a = at::empty_like(q_a);
  auto o_b = at::empty_like(q_a);
  auto lse = at::empty({2, batch, heads, length}, q_a.options().dtype(at::kFloat));
  at::Tensor mask;
  if (key_padding_mask.has_value()) mask = key_padding_mask->contiguous();
  if (batch * heads == 0) return {o_a, o_b, lse};

  SRKD_DISPATCH_CUDA_ATTENTION_TYPES(q_a.scalar_type(), "cross_self_attention_fwd_cuda", [&] {
    ForwardParams<scalar_t> params;
    params.dir[0] = {q_a.const_data_ptr<scalar_t>(), k_b.const_data_ptr<scalar_t>(), v_b.const_data_ptr<scalar_t>()};
    params.dir[1] = {q_b.const_data_ptr<scalar_t>(), k_a.const_data_ptr<scalar_t>(), v_a.const_data_ptr<scalar_t>()};
    params.out[0] = o_a.data_ptr<scalar_t>();
    params.out[1] = o_b.data_ptr<scalar_t>();
    params.lse = lse.data_ptr<float>();
    params.key_mask = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
    params.heads = static_cast<int>(heads);
    params.length = static_cast<int>(length);
    params.head_dim = static_cast<int>(head_dim);
    params.causal = causal;
    params.scale = static_cast<float>(scale);
    dispatch_head_dim(head_dim, [&](auto bucket) {
      using Traits = ForwardTraits<decltype(bucket)::value>;
      auto kernel = cross_attention_forward_kernel<scalar_t, Traits>;
      allow_shared_memory(kernel, Traits::kSharedBytes);
      const dim3 grid((length + Traits::kBlockQ - 1) / Traits::kBlockQ, batch * heads, 2);
      kernel<<<grid, kThreads, Traits::kSharedBytes, at::cuda::getCurrentCUDAStream()>>>(params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {o_a, o_b, lse};
}

}  // namespace
}  // namespace srkd::cuda

TORCH_LIBRARY_IMPL(srkd_ext, CUDA, m) {
  m.impl("cross_self_attention_fwd", &srkd::cuda::cross_self_attention_fwd_cuda);
}
