// CUDA backward of cross_self_attention: recomputes the probabilities from the saved row
// log-sum-exp (flash-attention 2 style, float32 accumulation).
//
// Grid (key blocks, B * H, 2 directions); a block keeps dK and dV of its kBlockK keys in
// registers and streams the query tiles that can see them (Q, dO, lse, delta = rowsum(dO * O)).
// dQ sums over key blocks, so blocks add their share into a float32 buffer with atomics; the
// buffer is cast to the input dtype at the end. Direction 0 writes dq_a, dk_b, dv_b and
// direction 1 writes dq_b, dk_a, dv_a: the directions never write the same tensor.
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
struct BackwardParams {
  DirectionPointers<scalar_t> dir[2];
  const scalar_t* grad_out[2];
  const float* lse;      // [2, B, H, L]
  const float* delta;    // [2, B, H, L]
  float* grad_query;     // [2, B, H, L, D] float32, zero-initialised
  scalar_t* grad_key[2];
  scalar_t* grad_value[2];
  const bool* key_mask;  // [B, L] or nullptr
  int heads, length, head_dim;
  bool causal;
  float scale;
};

template <typename scalar_t, typename Traits>
__global__ void __launch_bounds__(kThreads) cross_attention_backward_kernel(const BackwardParams<scalar_t> p) {
  constexpr int kBlockQ = Traits::kBlockQ, kBlockK = Traits::kBlockK, kHeadDim = Traits::kHeadDim;
  constexpr int kRows = Traits::kRowsPerThread, kKeys = Traits::kKeysPerThread;
  constexpr int kKeyRows = Traits::kKeyRowsPerThread, kDims = Traits::kDimsPerThread;
  constexpr int kStride = Traits::kRowStride, kScoreStride = Traits::kScoreStride;
  extern __shared__ float shared[];
  float* q_tile = shared;                            // [kBlockQ][kStride]
  float* do_tile = q_tile + kBlockQ * kStride;       // [kBlockQ][kStride]
  float* k_tile = do_tile + kBlockQ * kStride;       // [kBlockK][kStride]
  float* v_tile = k_tile + kBlockK * kStride;        // [kBlockK][kStride]
  float* p_tile = v_tile + kBlockK * kStride;        // [kBlockQ][kScoreStride]
  float* ds_tile = p_tile + kBlockQ * kScoreStride;  // [kBlockQ][kScoreStride]
  float* lse_tile = ds_tile + kBlockQ * kScoreStride;  // [kBlockQ]
  float* delta_tile = lse_tile + kBlockQ;            // [kBlockQ]

  const int tid = threadIdx.x, ty = tid / kThreadCols, tx = tid % kThreadCols;
  const int direction = blockIdx.z, bh = blockIdx.y, batch = bh / p.heads;
  const int length = p.length, head_dim = p.head_dim;
  const int k0 = blockIdx.x * kBlockK;
  const int64_t slice_offset = static_cast<int64_t>(bh) * length * head_dim;
  const int64_t row_offset = (static_cast<int64_t>(direction) * gridDim.y + bh) * length;  // into lse, delta
  // Selected by value: indexing the parameter arrays with a runtime index would copy them to local memory.
  const DirectionPointers<scalar_t> ptr = direction == 0 ? p.dir[0] : p.dir[1];
  const scalar_t* query = ptr.query + slice_offset;
  const scalar_t* grad_out = (direction == 0 ? p.grad_out[0] : p.grad_out[1]) + slice_offset;
  const bool* mask_row = p.key_mask != nullptr ? p.key_mask + static_cast<int64_t>(batch) * length : nullptr;

  for (int e = tid; e < kBlockK * kHeadDim; e += kThreads) {
    const int r = e / kHeadDim, d = e % kHeadDim;
    const bool inside = k0 + r < length && d < head_dim;
    k_tile[r * kStride + d] = inside ? static_cast<float>(ptr.key[slice_offset + (k0 + r) * head_dim + d]) : 0.f;
    v_tile[r * kStride + d] = inside ? static_cast<float>(ptr.value[slice_offset + (k0 + r) * head_dim + d]) : 0.f;
  }
  // dK, dV of keys ty * kKeyRows + r, columns tx + 8 c.
  float grad_k[kKeyRows][kDims], grad_v[kKeyRows][kDims];
#pragma unroll
  for (int r = 0; r < kKeyRows; ++r)
#pragma unroll
    for (int c = 0; c < kDims; ++c) grad_k[r][c] = grad_v[r][c] = 0.f;

  // Under the causal mask only queries i >= k0 see these keys.
  const int first_tile = p.causal ? (k0 / kBlockQ) * kBlockQ : 0;
  for (int q0 = first_tile; q0 < length; q0 += kBlockQ) {
    __syncthreads();  // the previous query tile is no longer read
    for (int e = tid; e < kBlockQ * kHeadDim; e += kThreads) {
      const int r = e / kHeadDim, d = e % kHeadDim;
      const bool inside = q0 + r < length && d < head_dim;
      q_tile[r * kStride + d] = inside ? static_cast<float>(query[(q0 + r) * head_dim + d]) : 0.f;
      do_tile[r * kStride + d] = inside ? static_cast<float>(grad_out[(q0 + r) * head_dim + d]) : 0.f;
    }
    if (tid < kBlockQ) {
      const bool inside = q0 + tid < length;
      lse_tile[tid] = inside ? p.lse[row_offset + q0 + tid] : INFINITY;  // +inf: probability 0
      delta_tile[tid] = inside ? p.delta[row_offset + q0 + tid] : 0.f;
    }
    __syncthreads();

    // S = Q K^T and dP = dO V^T for rows ty * kRows + r, keys tx + 8 c.
    float s[kRows][kKeys], dp[kRows][kKeys];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kKeys; ++c) s[r][c] = dp[r][c] = 0.f;
    for (int d = 0; d < head_dim; ++d) {
      float qv[kRows], gv[kRows], kv[kKeys], vv[kKeys];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        qv[r] = q_tile[(ty * kRows + r) * kStride + d];
        gv[r] = do_tile[(ty * kRows + r) * kStride + d];
      }
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        kv[c] = k_tile[(tx + kThreadCols * c) * kStride + d];
        vv[c] = v_tile[(tx + kThreadCols * c) * kStride + d];
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kKeys; ++c) {
          s[r][c] = fmaf(qv[r], kv[c], s[r][c]);
          dp[r][c] = fmaf(gv[r], vv[c], dp[r][c]);
        }
    }
    // P = exp(S * scale - lse) where allowed; dS = P (dP - delta) * scale.
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = ty * kRows + r;
      const float lse = lse_tile[row], delta = delta_tile[row];
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        const int col = tx + kThreadCols * c;
        const float prob =
            key_allowed(q0 + row, k0 + col, length, p.causal, mask_row) ? expf(s[r][c] * p.scale - lse) : 0.f;
        p_tile[row * kScoreStride + col] = prob;
        ds_tile[row * kScoreStride + col] = prob * (dp[r][c] - delta) * p.scale;
      }
    }
    __syncthreads();

    // dV += P^T dO, dK += dS^T Q.
    for (int i = 0; i < kBlockQ; ++i) {
      float pv[kKeyRows], dsv[kKeyRows], gv[kDims], qv[kDims];
#pragma unroll
      for (int r = 0; r < kKeyRows; ++r) {
        pv[r] = p_tile[i * kScoreStride + ty * kKeyRows + r];
        dsv[r] = ds_tile[i * kScoreStride + ty * kKeyRows + r];
      }
#pragma unroll
      for (int c = 0; c < kDims; ++c) {
        gv[c] = do_tile[i * kStride + tx + kThreadCols * c];
        qv[c] = q_tile[i * kStride + tx + kThreadCols * c];
      }
#pragma unroll
      for (int r = 0; r < kKeyRows; ++r)
#pragma unroll
        for (int c = 0; c < kDims; ++c) {
          grad_v[r][c] = fmaf(pv[r], gv[c], grad_v[r][c]);
          grad_k[r][c] = fmaf(dsv[r], qv[c], grad_k[r][c]);
        }
    }

    // dQ += dS K for rows ty * kRows + r, columns tx + 8 c, added into the float32 buffer.
    float grad_q[kRows][kDims];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kDims; ++c) grad_q[r][c] = 0.f;
    for (int j = 0; j < kBlockK; ++j) {
      float dsv[kRows], kv[kDims];
#pragma unroll
      for (int r = 0; r < kRows; ++r) dsv[r] = ds_tile[(ty * kRows + r) * kScoreStride + j];
#pragma unroll
      for (int c = 0; c < kDims; ++c) kv[c] = k_tile[j * kStride + tx + kThreadCols * c];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kDims; ++c) grad_q[r][c] = fmaf(dsv[r], kv[c], grad_q[r][c]);
    }
    float* grad_query = p.grad_query + (row_offset + q0) * head_dim;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = ty * kRows + r;
      if (q0 + row >= length) continue;
#pragma unroll
      for (int c = 0; c < kDims; ++c) {
        const int d = tx + kThreadCols * c;
        if (d < head_dim) atomicAdd(grad_query + row * head_dim + d, grad_q[r][c]);
      }
    }
  }

  scalar_t* grad_key = (direction == 0 ? p.grad_key[0] : p.grad_key[1]) + slice_offset;
  scalar_t* grad_value = (direction == 0 ? p.grad_value[0] : p.grad_value[1]) + slice_offset;
#pragma unroll
  for (int r = 0; r < kKeyRows; ++r) {
    const int key_row = k0 + ty * kKeyRows + r;
    if (key_row >= length) continue;
#pragma unroll
    for (int c = 0; c < kDims; ++c) {
      const int d = tx + kThreadCols * c;
      if (d < head_dim) {
        grad_key[key_row * head_dim + d] = static_cast<scalar_t>(grad_k[r][c]);
        grad_value[key_row * head_dim + d] = static_cast<scalar_t>(grad_v[r][c]);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_self_attention_bwd_cuda(
    const at::Tensor& grad_o_a_in, const at::Tensor& grad_o_b_in, const at::Tensor& q_a_in, const at::Tensor& k_a_in,
    const at::Tensor& v_a_in, const at::Tensor& q_b_in, const at::Tensor& k_b_in, const at::Tensor& v_b_in,
    const at::Tensor& o_a, const at::Tensor& o_b, const at::Tensor& lse_in,
    const std::optional<at::Tensor>& key_padding_mask, bool causal, double scale) {
  check_attention_inputs({&q_a_in, &k_a_in, &v_a_in, &q_b_in, &k_b_in, &v_b_in}, key_padding_mask);
  check_backward_extras(q_a_in, grad_o_a_in, grad_o_b_in, o_a, o_b, lse_in);
  TORCH_CHECK(q_a_in.is_cuda(), "cross_self_attention_bwd (CUDA kernel): q_a is on ", q_a_in.device());
  TORCH_CHECK(q_a_in.scalar_type() != at::kDouble,
              "cross_self_attention_bwd (CUDA kernel): float64 is not supported on CUDA (use float32)");
  const c10::cuda::CUDAGuard guard(q_a_in.device());
  const at::Tensor q_a = q_a_in.contiguous(), k_a = k_a_in.contiguous(), v_a = v_a_in.contiguous();
  const at::Tensor q_b = q_b_in.contiguous(), k_b = k_b_in.contiguous(), v_b = v_b_in.contiguous();
  const at::Tensor grad_o_a = grad_o_a_in.contiguous(), grad_o_b = grad_o_b_in.contiguous();
  const at::Tensor lse = lse_in.contiguous();
  const int64_t batch = q_a.size(0), heads = q_a.size(1), length = q_a.size(2), head_dim = q_a.size(3);
  TORCH_CHECK(batch * heads < 65536, "cross_self_attention_bwd (CUDA kernel): B * H must be below 65536");

  // delta = rowsum(dO * O) per direction, [2, B, H, L] float32: a plain reduction, left to ATen.
  const at::Tensor delta = at::stack({(grad_o_a.to(at::kFloat) * o_a.to(at::kFloat)).sum(-1),
                                      (grad_o_b.to(at::kFloat) * o_b.to(at::kFloat)).sum(-1)})
                               .contiguous();
  at::Tensor grad_query = at::zeros({2, batch, heads, length, head_dim}, q_a.options().dtype(at::kFloat));
  at::Tensor dk_a = at::empty_like(q_a), dv_a = at::empty_like(q_a), dk_b = at::empty_like(q_a),
             dv_b = at::empty_like(q_a);
  at::Tensor mask;
  if (key_padding_mask.has_value()) mask = key_padding_mask->contiguous();

  if (batch * heads > 0) {
    SRKD_DISPATCH_CUDA_ATTENTION_TYPES(q_a.scalar_type(), "cross_self_attention_bwd_cuda", [&] {
      BackwardParams<scalar_t> params;
      params.dir[0] = {q_a.const_data_ptr<scalar_t>(), k_b.const_data_ptr<scalar_t>(), v_b.const_data_ptr<scalar_t>()};
      params.dir[1] = {q_b.const_data_ptr<scalar_t>(), k_a.const_data_ptr<scalar_t>(), v_a.const_data_ptr<scalar_t>()};
      params.grad_out[0] = grad_o_a.const_data_ptr<scalar_t>();
      params.grad_out[1] = grad_o_b.const_data_ptr<scalar_t>();
      params.lse = lse.const_data_ptr<float>();
      params.delta = delta.const_data_ptr<float>();
      params.grad_query = grad_query.data_ptr<float>();
      params.grad_key[0] = dk_b.data_ptr<scalar_t>();
      params.grad_key[1] = dk_a.data_ptr<scalar_t>();
      params.grad_value[0] = dv_b.data_ptr<scalar_t>();
      params.grad_value[1] = dv_a.data_ptr<scalar_t>();
      params.key_mask = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
      params.heads = static_cast<int>(heads);
      params.length = static_cast<int>(length);
      params.head_dim = static_cast<int>(head_dim);
      params.causal = causal;
      params.scale = static_cast<float>(scale);
      dispatch_head_dim(head_dim, [&](auto bucket) {
        using Traits = BackwardTraits<decltype(bucket)::value>;
        auto kernel = cross_attention_backward_kernel<scalar_t, Traits>;
        allow_shared_memory(kernel, Traits::kSharedBytes);
        const dim3 grid((length + Traits::kBlockK - 1) / Traits::kBlockK, batch * heads, 2);
        kernel<<<grid, kThreads, Traits::kSharedBytes, at::cuda::getCurrentCUDAStream()>>>(params);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  // Copies (never views of the shared buffer): an op's outputs must not alias each other.
  at::Tensor dq_a = grad_query.select(0, 0).to(q_a.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  at::Tensor dq_b = grad_query.select(0, 1).to(q_a.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  return {dq_a, dk_a, dv_a, dq_b, dk_b, dv_b};
}

}  // namespace
}  // namespace srkd::cuda

TORCH_LIBRARY_IMPL(srkd_ext, CUDA, m) {
  m.impl("cross_self_attention_bwd", &srkd::cuda::cross_self_attention_bwd_cuda);
}
