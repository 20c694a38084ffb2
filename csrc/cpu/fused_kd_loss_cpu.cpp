// CPU kernels of the fused KD loss (DESIGN.md "Op 1"; schemas in csrc/fused_kd_loss.cpp).
//
// One task per row (at::parallel_for over rows). For a row:
//   1. each teacher row is read once from memory: top-k selection by a vectorised lower bound
//      (group maxima) and a compare-and-skip gather of the few items that reach it, with the
//      max, NaN check and count of logits above the target's (for the gate) in the same passes
//      (fused_kd_loss_select_cpu.cpp); the teacher side never exponentiates all N items unless
//      top_k = N or confidence weights are asked for;
//   2. the selected items of the active teachers are mixed into q (a sorted sparse list);
//   3. the student row is read once from memory: per block of kStudentBlock logits (L1-sized),
//      the block max, then exp((s - m_blk) / tau) stored into the gradient row and summed, with
//      online rescaling of the running sums (exp(s - m) = exp((s - m)/tau)^tau when tau is a
//      small integer, so one exp per logit);
//   4. the gradient row is finished in place from the stored exponentials (L2-resident), then
//      the sparse corrections at the target and at q's items are applied. The gradient is that
//      of the reduced loss ("mean" divides by the non-ignored rows), so that for the usual
//      loss.backward() the backward returns it as it is.
// Accumulation is float32 for float16/bfloat16/float32 inputs (float64 for float64); row
// offsets are int64.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/fused_kd_loss_host.h"
#include "common/fused_kd_loss_params.h"
#include "common/fused_kd_loss_select_cpu.h"

namespace srkd::kd {
namespace {

template <typename acc_t>
using Vec = at::vec::Vectorized<acc_t>;

// Student logits per online-softmax block: 8 KiB of float32 stays in L1 between the block's
// max pass and its exp pass.
constexpr int64_t kStudentBlock = 2048;

template <typename acc_t>
constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

template <typename acc_t>
inline Vec<acc_t> vexp(const Vec<acc_t>& x) {
  return x.exp_u20();  // float: polynomial exp, about 1e-6 relative error; double: Sleef
}

// exp(x) from e = exp(x / tau) when tau = POW is a small integer; POW = 0: a second exp.
template <int POW, typename acc_t>
inline Vec<acc_t> exp_from_tau_power(const Vec<acc_t>& e, const Vec<acc_t>& x) {
  if constexpr (POW == 1) {
    return e;
  } else if constexpr (POW == 2) {
    return e * e;
  } else if constexpr (POW == 3) {
    return e * e * e;
  } else if constexpr (POW == 4) {
    const Vec<acc_t> e2 = e * e;
    return e2 * e2;
  } else {
    return vexp(x);
  }
}

template <int POW>
inline double scalar_exp_from_tau_power(double e, double x) {
  if constexpr (POW == 0) {
    return std::exp(x);
  } else {
    double r = e;
    for (int i = 1; i < POW; ++i) r *= e;
    return r;
  }
}

// NaN-propagating max of the lanes of v and of the scalars z[j0, j1).
template <typename acc_t>
acc_t finish_max(const Vec<acc_t>& v, const acc_t* z, int64_t j0, int64_t j1) {
  acc_t lanes[Vec<acc_t>::size()];
  v.store(lanes);
  acc_t m = kNegInf<acc_t>;
  for (int64_t l = 0; l < Vec<acc_t>::size(); ++l) {
    if (std::isnan(lanes[l])) return lanes[l];
    m = std::max(m, lanes[l]);
  }
  for (int64_t j = j0; j < j1; ++j) {
    if (std::isnan(z[j])) return z[j];
    m = std::max(m, z[j]);
  }
  return m;
}

template <typename acc_t>
acc_t lane_sum(const Vec<acc_t>& v) {
  acc_t lanes[Vec<acc_t>::size()];
  v.store(lanes);
  acc_t s = 0;
  for (int64_t l = 0; l < Vec<acc_t>::size(); ++l) s += lanes[l];
  return s;
}

// sum_j exp((z_j - shift) * scale) over z[0, n).
template <typename acc_t>
double sum_exp(const acc_t* z, int64_t n, acc_t shift, acc_t scale) {
  const Vec<acc_t> sv(shift), cv(scale);
  Vec<acc_t> acc(acc_t(0));
  int64_t j = 0;
  for (; j + Vec<acc_t>::size() <= n; j += Vec<acc_t>::size()) acc = acc + vexp((Vec<acc_t>::loadu(z + j) - sv) * cv);
  double total = lane_sum(acc);
  for (; j < n; ++j) total += std::exp(static_cast<double>((z[j] - shift) * scale));
  return total;
}

struct StudentSums {
  double max;      // M = max_j s_j
  double sum_tau;  // sum_j exp((s_j - M) / tau)
  double sum_one;  // sum_j exp(s_j - M)
  bool has_nan;
};

// Pass 3 of the row: e[j] = exp((s_j - m_blk) / tau) for each block, block maxima into
// block_max, and the row's sums relative to the row max.
template <int POW, typename acc_t>
StudentSums student_exp_pass(const acc_t* s, int64_t n, double inv_tau, acc_t* e, acc_t* block_max) {
  constexpr int64_t W = Vec<acc_t>::size();
  StudentSums r{-std::numeric_limits<double>::infinity(), 0.0, 0.0, false};
  const Vec<acc_t> itv(static_cast<acc_t>(inv_tau));
  for (int64_t lo = 0, bi = 0; lo < n; lo += kStudentBlock, ++bi) {
    const int64_t hi = std::min(n, lo + kStudentBlock);
    Vec<acc_t> mx(kNegInf<acc_t>);
    int64_t j = lo;
    for (; j + W <= hi; j += W) mx = at::vec::maximum(mx, Vec<acc_t>::loadu(s + j));
    const acc_t m = finish_max(mx, s, j, hi);
    block_max[bi] = m;
    if (std::isnan(m)) {
      r.has_nan = true;
      return r;
    }
    if (m == kNegInf<acc_t>) {  // a fully masked block: no mass, and no exp(-inf - -inf)
      std::fill(e + lo, e + hi, acc_t(0));
      continue;
    }
    const Vec<acc_t> mv(m);
    Vec<acc_t> st(acc_t(0)), s1(acc_t(0));
    for (j = lo; j + W <= hi; j += W) {
      const Vec<acc_t> x = Vec<acc_t>::loadu(s + j) - mv;
      const Vec<acc_t> et = vexp(x * itv);
      et.store(e + j);
      st = st + et;
      s1 = s1 + exp_from_tau_power<POW>(et, x);
    }
    double bt = lane_sum(st), b1 = lane_sum(s1);
    for (; j < hi; ++j) {
      const double x = static_cast<double>(s[j]) - m;
      const double et = std::exp(x * inv_tau);
      e[j] = static_cast<acc_t>(et);
      bt += et;
      b1 += scalar_exp_from_tau_power<POW>(et, x);
    }
    if (m > r.max) {  // online rescaling of the running sums to the new max
      r.sum_tau = r.sum_tau * std::exp((r.max - m) * inv_tau) + bt;
      r.sum_one = r.sum_one * std::exp(r.max - m) + b1;
      r.max = m;
    } else {
      r.sum_tau += bt * std::exp((m - r.max) * inv_tau);
      r.sum_one += b1 * std::exp(m - r.max);
    }
  }
  return r;
}

// Pass 4: g_j = c_one * exp(s_j - M) + c_tau * exp((s_j - M) / tau), in place over the stored
// e_j = exp((s_j - m_blk) / tau).
template <int POW, typename acc_t>
void student_grad_pass(const acc_t* s, int64_t n, const StudentSums& sums, double inv_tau, const acc_t* block_max,
                       double c_one, double c_tau, acc_t* g) {
  constexpr int64_t W = Vec<acc_t>::size();
  for (int64_t lo = 0, bi = 0; lo < n; lo += kStudentBlock, ++bi) {
    const int64_t hi = std::min(n, lo + kStudentBlock);
    const double m = block_max[bi];
    if (m == -std::numeric_limits<double>::infinity()) continue;  // e is 0 there, so is g
    const double a = c_one * std::exp(m - sums.max);
    const double c = c_tau * std::exp((m - sums.max) * inv_tau);
    const Vec<acc_t> av(static_cast<acc_t>(a)), cv(static_cast<acc_t>(c)), mv(static_cast<acc_t>(m));
    int64_t j = lo;
    for (; j + W <= hi; j += W) {
      const Vec<acc_t> et = Vec<acc_t>::loadu(g + j);
      Vec<acc_t> x(acc_t(0));
      if constexpr (POW == 0) x = Vec<acc_t>::loadu(s + j) - mv;
      const Vec<acc_t> e1 = exp_from_tau_power<POW>(et, x);
      at::vec::fmadd(av, e1, cv * et).store(g + j);
    }
    for (; j < hi; ++j) {
      const double et = g[j];
      const double e1 = scalar_exp_from_tau_power<POW>(et, static_cast<double>(s[j]) - m);
      g[j] = static_cast<acc_t>(a * e1 + c * et);
    }
  }
}

// A teacher's part of one row after its scan.
template <typename acc_t>
struct TeacherPart {
  TeacherRowFacts<acc_t> facts;
  bool selected_all;  // top_k == N: q gets exp((z - max) / tau) / sel_sum over every item
};

// Buffers one thread reuses for all its rows.
template <typename scalar_t, typename acc_t>
struct RowWorkspace {
  explicit RowWorkspace(int64_t n, int64_t num_teachers, int64_t k)
      : student(std::is_same_v<scalar_t, acc_t> ? 0 : n),
        grad(std::is_same_v<scalar_t, acc_t> ? 0 : n),
        teacher(std::is_same_v<scalar_t, acc_t> ? 0 : n),
        block_max((n + kStudentBlock - 1) / kStudentBlock) {
    sel_items.reserve(num_teachers * std::min(k, n));
    sel_values.reserve(num_teachers * std::min(k, n));
  }
  std::vector<acc_t> student, grad, teacher;  // float32 copies of reduced-precision rows
  std::vector<acc_t> block_max;
  std::vector<acc_t> dense_q;                  // q over all items when top_k = N
  SelectionScratch<acc_t> selection;
  std::vector<int64_t> sel_items;              // [T * k] the teachers' selections
  std::vector<acc_t> sel_values;
  std::vector<std::pair<int64_t, double>> q;   // sparse q: (item, mass), sorted, distinct
  std::vector<int64_t> check_items;            // cache rows: sorted copy for the distinctness check
};

template <typename scalar_t, typename acc_t>
const acc_t* as_acc_row(const scalar_t* row, int64_t n, std::vector<acc_t>& buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return row;
  } else {
    for (int64_t j = 0; j < n; ++j) buffer[j] = static_cast<acc_t>(row[j]);
    return buffer.data();
  }
}

// Outputs of one row, written by finish_row.
template <typename scalar_t, typename acc_t>
struct RowOutputs {
  scalar_t* grad;
  acc_t* row_loss;
  acc_t* row_ce;
  acc_t* row_kd;
};

template <typename scalar_t, typename acc_t>
void write_nan_row(const RowOutputs<scalar_t, acc_t>& out, int64_t n) {
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  *out.row_loss = *out.row_ce = *out.row_kd = nan;
  std::fill(out.grad, out.grad + n, static_cast<scalar_t>(nan));
}

// Sorts the (item, mass) entries of q by item and merges repeated items.
inline void merge_q(std::vector<std::pair<int64_t, double>>& q) {
  std::sort(q.begin(), q.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t out = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    if (out > 0 && q[out - 1].first == q[i].first) {
      q[out - 1].second += q[i].second;
    } else {
      q[out++] = q[i];
    }
  }
  q.resize(out);
}

// Steps 2-4 for one row whose teachers have been scanned (see the file comment).
template <int POW, typename scalar_t, typename acc_t>
void finish_row(const KdLossParams& p, const scalar_t* s_row, int64_t y, const TeacherPart<acc_t>* parts,
                const scalar_t* const* dense_teacher_rows, double grad_scale, RowWorkspace<scalar_t, acc_t>& ws,
                const RowOutputs<scalar_t, acc_t>& out) {
  const int64_t n = p.num_items;
  const int64_t T = p.num_teachers;
  const double tau = p.tau, inv_tau = p.inv_tau, alpha = p.alpha;

  acc_t log_w[kMaxTeachers], w[kMaxTeachers];
  bool active[kMaxTeachers];
  for (int64_t t = 0; t < T; ++t) {
    log_w[t] = teacher_log_weight<acc_t>(p, t, parts[t].facts.log_confidence);
    active[t] = parts[t].facts.active;
  }
  const bool has_kd = mixture_weights<acc_t>(p, log_w, active, w);

  // q_b = sum_t w_t p~_t: sparse over the selections, or dense when top_k = N.
  const bool dense = parts[0].selected_all;
  ws.q.clear();
  if (has_kd && dense) {
    ws.dense_q.assign(n, acc_t(0));
    for (int64_t t = 0; t < T; ++t) {
      if (w[t] == 0) continue;
      const acc_t* z = as_acc_row(dense_teacher_rows[t], n, ws.teacher);
      const acc_t coef = static_cast<acc_t>(w[t] / parts[t].facts.sel_sum);
      const Vec<acc_t> cv(coef), mv(parts[t].facts.max_logit), itv(static_cast<acc_t>(inv_tau));
      acc_t* q = ws.dense_q.data();
      int64_t j = 0;
      for (; j + Vec<acc_t>::size() <= n; j += Vec<acc_t>::size()) {
        at::vec::fmadd(cv, vexp((Vec<acc_t>::loadu(z + j) - mv) * itv), Vec<acc_t>::loadu(q + j)).store(q + j);
      }
      for (; j < n; ++j) q[j] += coef * std::exp((z[j] - parts[t].facts.max_logit) * inv_tau);
    }
  } else if (has_kd) {
    const int64_t k = p.top_k;
    for (int64_t t = 0; t < T; ++t) {
      if (w[t] == 0) continue;
      const double coef = w[t] / parts[t].facts.sel_sum;
      const double mx = parts[t].facts.max_logit;
      for (int64_t i = 0; i < k; ++i) {
        const double mass = coef * std::exp((ws.sel_values[t * k + i] - mx) * inv_tau);
        if (mass > 0) ws.q.emplace_back(ws.sel_items[t * k + i], mass);
      }
    }
    merge_q(ws.q);
  }

  // Student: one read of the row, exponentials kept in the gradient row.
  const acc_t* s = as_acc_row(s_row, n, ws.student);
  acc_t* g = std::is_same_v<scalar_t, acc_t> ? reinterpret_cast<acc_t*>(out.grad) : ws.grad.data();
  const StudentSums sums = student_exp_pass<POW>(s, n, inv_tau, g, ws.block_max.data());
  if (sums.has_nan) {
    write_nan_row(out, n);
    return;
  }
  const double log_sum_tau = std::log(sums.sum_tau);
  const double ce = std::log(sums.sum_one) + sums.max - static_cast<double>(s[y]);
  double kl = 0;
  if (has_kd && dense) {
    for (int64_t j = 0; j < n; ++j) {
      const double qj = ws.dense_q[j];
      if (qj > 0) kl += qj * (std::log(qj) - ((s[j] - sums.max) * inv_tau - log_sum_tau));
    }
  } else {
    for (const auto& [item, qj] : ws.q) kl += qj * (std::log(qj) - ((s[item] - sums.max) * inv_tau - log_sum_tau));
  }
  const double kd = has_kd ? tau * tau * kl : 0.0;
  *out.row_ce = static_cast<acc_t>(ce);
  *out.row_kd = static_cast<acc_t>(kd);
  *out.row_loss = static_cast<acc_t>(alpha * ce + (1 - alpha) * kd);

  // Gradient: alpha (softmax(s) - onehot(y)) + (1 - alpha) tau (softmax(s / tau) - q), times
  // grad_scale (1 / non-ignored rows for "mean").
  const double ce_scale = alpha * grad_scale;
  const double kd_scale = has_kd ? (1 - alpha) * tau * grad_scale : 0.0;
  student_grad_pass<POW>(s, n, sums, inv_tau, ws.block_max.data(), ce_scale / sums.sum_one, kd_scale / sums.sum_tau,
                         g);
  g[y] -= static_cast<acc_t>(ce_scale);
  if (has_kd && dense) {
    const Vec<acc_t> kv(static_cast<acc_t>(kd_scale));
    int64_t j = 0;
    for (; j + Vec<acc_t>::size() <= n; j += Vec<acc_t>::size()) {
      (Vec<acc_t>::loadu(g + j) - kv * Vec<acc_t>::loadu(ws.dense_q.data() + j)).store(g + j);
    }
    for (; j < n; ++j) g[j] -= static_cast<acc_t>(kd_scale) * ws.dense_q[j];
  } else {
    for (const auto& [item, qj] : ws.q) g[item] -= static_cast<acc_t>(kd_scale * qj);
  }
  if constexpr (!std::is_same_v<scalar_t, acc_t>) {
    for (int64_t j = 0; j < n; ++j) out.grad[j] = static_cast<scalar_t>(g[j]);
  }
}

// Common frame of both ops: outputs, the per-row loop, ignored rows, target checks. scan_teachers
// fills parts[t] (and ws.sel_items/values) for row b and returns false for a NaN teacher row.
template <typename scalar_t, typename acc_t, typename ScanTeachers>
void run_rows(const KdLossParams& p, const at::Tensor& student, const at::Tensor& target,
              std::vector<const scalar_t*> dense_teachers, double grad_scale, const KdOutputs& outputs,
              ScanTeachers scan_teachers) {
  const int64_t B = student.size(0), n = p.num_items, T = p.num_teachers;
  const scalar_t* s_all = student.data_ptr<scalar_t>();
  const int64_t* y_all = target.data_ptr<int64_t>();
  scalar_t* grad_all = std::get<1>(outputs).data_ptr<scalar_t>();
  acc_t* loss_all = std::get<0>(outputs).data_ptr<acc_t>();
  acc_t* ce_all = std::get<2>(outputs).data_ptr<acc_t>();
  acc_t* kd_all = std::get<3>(outputs).data_ptr<acc_t>();
  bool* active_all = std::get<4>(outputs).data_ptr<bool>();
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / (n * (T + 1)));

  auto rows = [&](int64_t begin, int64_t end, auto pow_tag) {
    constexpr int POW = decltype(pow_tag)::value;
    RowWorkspace<scalar_t, acc_t> ws(n, T, p.top_k);
    TeacherPart<acc_t> parts[kMaxTeachers];
    const scalar_t* teacher_rows[kMaxTeachers] = {};
    for (int64_t b = begin; b < end; ++b) {
      const int64_t row = b * n;  // int64: B * N may exceed 2^31
      const RowOutputs<scalar_t, acc_t> out{grad_all + row, loss_all + b, ce_all + b, kd_all + b};
      const int64_t y = y_all[b];
      if (y == p.ignore_index) {
        std::fill(out.grad, out.grad + n, scalar_t(0));
        *out.row_loss = *out.row_ce = *out.row_kd = 0;
        for (int64_t t = 0; t < T; ++t) active_all[t * B + b] = false;
        continue;
      }
      TORCH_CHECK(y >= 0 && y < n, "fused_kd_loss: target[", b, "] = ", y, " is outside [0, N) = [0, ", n,
                  ") and is not ignore_index (", p.ignore_index, ")");
      for (size_t t = 0; t < dense_teachers.size(); ++t) teacher_rows[t] = dense_teachers[t] + row;
      const bool finite = scan_teachers(b, y, ws, parts);
      for (int64_t t = 0; t < T; ++t) active_all[t * B + b] = parts[t].facts.active;
      if (!finite) {
        write_nan_row(out, n);
        continue;
      }
      finish_row<POW>(p, s_all + row, y, parts, teacher_rows, grad_scale, ws, out);
    }
  };
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    switch (p.tau_power) {
      case 1: return rows(begin, end, std::integral_constant<int, 1>{});
      case 2: return rows(begin, end, std::integral_constant<int, 2>{});
      case 3: return rows(begin, end, std::integral_constant<int, 3>{});
      case 4: return rows(begin, end, std::integral_constant<int, 4>{});
      default: return rows(begin, end, std::integral_constant<int, 0>{});
    }
  });
}

// Facts of a teacher from its selection: the normaliser of p~ and, if asked, log confidence.
template <typename acc_t>
void selection_facts(const KdLossParams& p, const TeacherScan<acc_t>& scan, const acc_t* selected, int64_t k,
                     TeacherRowFacts<acc_t>& f) {
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += std::exp((selected[i] - scan.max_logit) * p.inv_tau);
  f.sel_sum = static_cast<acc_t>(total);
}

template <typename scalar_t>
void dense_kernel(const KdLossParams& p, const at::Tensor& student, const std::vector<at::Tensor>& teachers,
                  const at::Tensor& target, double grad_scale, const KdOutputs& outputs) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  std::vector<const scalar_t*> rows0;
  for (const auto& z : teachers) rows0.push_back(z.data_ptr<scalar_t>());
  const int64_t n = p.num_items, k = p.top_k;
  auto scan = [&](int64_t b, int64_t y, RowWorkspace<scalar_t, acc_t>& ws, TeacherPart<acc_t>* parts) {
    bool finite = true;
    ws.sel_items.resize(p.num_teachers * k);
    ws.sel_values.resize(p.num_teachers * k);
    for (int64_t t = 0; t < p.num_teachers; ++t) {
      const acc_t* z = as_acc_row(rows0[t] + b * n, n, ws.teacher);
      const acc_t z_y = z[y];
      const TeacherScan<acc_t> scanned = scan_teacher_row(z, n, k, z_y, p.gate_rank > 0, ws.selection);
      auto& f = parts[t].facts;
      parts[t].selected_all = scanned.selected_all;
      f.active = p.gate_rank == 0 || scanned.n_greater + 1 <= p.gate_rank;
      f.has_nan = scanned.has_nan;
      f.max_logit = scanned.max_logit;
      f.log_confidence = 0;
      if (scanned.has_nan) {
        finite = false;
        continue;
      }
      if (scanned.selected_all) {
        f.sel_sum = static_cast<acc_t>(sum_exp(z, n, scanned.max_logit, static_cast<acc_t>(p.inv_tau)));
      } else {
        std::copy(ws.selection.items.begin(), ws.selection.items.end(), ws.sel_items.begin() + t * k);
        std::copy(ws.selection.values.begin(), ws.selection.values.end(), ws.sel_values.begin() + t * k);
        selection_facts(p, scanned, ws.selection.values.data(), k, f);
      }
      if (p.confidence) {
        const double total = (scanned.selected_all && p.tau == 1.0) ? double(f.sel_sum)
                                                                 : sum_exp(z, n, scanned.max_logit, acc_t(1));
        f.log_confidence = static_cast<acc_t>(z_y - (scanned.max_logit + std::log(total)));
      }
    }
    return finite;
  };
  run_rows<scalar_t, acc_t>(p, student, target, rows0, grad_scale, outputs, scan);
}

template <typename scalar_t>
void cached_kernel(const KdLossParams& p, const at::Tensor& student, const at::Tensor& indices,
                   const at::Tensor& cached_logits, const at::Tensor& target, double grad_scale,
                   const KdOutputs& outputs) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  const int64_t B = student.size(0), n = p.num_items, k = p.top_k, kc = indices.size(2);
  const int64_t* idx_all = indices.data_ptr<int64_t>();
  const acc_t* z_all = cached_logits.data_ptr<acc_t>();
  auto scan = [&](int64_t b, int64_t y, RowWorkspace<scalar_t, acc_t>& ws, TeacherPart<acc_t>* parts) {
    bool finite = true;
    ws.sel_items.resize(p.num_teachers * k);
    ws.sel_values.resize(p.num_teachers * k);
    for (int64_t t = 0; t < p.num_teachers; ++t) {
      const int64_t off = (t * B + b) * kc;
      const int64_t* items = idx_all + off;
      const acc_t* z = z_all + off;
      ws.check_items.assign(items, items + kc);
      std::sort(ws.check_items.begin(), ws.check_items.end());
      TORCH_CHECK(ws.check_items.front() >= 0 && ws.check_items.back() < n, "fused_kd_loss: teacher_indices[", t,
                  ", ", b, "] holds an item outside [0, N) = [0, ", n, ")");
      TORCH_CHECK(std::adjacent_find(ws.check_items.begin(), ws.check_items.end()) == ws.check_items.end(),
                  "fused_kd_loss: teacher_indices repeats an item in row ", b, " of teacher ", t,
                  "; cached items must be distinct");
      int64_t pos = -1;
      for (int64_t i = 0; i < kc; ++i) {
        if (items[i] == y) pos = i;
      }
      const acc_t z_y = pos >= 0 ? z[pos] : kNegInf<acc_t>;
      const TeacherScan<acc_t> scanned = scan_cached_row(items, z, kc, k, z_y, p.gate_rank > 0, ws.selection);
      auto& f = parts[t].facts;
      parts[t].selected_all = false;
      // An uncached target's rank is unknown beyond k, and gate_rank <= k: the gate closes.
      f.active = p.gate_rank == 0 || (pos >= 0 && scanned.n_greater + 1 <= p.gate_rank);
      f.has_nan = scanned.has_nan;
      f.max_logit = scanned.max_logit;
      f.log_confidence = kNegInf<acc_t>;
      if (scanned.has_nan) {
        finite = false;
        continue;
      }
      std::copy(ws.selection.items.begin(), ws.selection.items.end(), ws.sel_items.begin() + t * k);
      std::copy(ws.selection.values.begin(), ws.selection.values.end(), ws.sel_values.begin() + t * k);
      selection_facts(p, scanned, ws.selection.values.data(), k, f);
      if (p.confidence && pos >= 0) {
        double total = 0;
        for (int64_t i = 0; i < kc; ++i) total += std::exp(static_cast<double>(z[i] - scanned.max_logit));
        f.log_confidence = static_cast<acc_t>(z_y - (scanned.max_logit + std::log(total)));
      }
    }
    return finite;
  };
  run_rows<scalar_t, acc_t>(p, student, target, {}, grad_scale, outputs, scan);
}

// The gradient output is a fresh B x N buffer on every call (it becomes .grad), so the kernel
// that first writes it pays one page fault per 4 KiB page: at B = 256, N = 50000 that was about
// a third of the op's time. Asking for transparent huge pages (Linux, THP in "madvise" mode)
// turns 12,500 faults into 25. Best effort: a refused hint changes nothing but speed.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + t.nbytes()) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

KdOutputs fused_kd_loss_dense_cpu(const at::Tensor& student_logits, at::TensorList teacher_logits,
                                  const at::Tensor& target, double temperature, int64_t top_k,
                                  std::optional<int64_t> gate_rank, std::optional<at::ArrayRef<double>> teacher_weights,
                                  bool confidence_weights, double alpha, int64_t ignore_index,
                                  c10::string_view reduction) {
  const KdCall call = prepare_dense_call(student_logits, teacher_logits, target, temperature, top_k, gate_rank,
                                         teacher_weights, confidence_weights, alpha, ignore_index, reduction);
  const Reduction red = call.reduction;
  const KdLossParams& p = call.params;
  const at::Tensor s = student_logits.contiguous();
  const at::Tensor y = target.contiguous();
  const std::vector<at::Tensor> teachers = contiguous_teachers(teacher_logits);
  KdOutputs outputs = allocate_outputs(s, p.num_teachers);
  advise_huge_pages(std::get<1>(outputs));
  const int64_t n_valid = count_valid_rows(y, ignore_index);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "fused_kd_loss_dense_cpu", [&] {
    dense_kernel<scalar_t>(p, s, teachers, y, row_gradient_scale(red, n_valid), outputs);
  });
  reduce_rows(outputs, red, n_valid);
  return outputs;
}

KdOutputs fused_kd_loss_cached_cpu(const at::Tensor& student_logits, const at::Tensor& teacher_indices,
                                   const at::Tensor& teacher_logits, const at::Tensor& target, double temperature,
                                   int64_t top_k, std::optional<int64_t> gate_rank,
                                   std::optional<at::ArrayRef<double>> teacher_weights, bool confidence_weights,
                                   double alpha, int64_t ignore_index, c10::string_view reduction) {
  const KdCall call = prepare_cached_call(student_logits, teacher_indices, teacher_logits, target, temperature,
                                          top_k, gate_rank, teacher_weights, confidence_weights, alpha,
                                          ignore_index, reduction);
  const Reduction red = call.reduction;
  const KdLossParams& p = call.params;
  const at::Tensor s = student_logits.contiguous();
  const at::Tensor y = target.contiguous();
  KdOutputs outputs = allocate_outputs(s, p.num_teachers);
  advise_huge_pages(std::get<1>(outputs));
  const int64_t n_valid = count_valid_rows(y, ignore_index);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "fused_kd_loss_cached_cpu", [&] {
    cached_kernel<scalar_t>(p, s, teacher_indices.contiguous(), teacher_logits.contiguous(), y,
                            row_gradient_scale(red, n_valid), outputs);
  });
  reduce_rows(outputs, red, n_valid);
  return outputs;
}

}  // namespace
}  // namespace srkd::kd

TORCH_LIBRARY_IMPL(srkd_ext, CPU, m) {
  m.impl("fused_kd_loss_dense", &srkd::kd::fused_kd_loss_dense_cpu);
  m.impl("fused_kd_loss_cached", &srkd::kd::fused_kd_loss_cached_cpu);
}
