// Top-k selection of a teacher row for the fused KD loss (see fused_kd_loss_select_cpu.h).
//
// Small k (the usual 10-100 of N = 10^4..10^6 items): a size-k min-heap whose root is the
// current threshold. The scan compares four vectors at a time against the threshold and skips
// them when no lane beats it, so after the first few thousand items almost every element costs
// one vectorised compare (the same compare flags NaN; the row max is the heap's best; the count
// of logits above the target's, for the gate, rides along). Large k: std::nth_element, O(N).
#include "common/fused_kd_loss_select_cpu.h"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace srkd::kd {
namespace {

// The heap keeps its *worst* element at the root: lower value, or equal value and higher index
// (ties prefer the lower index, DESIGN.md). Bitwise, not short-circuit, so that the compiler can
// use conditional moves: the child choice in sift_down is a coin flip for a branch predictor.
template <typename acc_t>
inline bool worse(acc_t av, int64_t ai, acc_t bv, int64_t bi) {
  return (av < bv) | ((av == bv) & (ai > bi));
}

// Replaces the root by (x, xi) and restores the heap, moving a hole down instead of swapping.
template <typename acc_t>
inline void replace_root(acc_t* v, int64_t* idx, int64_t k, acc_t x, int64_t xi) {
  int64_t i = 0;
  while (true) {
    int64_t c = 2 * i + 1;
    if (c >= k) break;
    const int64_t r = c + 1;
    c += static_cast<int64_t>((r < k) & worse(v[r < k ? r : c], idx[r < k ? r : c], v[c], idx[c]));
    if (!worse(v[c], idx[c], x, xi)) break;
    v[i] = v[c];
    idx[i] = idx[c];
    i = c;
  }
  v[i] = x;
  idx[i] = xi;
}

template <typename acc_t>
void sift_down(acc_t* v, int64_t* idx, int64_t k, int64_t i) {
  while (true) {
    int64_t c = 2 * i + 1;
    if (c >= k) return;
    if (c + 1 < k && worse(v[c + 1], idx[c + 1], v[c], idx[c])) ++c;
    if (!worse(v[c], idx[c], v[i], idx[i])) return;
    std::swap(v[c], v[i]);
    std::swap(idx[c], idx[i]);
    i = c;
  }
}

template <typename acc_t>
inline bool better_pair(const std::pair<acc_t, int64_t>& a, const std::pair<acc_t, int64_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Max (NaN-propagating) and count of z_j > z_target over z[begin, end), vectorised.
template <typename acc_t>
void max_and_count(const acc_t* z, int64_t begin, int64_t end, acc_t z_target, bool count_greater,
                   acc_t& max_out, int64_t& count_out) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec target_v(z_target);
  const Vec one(acc_t(1));
  Vec mx(-std::numeric_limits<acc_t>::infinity());
  int64_t j = begin;
  // Counts accumulate exactly in floating lanes within blocks of 2^16 elements.
  constexpr int64_t kCountBlock = int64_t(1) << 16;
  while (j + W <= end) {
    const int64_t block_end = std::min(end, j + kCountBlock);
    Vec cnt(acc_t(0));
    for (; j + W <= block_end; j += W) {
      const Vec v = Vec::loadu(z + j);
      mx = at::vec::maximum(mx, v);
      if (count_greater) cnt = cnt + ((v > target_v) & one);
    }
    if (count_greater) {
      acc_t lanes[W];
      cnt.store(lanes);
      for (int64_t l = 0; l < W; ++l) count_out += static_cast<int64_t>(lanes[l]);
    }
  }
  acc_t lanes[W];
  mx.store(lanes);
  for (int64_t l = 0; l < W; ++l) {
    if (std::isnan(lanes[l]) || lanes[l] > max_out) max_out = lanes[l];
    if (std::isnan(max_out)) break;
  }
  for (; j < end; ++j) {
    if (std::isnan(z[j]) || (!std::isnan(max_out) && z[j] > max_out)) max_out = z[j];
    if (count_greater && z[j] > z_target) ++count_out;
  }
}

template <typename acc_t>
void select_by_partition(const acc_t* z, int64_t n, int64_t k, SelectionScratch<acc_t>& s) {
  s.pairs.resize(n);
  for (int64_t j = 0; j < n; ++j) s.pairs[j] = {z[j], j};
  std::nth_element(s.pairs.begin(), s.pairs.begin() + (k - 1), s.pairs.end(), better_pair<acc_t>);
  s.values.resize(k);
  s.items.resize(k);
  for (int64_t i = 0; i < k; ++i) {
    s.values[i] = s.pairs[i].first;
    s.items[i] = s.pairs[i].second;
  }
}

template <typename acc_t>
void select_by_heap(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                    SelectionScratch<acc_t>& s, TeacherScan<acc_t>& out) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  // Start from the exact top-k of a prefix of kPrefixFactor * k items: its k-th value is a lower
  // bound of the row's, so the threshold starts high and few later items beat it (about
  // k ln(n / prefix) of them on a random row, against k ln(n / k) from the first k items).
  constexpr int64_t kPrefixFactor = 8;
  const int64_t prefix = std::min(n, kPrefixFactor * k);
  max_and_count(z, 0, prefix, z_target, count_greater, out.max_logit, out.n_greater);
  if (std::isnan(out.max_logit)) return;  // a NaN row: no strict order to select by
  select_by_partition(z, prefix, k, s);
  acc_t* hv = s.values.data();
  int64_t* hi = s.items.data();
  bool has_nan = false;
  for (int64_t i = k / 2 - 1; i >= 0; --i) sift_down(hv, hi, k, i);

  // Offers z[i] to the heap; NaN is flagged (and never enters).
  auto offer = [&](int64_t i) {
    const acc_t x = z[i];
    if (x > hv[0]) {  // equal values lose: the heap's element has the lower index
      replace_root(hv, hi, k, x, i);
    } else if (std::isnan(x)) {
      has_nan = true;
    }
  };

  const Vec target_v(z_target);
  const Vec one(acc_t(1));
  Vec thr(hv[0]);
  int64_t j = prefix;
  constexpr int64_t kCountBlock = int64_t(1) << 16;
  while (j + 4 * W <= n) {
    const int64_t block_end = std::min(n, j + kCountBlock);
    Vec cnt(acc_t(0));
    for (; j + 4 * W <= block_end; j += 4 * W) {
      const Vec v0 = Vec::loadu(z + j), v1 = Vec::loadu(z + j + W);
      const Vec v2 = Vec::loadu(z + j + 2 * W), v3 = Vec::loadu(z + j + 3 * W);
      if (count_greater) {
        cnt = cnt + (((v0 > target_v) & one) + ((v1 > target_v) & one)) +
              (((v2 > target_v) & one) + ((v3 > target_v) & one));
      }
      // v <= thr is false both for a candidate and for NaN: one compare per vector finds both.
      const Vec b0 = v0 <= thr, b1 = v1 <= thr, b2 = v2 <= thr, b3 = v3 <= thr;
      if (((b0 & b1) & (b2 & b3)).zero_mask() == 0) continue;  // every lane is a plain "not better"
      // Offer only the lanes that beat the threshold (or are NaN), lowest index first.
      const int masks[4] = {b0.zero_mask(), b1.zero_mask(), b2.zero_mask(), b3.zero_mask()};
      for (int64_t q = 0; q < 4; ++q) {
        for (int m = masks[q]; m != 0; m &= m - 1) offer(j + q * W + __builtin_ctz(m));
      }
      thr = Vec(hv[0]);
    }
    if (count_greater) {
      acc_t lanes[W];
      cnt.store(lanes);
      for (int64_t l = 0; l < W; ++l) out.n_greater += static_cast<int64_t>(lanes[l]);
    }
  }
  for (; j < n; ++j) {
    out.n_greater += count_greater & (z[j] > z_target);
    offer(j);
  }
  if (has_nan) {
    out.max_logit = std::numeric_limits<acc_t>::quiet_NaN();
    return;
  }
  out.max_logit = *std::max_element(hv, hv + k);  // the row max is the best selected value
}

}  // namespace

template <typename acc_t>
TeacherScan<acc_t> scan_teacher_row(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                                    SelectionScratch<acc_t>& scratch) {
  TeacherScan<acc_t> out{-std::numeric_limits<acc_t>::infinity(), 0, false, k >= n};
  // The heap pays O(log k) per replacement and about k log(n / k) replacements on random rows;
  // past k ~ n / 16, partitioning all n items is cheaper.
  if (k < n && k * 16 <= n) {
    select_by_heap(z, n, k, z_target, count_greater, scratch, out);
  } else {
    max_and_count(z, 0, n, z_target, count_greater, out.max_logit, out.n_greater);
    // nth_element needs a strict weak order: a NaN row is never partitioned.
    if (k < n && !std::isnan(out.max_logit)) select_by_partition(z, n, k, scratch);
  }
  out.has_nan = std::isnan(out.max_logit);
  return out;
}

template <typename acc_t>
TeacherScan<acc_t> scan_cached_row(const int64_t* items, const acc_t* z, int64_t k_cached, int64_t k,
                                   acc_t z_target, bool count_greater, SelectionScratch<acc_t>& scratch) {
  TeacherScan<acc_t> out{-std::numeric_limits<acc_t>::infinity(), 0, false, false};
  for (int64_t i = 0; i < k_cached; ++i) {
    const acc_t x = z[i];
    if (std::isnan(x) || (!std::isnan(out.max_logit) && x > out.max_logit)) out.max_logit = x;
    if (count_greater && x > z_target) ++out.n_greater;
  }
  out.has_nan = std::isnan(out.max_logit);
  scratch.values.resize(k);
  scratch.items.resize(k);
  if (k >= k_cached || out.has_nan) {
    std::copy(z, z + std::min(k, k_cached), scratch.values.begin());
    std::copy(items, items + std::min(k, k_cached), scratch.items.begin());
    return out;
  }
  scratch.pairs.resize(k_cached);
  for (int64_t i = 0; i < k_cached; ++i) scratch.pairs[i] = {z[i], items[i]};
  std::nth_element(scratch.pairs.begin(), scratch.pairs.begin() + (k - 1), scratch.pairs.end(),
                   better_pair<acc_t>);
  for (int64_t i = 0; i < k; ++i) {
    scratch.values[i] = scratch.pairs[i].first;
    scratch.items[i] = scratch.pairs[i].second;
  }
  return out;
}

template TeacherScan<float> scan_teacher_row(const float*, int64_t, int64_t, float, bool, SelectionScratch<float>&);
template TeacherScan<double> scan_teacher_row(const double*, int64_t, int64_t, double, bool,
                                              SelectionScratch<double>&);
template TeacherScan<float> scan_cached_row(const int64_t*, const float*, int64_t, int64_t, float, bool,
                                            SelectionScratch<float>&);
template TeacherScan<double> scan_cached_row(const int64_t*, const double*, int64_t, int64_t, double, bool,
                                             SelectionScratch<double>&);

}  // namespace srkd::kd
