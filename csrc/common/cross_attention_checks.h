// Argument checks shared by the CPU and CUDA cross_self_attention ops. The Python wrapper
// checks first with friendlier messages; these keep a direct torch.ops call from reading
// out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>

#include "common/cross_attention_limits.h"

namespace srkd {

inline void check_same_layout(const at::Tensor& ref, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, "cross_self_attention: ", name, " must be 4-D [B, H, L, D], got ", t.sizes());
  TORCH_CHECK(t.sizes() == ref.sizes(), "cross_self_attention: ", name, " has shape ", t.sizes(),
              " but q_a has ", ref.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "cross_self_attention: ", name, " has dtype ",
              t.scalar_type(), " but q_a has ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "cross_self_attention: ", name, " is on ", t.device(),
              " but q_a is on ", ref.device());
}

// q_a, k_a, v_a, q_b, k_b, v_b: [B, H, L, D], one dtype and device; mask: [B, L] bool.
inline void check_attention_inputs(const std::array<const at::Tensor*, 6>& qkv,
                                   const std::optional<at::Tensor>& key_padding_mask) {
  static constexpr const char* kNames[6] = {"q_a", "k_a", "v_a", "q_b", "k_b", "v_b"};
  const at::Tensor& ref = *qkv[0];
  TORCH_CHECK(ref.dim() == 4, "cross_self_attention: q_a must be 4-D [B, H, L, D], got ", ref.sizes());
  for (int i = 1; i < 6; ++i) check_same_layout(ref, *qkv[i], kNames[i]);
  const auto dtype = ref.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
              "cross_self_attention: unsupported dtype ", dtype, " (float32, float64, float16, bfloat16)");
  TORCH_CHECK(ref.size(2) >= 1 && ref.size(3) >= 1, "cross_self_attention: q_a must have L >= 1 and D >= 1");
  TORCH_CHECK(ref.size(3) <= kMaxHeadDim, "cross_self_attention: head dim ", ref.size(3),
              " exceeds the supported maximum ", kMaxHeadDim);
  if (key_padding_mask.has_value()) {
    const at::Tensor& mask = *key_padding_mask;
    TORCH_CHECK(mask.scalar_type() == at::kBool, "cross_self_attention: key_padding_mask must be bool, got ",
                mask.scalar_type());
    TORCH_CHECK(mask.dim() == 2 && mask.size(0) == ref.size(0) && mask.size(1) == ref.size(2),
                "cross_self_attention: key_padding_mask must have shape [B, L] = [", ref.size(0), ", ",
                ref.size(2), "], got ", mask.sizes());
    TORCH_CHECK(mask.device() == ref.device(), "cross_self_attention: key_padding_mask is on ", mask.device(),
                " but q_a is on ", ref.device());
  }
}

// The log-sum-exp saved by the forward: [2, B, H, L], float64 for float64 inputs, else float32.
inline at::ScalarType lse_dtype_for(at::ScalarType input_dtype) {
  return input_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_backward_extras(const at::Tensor& q_a, const at::Tensor& grad_o_a,
                                  const at::Tensor& grad_o_b, const at::Tensor& o_a,
                                  const at::Tensor& o_b, const at::Tensor& lse) {
  check_same_layout(q_a, grad_o_a, "grad_o_a");
  check_same_layout(q_a, grad_o_b, "grad_o_b");
  check_same_layout(q_a, o_a, "o_a");
  check_same_layout(q_a, o_b, "o_b");
  TORCH_CHECK(lse.dim() == 4 && lse.size(0) == 2 && lse.size(1) == q_a.size(0) && lse.size(2) == q_a.size(1) &&
                  lse.size(3) == q_a.size(2),
              "cross_self_attention backward: lse must have shape [2, B, H, L], got ", lse.sizes());
  TORCH_CHECK(lse.scalar_type() == lse_dtype_for(q_a.scalar_type()),
              "cross_self_attention backward: lse has dtype ", lse.scalar_type());
  TORCH_CHECK(lse.device() == q_a.device(), "cross_self_attention backward: lse is on ", lse.device());
}

}  // namespace srkd
