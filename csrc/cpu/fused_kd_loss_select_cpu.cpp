// Top-k selection of a teacher row for the fused KD loss (see fused_kd_loss_select_cpu.h).
//
// Small k (the usual 10-100 of N = 10^4..10^6 items): a lower bound of the k-th largest logit
// from group maxima, then a gather of the few items that reach it and a partition of those
// (select_by_group_bound). Large k: std::nth_element over the row, O(N).
#include "common/fused_kd_loss_select_cpu.h"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace srkd::kd {
namespace {

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

// Small k: two vectorised passes and a partition of a few dozen candidates.
//   1. Split the row into 2k groups of G items. The k-th largest of the 2k group maxima, t, is
//      a lower bound of the row's k-th largest logit (k distinct items are >= t).
//   2. Gather every item >= t (ties at t may belong to the top k) in index order; on a random
//      row about 1.4k items qualify, whatever N is. nth_element over them with the exact order
//      (value desc, index asc) gives the top k.
// Pass 1 also finds NaN (the group maxima propagate it) and counts the logits above the
// target's; pass 2 reads the row from L2. A sorted row makes every item a candidate: then this
// degrades to the O(N) partition, never worse.
template <typename acc_t>
void select_by_group_bound(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                           SelectionScratch<acc_t>& s, TeacherScan<acc_t>& out) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const int64_t groups = 2 * k;
  const int64_t group = (n / groups) / W * W;  // >= W: the caller ensures n >= 16 k
  const Vec target_v(z_target);
  const Vec one(acc_t(1));
  auto& group_max = s.values;
  group_max.resize(groups);
  bool has_nan = false;
  for (int64_t g = 0; g < groups; ++g) {
    const acc_t* zg = z + g * group;
    Vec mx = Vec::loadu(zg);
    Vec cnt(acc_t(0));
    if (count_greater) cnt = (mx > target_v) & one;
    for (int64_t j = W; j < group; j += W) {
      const Vec v = Vec::loadu(zg + j);
      mx = at::vec::maximum(mx, v);
      if (count_greater) cnt = cnt + ((v > target_v) & one);
    }
    acc_t lanes[W];
    mx.store(lanes);
    acc_t gmax = lanes[0];
    for (int64_t l = 1; l < W; ++l) gmax = (std::isnan(lanes[l]) || lanes[l] > gmax) ? lanes[l] : gmax;
    has_nan |= std::isnan(gmax);
    group_max[g] = gmax;
    if (count_greater) {
      cnt.store(lanes);  // at most group / W per lane: exact in floating point below N / k = 2^27
      for (int64_t l = 0; l < W; ++l) out.n_greater += static_cast<int64_t>(lanes[l]);
    }
  }
  for (int64_t j = groups * group; j < n; ++j) {
    has_nan |= std::isnan(z[j]);
    out.n_greater += count_greater & (z[j] > z_target);
  }
  if (has_nan) {
    out.max_logit = std::numeric_limits<acc_t>::quiet_NaN();
    return;
  }

  std::nth_element(group_max.begin(), group_max.begin() + (k - 1), group_max.end(), std::greater<acc_t>());
  const acc_t bound = group_max[k - 1];
  auto& cand = s.pairs;
  cand.clear();
  const Vec bound_v(bound);
  int64_t j = 0;
  for (; j + 4 * W <= n; j += 4 * W) {
    const Vec b0 = Vec::loadu(z + j) < bound_v, b1 = Vec::loadu(z + j + W) < bound_v;
    const Vec b2 = Vec::loadu(z + j + 2 * W) < bound_v, b3 = Vec::loadu(z + j + 3 * W) < bound_v;
    if (((b0 & b1) & (b2 & b3)).zero_mask() == 0) continue;  // no lane reaches the bound
    const int masks[4] = {b0.zero_mask(), b1.zero_mask(), b2.zero_mask(), b3.zero_mask()};
    for (int64_t q = 0; q < 4; ++q) {
      for (int m = masks[q]; m != 0; m &= m - 1) {
        const int64_t i = j + q * W + __builtin_ctz(m);
        cand.emplace_back(z[i], i);
      }
    }
  }
  for (; j < n; ++j) {
    if (z[j] >= bound) cand.emplace_back(z[j], j);
  }
  std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), better_pair<acc_t>);
  s.values.resize(k);
  s.items.resize(k);
  acc_t mx = cand[0].first;
  for (int64_t i = 0; i < k; ++i) {
    s.values[i] = cand[i].first;
    s.items[i] = cand[i].second;
    mx = std::max(mx, cand[i].first);
  }
  out.max_logit = mx;
}


}  // namespace

template <typename acc_t>
TeacherScan<acc_t> scan_teacher_row(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                                    SelectionScratch<acc_t>& scratch) {
  TeacherScan<acc_t> out{-std::numeric_limits<acc_t>::infinity(), 0, false, k >= n};
  // Past k ~ n / 16 the group bound gathers too large a share of the row to pay off.
  if (k < n && k * 16 <= n) {
    select_by_group_bound(z, n, k, z_target, count_greater, scratch, out);
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
