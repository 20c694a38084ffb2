// Schemas of the fused KD loss (SRMS; DESIGN.md "Op 1"). Kernels: csrc/cpu/fused_kd_loss_cpu.cpp,
// csrc/cuda/fused_kd_loss_cuda.cu; Python face, fake functions and autograd:
// srkd_ext/ops/fused_kd_loss.py.
//
// Both ops return
//   loss     the reduced loss: 0-dim for "mean" (over non-ignored rows; 0 when there are none)
//            and "sum", [B] for "none"; per row alpha * CE + (1 - alpha) * tau^2 * KL (0 on
//            ignored rows, NaN on rows holding a NaN),
//   grad     [B, N] d loss / d student_logits in the student's dtype for an upstream gradient of
//            1 (of 1 per row for "none"): the backward only scales it,
//   row_ce   [B], row_kd [B] (tau^2 * KL, 0 without a KD term), for logging,
//   active   [T, B] bool: teacher t passed the gate on row b.
// loss/row_ce/row_kd are float32 (float64 for float64 students). top_k is already clamped to
// N (dense) or k (cache); gate_rank None means no gate.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(srkd_ext, m) {
  m.def(
      "fused_kd_loss_dense(Tensor student_logits, Tensor[] teacher_logits, Tensor target, "
      "float temperature, int top_k, int? gate_rank, float[]? teacher_weights, "
      "bool confidence_weights, float alpha, int ignore_index, str reduction) "
      "-> (Tensor loss, Tensor grad, Tensor row_ce, Tensor row_kd, Tensor active)");
  m.def(
      "fused_kd_loss_cached(Tensor student_logits, Tensor teacher_indices, Tensor teacher_logits, "
      "Tensor target, float temperature, int top_k, int? gate_rank, float[]? teacher_weights, "
      "bool confidence_weights, float alpha, int ignore_index, str reduction) "
      "-> (Tensor loss, Tensor grad, Tensor row_ce, Tensor row_kd, Tensor active)");
}
