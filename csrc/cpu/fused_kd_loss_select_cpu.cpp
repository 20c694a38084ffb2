// Top-k selection of a teacher row for the fused KD loss (see fused_kd_loss_select_cpu.h).
//
// Small k (the usual 10-100 of N = 10^4..10^6 items): a size-k min-heap whose root is the
// current threshold. The scan compares four vectors at a time against the threshold and skips
// them when no lane beats it, so after the first few thousand items almost every element costs
// one vectorised compare; the running max, the NaN check and the count of logits above the
// target's ride along in the same pass. Large k: std::nth_element, O(N).
#include "common/fused_kd_loss_select_cpu.h"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace srkd::kd {
namespace {

// The heap keeps its *worst* element at the root: lower value, or equal value and higher index
// (ties prefer the lower index, DESIGN.md).
template <typename acc_t>
inline bool worse(acc_t av, int64_t ai, acc_t bv, int64_t bi) {
  return av < bv || (av == bv && ai > bi);
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
void select_by_heap(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                    SelectionScratch<acc_t>& s, TeacherScan<acc_t>& out) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  constexpr int kNoLane = (1 << W) - 1;  // zero_mask() of a compare where no lane is true
  s.values.resize(k);
  s.items.resize(k);
  acc_t* hv = s.values.data();
  int64_t* hi = s.items.data();
  for (int64_t j = 0; j < k; ++j) {
    hv[j] = z[j];
    hi[j] = j;
  }
  for (int64_t i = k / 2 - 1; i >= 0; --i) sift_down(hv, hi, k, i);
  max_and_count(z, 0, k, z_target, count_greater, out.max_logit, out.n_greater);

  const Vec target_v(z_target);
  const Vec one(acc_t(1));
  Vec mx(-std::numeric_limits<acc_t>::infinity());
  Vec thr(hv[0]);
  int64_t j = k;
  constexpr int64_t kCountBlock = int64_t(1) << 16;
  while (j + 4 * W <= n) {
    const int64_t block_end = std::min(n, j + kCountBlock);
    Vec cnt(acc_t(0));
    for (; j + 4 * W <= block_end; j += 4 * W) {
      const Vec v0 = Vec::loadu(z + j), v1 = Vec::loadu(z + j + W);
      const Vec v2 = Vec::loadu(z + j + 2 * W), v3 = Vec::loadu(z + j + 3 * W);
      mx = at::vec::maximum(at::vec::maximum(mx, v0), at::vec::maximum(at::vec::maximum(v1, v2), v3));
      if (count_greater) {
        cnt = cnt + (((v0 > target_v) & one) + ((v1 > target_v) & one)) +
              (((v2 > target_v) & one) + ((v3 > target_v) & one));
      }
      const Vec hit = ((v0 > thr) | (v1 > thr)) | ((v2 > thr) | (v3 > thr));
      if (hit.zero_mask() == kNoLane) continue;  // no lane beats the threshold
      for (int64_t i = j; i < j + 4 * W; ++i) {
        if (z[i] > hv[0]) {  // equal values lose: the heap's element has the lower index
          hv[0] = z[i];
          hi[0] = i;
          sift_down(hv, hi, k, 0);
        }
      }
      thr = Vec(hv[0]);
    }
    if (count_greater) {
      acc_t lanes[W];
      cnt.store(lanes);
      for (int64_t l = 0; l < W; ++l) out.n_greater += static_cast<int64_t>(lanes[l]);
    }
  }
  acc_t lanes[W];
  mx.store(lanes);
  for (int64_t l = 0; l < W; ++l) {
    if (std::isnan(lanes[l]) || (!std::isnan(out.max_logit) && lanes[l] > out.max_logit)) out.max_logit = lanes[l];
  }
  for (; j < n; ++j) {
    const acc_t x = z[j];
    if (std::isnan(x) || (!std::isnan(out.max_logit) && x > out.max_logit)) out.max_logit = x;
    if (count_greater && x > z_target) ++out.n_greater;
    if (x > hv[0]) {
      hv[0] = x;
      hi[0] = j;
      sift_down(hv, hi, k, 0);
    }
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
