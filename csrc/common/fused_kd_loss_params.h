// Options and per-row math of the fused KD loss shared by the CPU and CUDA kernels
// (DESIGN.md "Op 1"). Plain data and inline functions usable on host and device.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SRKD_KD_HD __host__ __device__
#else
#define SRKD_KD_HD
#endif

namespace srkd::kd {

// Maximum number of teachers the kernels keep per-row state for on the stack. The Python face
// names the limit in its error; nobody distils from more than a handful of teachers.
constexpr int kMaxTeachers = 32;

struct KdLossParams {
  double tau;
  double inv_tau;
  double alpha;
  int64_t num_items;     // N
  int64_t num_teachers;  // T
  int64_t top_k;         // k, already clamped to N (dense) or the cache size
  int64_t gate_rank;     // 0: no gate
  int64_t ignore_index;
  bool confidence;       // weights from each teacher's temperature-1 probability of the target
  bool has_weights;      // fixed per-teacher weights (log_weights below)
  // exp(s) = exp(s / tau)^tau_power when tau is a small integer: one exp per student logit
  // instead of two. 0 when tau is not one of 1..4.
  int tau_power;
  double log_weights[kMaxTeachers];  // log w_t (-inf for w_t = 0) when has_weights
};

inline int small_integer_power(double tau) {
  for (int n = 1; n <= 4; ++n) {
    if (tau == static_cast<double>(n)) return n;
  }
  return 0;
}

// Per-teacher facts about one row that decide its weight in the mixture.
template <typename acc_t>
struct TeacherRowFacts {
  acc_t max_logit;       // max_j z[t,b,j] (= max over the selection)
  acc_t sel_sum;         // sum over S_tb of exp((z_j - max_logit) / tau)
  acc_t log_confidence;  // log of the temperature-1 probability of y_b (-inf: 0), if asked
  bool active;           // passed the gate
  bool has_nan;
};

// Renormalised teacher weights of one row, in log space so that tiny confidences (1e-50 for
// every teacher, say) still give a proper mixture. Writes w[t] (0 for inactive teachers) and
// returns false when the row has no KD term (no active teacher with positive weight).
template <typename acc_t>
SRKD_KD_HD inline bool mixture_weights(const KdLossParams& p, const acc_t* log_w, const bool* active,
                                       acc_t* w) {
  const acc_t neg_inf = -INFINITY;
  acc_t top = neg_inf;
  for (int64_t t = 0; t < p.num_teachers; ++t) {
    if (active[t] && log_w[t] > top) top = log_w[t];
  }
  if (!(top > neg_inf)) {
    for (int64_t t = 0; t < p.num_teachers; ++t) w[t] = 0;
    return false;
  }
  acc_t total = 0;
  for (int64_t t = 0; t < p.num_teachers; ++t) {
    w[t] = (active[t] && log_w[t] > neg_inf) ? static_cast<acc_t>(std::exp(log_w[t] - top)) : acc_t(0);
    total += w[t];
  }
  for (int64_t t = 0; t < p.num_teachers; ++t) w[t] /= total;
  return true;
}

// The teacher's log weight before renormalisation: uniform 0, log w_t, or its log confidence.
template <typename acc_t>
SRKD_KD_HD inline acc_t teacher_log_weight(const KdLossParams& p, int64_t t, acc_t log_confidence) {
  if (p.confidence) return log_confidence;
  if (p.has_weights) return static_cast<acc_t>(p.log_weights[t]);
  return acc_t(0);
}

}  // namespace srkd::kd
