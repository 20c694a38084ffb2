// Schemas of the cross_self_attention ops (SRCD's two-way attention). Kernels:
// csrc/cpu/cross_self_attention_{fwd,bwd}_cpu.cpp and csrc/cuda/cross_self_attention_{fwd,bwd}_cuda.cu.
// Python face, fake impls and autograd: srkd_ext/ops/cross_self_attention.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(srkd_ext, m) {
  // o_a = softmax(q_a k_b^T * scale + mask) v_b, o_b = softmax(q_b k_a^T * scale + mask) v_a.
  // Inputs [B, H, L, D]; returns o_a, o_b [B, H, L, D] and the row log-sum-exp lse [2, B, H, L]
  // (direction 0 = a queries, 1 = b queries; +inf on rows whose keys are all masked).
  m.def(
      "cross_self_attention_fwd(Tensor q_a, Tensor k_a, Tensor v_a, Tensor q_b, Tensor k_b, Tensor v_b, "
      "Tensor? key_padding_mask, bool causal, float scale) -> (Tensor, Tensor, Tensor)");
  // Gradients (dq_a, dk_a, dv_a, dq_b, dk_b, dv_b), recomputing the probabilities from lse.
  m.def(
      "cross_self_attention_bwd(Tensor grad_o_a, Tensor grad_o_b, Tensor q_a, Tensor k_a, Tensor v_a, "
      "Tensor q_b, Tensor k_b, Tensor v_b, Tensor o_a, Tensor o_b, Tensor lse, Tensor? key_padding_mask, "
      "bool causal, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
