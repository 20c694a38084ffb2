// CPU top-k selection over one teacher row, fused with the other facts the loss needs from the
// same read of the row (max, NaN, rank of the target). Implemented in
// csrc/cpu/fused_kd_loss_select_cpu.cpp for float and double rows.
#pragma once

#include <cstdint>
#include <vector>

namespace srkd::kd {

// Reused across the rows one thread handles (no allocation per row).
template <typename acc_t>
struct SelectionScratch {
  std::vector<acc_t> values;   // the selected logits, [k] (unordered); group maxima before that
  std::vector<int64_t> items;  // their item indices, [k]
  std::vector<std::pair<acc_t, int64_t>> pairs;  // candidates (value, item) for nth_element
};

template <typename acc_t>
struct TeacherScan {
  acc_t max_logit;    // NaN when the row holds a NaN
  int64_t n_greater;  // #{j : z_j > z_target}, when asked for
  bool has_nan;
  bool selected_all;  // k == N: every item is selected, scratch is untouched
};

// Selects the k largest logits of z[0, n) (ties: lower index first) into scratch.values/items,
// unless k == n, reading the row once from memory (a second pass hits the cache); counts the
// logits greater than z_target when count_greater. A NaN row leaves the selection unspecified
// (the caller makes the row NaN).
template <typename acc_t>
TeacherScan<acc_t> scan_teacher_row(const acc_t* z, int64_t n, int64_t k, acc_t z_target, bool count_greater,
                                    SelectionScratch<acc_t>& scratch);

// The same for a cached row of k_cached (item, logit) pairs: selects the top k among them into
// scratch (ties: lower item index first); n_greater counts cached logits above z_target.
template <typename acc_t>
TeacherScan<acc_t> scan_cached_row(const int64_t* items, const acc_t* z, int64_t k_cached, int64_t k,
                                   acc_t z_target, bool count_greater, SelectionScratch<acc_t>& scratch);

}  // namespace srkd::kd
