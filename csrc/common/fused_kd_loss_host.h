// Host-side argument checks, parameter packing and output allocation of the fused KD loss,
// shared by the CPU and CUDA registrations. The Python face validates first with friendlier
// messages; these checks keep direct torch.ops calls from reading out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "common/fused_kd_loss_params.h"

namespace srkd::kd {

using KdOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline at::ScalarType accumulation_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_student_and_target(const at::Tensor& student, const at::Tensor& target) {
  TORCH_CHECK(student.dim() == 2, "fused_kd_loss: student_logits must be [B, N], got ", student.sizes());
  TORCH_CHECK(at::isFloatingType(student.scalar_type()),
              "fused_kd_loss: student_logits must be floating, got ", student.scalar_type());
  TORCH_CHECK(student.size(1) >= 1, "fused_kd_loss: student_logits needs N >= 1 items");
  TORCH_CHECK(target.dim() == 1 && target.size(0) == student.size(0),
              "fused_kd_loss: target must be [B] = [", student.size(0), "], got ", target.sizes());
  TORCH_CHECK(target.scalar_type() == at::kLong, "fused_kd_loss: target must be int64, got ",
              target.scalar_type());
  TORCH_CHECK(target.device() == student.device(), "fused_kd_loss: target is on ", target.device(),
              ", student_logits on ", student.device());
}

inline KdLossParams make_params(const at::Tensor& student, int64_t num_teachers, int64_t k_limit,
                                double temperature, int64_t top_k, std::optional<int64_t> gate_rank,
                                const std::optional<at::ArrayRef<double>>& teacher_weights,
                                bool confidence, double alpha, int64_t ignore_index) {
  TORCH_CHECK(num_teachers >= 1, "fused_kd_loss: teacher_logits has T = 0 teachers; need T >= 1");
  TORCH_CHECK(num_teachers <= kMaxTeachers, "fused_kd_loss: teacher_logits has T = ", num_teachers,
              " teachers; the kernels support at most ", kMaxTeachers);
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0,
              "fused_kd_loss: temperature must be finite and > 0, got ", temperature);
  TORCH_CHECK(top_k >= 1 && top_k <= k_limit, "fused_kd_loss: top_k must be in [1, ", k_limit, "], got ",
              top_k);
  TORCH_CHECK(!gate_rank.has_value() || *gate_rank >= 1, "fused_kd_loss: gate_rank must be >= 1");
  TORCH_CHECK(alpha >= 0 && alpha <= 1, "fused_kd_loss: alpha must be in [0, 1], got ", alpha);
  TORCH_CHECK(!(confidence && teacher_weights.has_value()),
              "fused_kd_loss: teacher_weights and confidence weights are exclusive");
  KdLossParams p{};
  p.tau = temperature;
  p.inv_tau = 1.0 / temperature;
  p.alpha = alpha;
  p.num_items = student.size(1);
  p.num_teachers = num_teachers;
  p.top_k = top_k;
  p.gate_rank = gate_rank.value_or(0);
  p.ignore_index = ignore_index;
  p.confidence = confidence;
  p.has_weights = teacher_weights.has_value();
  p.tau_power = small_integer_power(temperature);
  if (p.has_weights) {
    const auto& w = *teacher_weights;
    TORCH_CHECK(static_cast<int64_t>(w.size()) == num_teachers, "fused_kd_loss: teacher_weights has ",
                w.size(), " entries for T = ", num_teachers, " teachers");
    bool any_positive = false;
    for (int64_t t = 0; t < num_teachers; ++t) {
      TORCH_CHECK(std::isfinite(w[t]) && w[t] >= 0, "fused_kd_loss: teacher_weights must be finite and >= 0");
      any_positive = any_positive || w[t] > 0;
      p.log_weights[t] = w[t] > 0 ? std::log(w[t]) : -INFINITY;
    }
    TORCH_CHECK(any_positive, "fused_kd_loss: teacher_weights are all zero");
  }
  return p;
}

inline void check_dense_teachers(const at::Tensor& student, at::TensorList teachers) {
  for (size_t t = 0; t < teachers.size(); ++t) {
    TORCH_CHECK(teachers[t].sizes() == student.sizes(), "fused_kd_loss: teacher_logits[", t, "] has shape ",
                teachers[t].sizes(), ", expected ", student.sizes());
    TORCH_CHECK(teachers[t].scalar_type() == student.scalar_type(), "fused_kd_loss: teacher_logits[", t,
                "] has dtype ", teachers[t].scalar_type(), ", student_logits ", student.scalar_type());
    TORCH_CHECK(teachers[t].device() == student.device(), "fused_kd_loss: teacher_logits[", t, "] is on ",
                teachers[t].device(), ", student_logits on ", student.device());
  }
}

inline void check_cached_teachers(const at::Tensor& student, const at::Tensor& indices,
                                  const at::Tensor& logits) {
  TORCH_CHECK(indices.dim() == 3 && logits.sizes() == indices.sizes(),
              "fused_kd_loss: teacher_indices and teacher_logits must both be [T, B, k], got ", indices.sizes(),
              " and ", logits.sizes());
  TORCH_CHECK(indices.size(1) == student.size(0), "fused_kd_loss: the teacher cache has B = ", indices.size(1),
              ", student_logits ", student.size(0));
  TORCH_CHECK(indices.size(2) >= 1, "fused_kd_loss: the teacher cache holds k = 0 items");
  TORCH_CHECK(indices.scalar_type() == at::kLong, "fused_kd_loss: teacher_indices must be int64");
  TORCH_CHECK(logits.scalar_type() == accumulation_type(student.scalar_type()),
              "fused_kd_loss: cached teacher_logits must be ", accumulation_type(student.scalar_type()),
              " for a ", student.scalar_type(), " student, got ", logits.scalar_type());
  TORCH_CHECK(indices.device() == student.device() && logits.device() == student.device(),
              "fused_kd_loss: the teacher cache must be on the student's device ", student.device());
}

enum class Reduction { kMean, kSum, kNone };

inline Reduction parse_reduction(c10::string_view reduction) {
  if (reduction == "mean") return Reduction::kMean;
  if (reduction == "sum") return Reduction::kSum;
  TORCH_CHECK(reduction == "none", "fused_kd_loss: reduction must be 'mean', 'sum' or 'none', got '", reduction,
              "'");
  return Reduction::kNone;
}

// Outputs: per-row loss (becomes the loss for "none"), grad, row_ce, row_kd (accumulation
// dtype) and active [T, B].
inline KdOutputs allocate_outputs(const at::Tensor& student, int64_t num_teachers) {
  const auto acc = student.options().dtype(accumulation_type(student.scalar_type()));
  const int64_t B = student.size(0);
  return {at::empty({B}, acc), at::empty_like(student, at::MemoryFormat::Contiguous), at::empty({B}, acc),
          at::empty({B}, acc), at::empty({num_teachers, B}, student.options().dtype(at::kBool))};
}

// The number of rows whose target is not ignore_index (the divisor of "mean").
inline int64_t count_valid_rows(const at::Tensor& target, int64_t ignore_index) {
  return target.ne(ignore_index).sum().item<int64_t>();
}

// Scale of each row's gradient for an upstream gradient of 1: 1 / (non-ignored rows) for "mean".
inline double row_gradient_scale(Reduction reduction, int64_t n_valid) {
  return reduction == Reduction::kMean ? 1.0 / static_cast<double>(std::max<int64_t>(n_valid, 1)) : 1.0;
}

// Replaces the per-row loss (first output) by the reduced loss.
inline void reduce_rows(KdOutputs& outputs, Reduction reduction, int64_t n_valid) {
  at::Tensor& rows = std::get<0>(outputs);
  if (reduction == Reduction::kNone) return;
  at::Tensor total = rows.sum();
  if (reduction == Reduction::kMean) total = total / static_cast<double>(std::max<int64_t>(n_valid, 1));
  rows = total;
}

// A validated call: its reduction and the kernel parameters. The CPU and CUDA entry points both
// start here, so the two backends accept and reject exactly the same arguments.
struct KdCall {
  Reduction reduction;
  KdLossParams params;
};

inline KdCall prepare_dense_call(const at::Tensor& student, at::TensorList teachers, const at::Tensor& target,
                                 double temperature, int64_t top_k, std::optional<int64_t> gate_rank,
                                 const std::optional<at::ArrayRef<double>>& teacher_weights, bool confidence,
                                 double alpha, int64_t ignore_index, c10::string_view reduction) {
  check_student_and_target(student, target);
  check_dense_teachers(student, teachers);
  return {parse_reduction(reduction), make_params(student, teachers.size(), student.size(1), temperature, top_k,
                                                  gate_rank, teacher_weights, confidence, alpha, ignore_index)};
}

inline KdCall prepare_cached_call(const at::Tensor& student, const at::Tensor& indices, const at::Tensor& logits,
                                  const at::Tensor& target, double temperature, int64_t top_k,
                                  std::optional<int64_t> gate_rank,
                                  const std::optional<at::ArrayRef<double>>& teacher_weights, bool confidence,
                                  double alpha, int64_t ignore_index, c10::string_view reduction) {
  check_student_and_target(student, target);
  check_cached_teachers(student, indices, logits);
  const int64_t kc = indices.size(2);
  // A cache only knows each teacher's top kc items, so it cannot rank the target any deeper.
  TORCH_CHECK(!gate_rank.has_value() || *gate_rank <= kc, "fused_kd_loss: gate_rank = ", gate_rank.value_or(0),
              " exceeds the cache size k = ", kc);
  return {parse_reduction(reduction), make_params(student, indices.size(0), kc, temperature, top_k, gate_rank,
                                                  teacher_weights, confidence, alpha, ignore_index)};
}

inline std::vector<at::Tensor> contiguous_teachers(at::TensorList teachers) {
  std::vector<at::Tensor> out;
  out.reserve(teachers.size());
  for (const auto& z : teachers) out.push_back(z.contiguous());
  return out;
}

}  // namespace srkd::kd
