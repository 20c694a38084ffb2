// CPU forward of cross_self_attention: both directions in one parallel loop.
//
// Tasks are (direction, batch, head, query block); the queries of a task stream over key
// blocks with an online softmax (running row max and sum, rescaling the output accumulator),
// so memory is O(block) and only the row log-sum-exp is written besides the outputs.
// Under the causal mask a group of kGemmRows queries only computes the key columns it can see.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "common/cross_attention_checks.h"
#include "cpu/cross_attention_cpu_operands.h"
#include "cpu/cross_attention_tile_gemm.h"

namespace srkd::cpu {
namespace {

template <typename acc_t>
inline at::vec::Vectorized<acc_t> fast_exp(const at::vec::Vectorized<acc_t>& x) {
  // exp_u20 (about 20 ulp, far inside the 1e-5 tolerance) is several times faster than the
  // 1-ulp Sleef exp, and exp bounds the softmax pass.
  return x.exp_u20();
}

// The row helpers below process whole vectors, the last one partly beyond n: every row they
// touch (score rows of kKeyBlock, key bias of Lp) is padded to a whole number of vectors, and
// the lanes at or past n are masked out (-inf for the max, 0 for probabilities).

// x[j] = s[j] * scale (+ bias[j]) for j < n; returns max_j x[j].
template <typename acc_t>
acc_t scale_bias_max(acc_t* s, const acc_t* bias, int64_t n, acc_t scale) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec vscale(scale), minus_inf(-std::numeric_limits<acc_t>::infinity());
  Vec vmax = minus_inf;
  for (int64_t j = 0; j < n; j += W) {
    Vec x = Vec::loadu(s + j) * vscale;
    if (bias != nullptr) x = x + Vec::loadu(bias + j);
    x.store(s + j);
    vmax = at::vec::maximum(vmax, Vec::set(minus_inf, x, std::min<int64_t>(W, n - j)));
  }
  return at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, vmax);
}

// s[j] = exp(s[j] - shift) for j < n (0 for the lanes of the last vector past n); returns the sum.
template <typename acc_t>
acc_t exp_shifted_sum(acc_t* s, int64_t n, acc_t shift) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec vshift(shift), zero(acc_t(0));
  Vec vsum = zero;
  for (int64_t j = 0; j < n; j += W) {
    const Vec p = Vec::set(zero, fast_exp(Vec::loadu(s + j) - vshift), std::min<int64_t>(W, n - j));
    p.store(s + j);
    vsum = vsum + p;
  }
  return at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return a + b; }, vsum);
}

template <typename acc_t>
void scale_row(acc_t* row, int64_t n, acc_t factor) {
  using Vec = at::vec::Vectorized<acc_t>;
  const Vec f(factor);
  for (int64_t j = 0; j < n; j += Vec::size()) (Vec::loadu(row + j) * f).store(row + j);
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& q_a, const at::Tensor& k_a, const at::Tensor& v_a, const at::Tensor& q_b,
                    const at::Tensor& k_b, const at::Tensor& v_b, const bool* key_padding_mask, bool causal,
                    double scale_arg, at::Tensor& o_a, at::Tensor& o_b, at::Tensor& lse) {
  using acc_t = compute_t<scalar_t>;
  const int64_t batch = q_a.size(0), heads = q_a.size(1), length = q_a.size(2), head_dim = q_a.size(3);
  const int64_t padded_dim = round_up(head_dim, kPad);
  const int64_t padded_length = round_up(length, kPad);
  const int64_t query_blocks = ceil_div(length, kQueryBlock);
  const int64_t tasks = 2 * batch * heads * query_blocks;
  const acc_t scale = static_cast<acc_t>(scale_arg);
  const acc_t inf = std::numeric_limits<acc_t>::infinity();
  acc_t* lse_data = lse.data_ptr<acc_t>();

  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    // Scratch per chunk of tasks, reused by every task of the chunk.
    std::vector<acc_t> key_t(padded_dim * padded_length), value_rows(padded_length * padded_dim);
    std::vector<acc_t> query_rows(kQueryBlock * padded_dim), scores(kQueryBlock * kKeyBlock);
    std::vector<acc_t> out_acc(kQueryBlock * padded_dim), bias_buffer(padded_length);
    std::vector<acc_t> row_max(kQueryBlock), row_sum(kQueryBlock);
    int64_t staged_slice = -1;
    StagedRows<acc_t> value{nullptr, 0};
    const acc_t* bias = nullptr;

    for (int64_t task = begin; task < end; ++task) {
      const int64_t slice = task / query_blocks;  // (direction, batch, head)
      const int64_t qb = task % query_blocks;
      const int64_t h = slice % heads, b = (slice / heads) % batch, direction = slice / (heads * batch);
      const DirectionOperands ops = direction_operands(direction, q_a, k_a, v_a, q_b, k_b, v_b);
      const int64_t q0 = qb * kQueryBlock, q1 = std::min(q0 + kQueryBlock, length), rows = q1 - q0;
      const int64_t key_end = causal ? q1 : length;

      if (slice != staged_slice) {  // consecutive tasks share a slice: stage its keys once
        stage_transposed(head_slice<scalar_t>(*ops.key, b, h), length, head_dim, padded_dim, key_t.data(),
                         padded_length);
        value = stage_rows(head_slice<scalar_t>(*ops.value, b, h), 0, length, head_dim, padded_dim,
                           value_rows.data());
        bias = stage_key_bias(key_padding_mask, b, length, bias_buffer.data());
        staged_slice = slice;
      }
      const StagedRows<acc_t> query =
          stage_rows(head_slice<scalar_t>(*ops.query, b, h), q0, q1, head_dim, padded_dim, query_rows.data());
      at::Tensor& out = direction == 0 ? o_a : o_b;
      scalar_t* out_rows = out.data_ptr<scalar_t>() + ((b * heads + h) * length + q0) * head_dim;
      acc_t* acc = accumulation_rows(out_rows, head_dim, padded_dim, out_acc.data());  // [rows, padded_dim]
      std::fill(acc, acc + rows * padded_dim, acc_t(0));
      std::fill(row_max.begin(), row_max.begin() + rows, -inf);
      std::fill(row_sum.begin(), row_sum.begin() + rows, acc_t(0));

      for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
        const int64_t keys = std::min(kKeyBlock, key_end - k0);
        // Keys a row group can see in this block (causal: up to its last row).
        auto group_keys = [&](int64_t g1) { return causal ? std::min(keys, q0 + g1 - k0) : keys; };

        for (int64_t g0 = 0; g0 < rows; g0 += kGemmRows) {
          const int64_t g1 = std::min(g0 + kGemmRows, rows);
          const int64_t n = group_keys(g1);
          if (n <= 0) continue;
          gemm<acc_t, false>(g1 - g0, round_up(n, kPad), padded_dim,
                             TileA<acc_t>{query.data + g0 * query.ld, query.ld, 1}, key_t.data() + k0,
                             padded_length, scores.data() + g0 * kKeyBlock, kKeyBlock);
        }
        for (int64_t r = 0; r < rows; ++r) {
          acc_t* s = scores.data() + r * kKeyBlock;
          const int64_t visible = causal ? std::min(keys, q0 + r + 1 - k0) : keys;
          acc_t block_max = -inf;
          if (visible > 0) block_max = scale_bias_max(s, bias ? bias + k0 : nullptr, visible, scale);
          const acc_t new_max = std::max(row_max[r], block_max);
          if (new_max == -inf) {  // nothing visible yet for this row: contributes nothing
            std::fill(s, s + keys, acc_t(0));
            continue;
          }
          const acc_t sum = exp_shifted_sum(s, visible, new_max);
          std::fill(s + std::max<int64_t>(visible, 0), s + keys, acc_t(0));
          const acc_t correction = std::exp(row_max[r] - new_max);  // 0 when row_max was -inf
          if (correction != acc_t(1)) scale_row(acc + r * padded_dim, padded_dim, correction);
          row_sum[r] = row_sum[r] * correction + sum;
          row_max[r] = new_max;
        }
        for (int64_t g0 = 0; g0 < rows; g0 += kGemmRows) {
          const int64_t g1 = std::min(g0 + kGemmRows, rows);
          const int64_t n = group_keys(g1);
          if (n <= 0) continue;
          gemm<acc_t, true>(g1 - g0, padded_dim, n, TileA<acc_t>{scores.data() + g0 * kKeyBlock, kKeyBlock, 1},
                            value.data + k0 * value.ld, value.ld, acc + g0 * padded_dim, padded_dim);
        }
      }

      acc_t* lse_row = lse_data + slice * length + q0;
      for (int64_t r = 0; r < rows; ++r) {
        acc_t* acc_row = acc + r * padded_dim;
        if (row_sum[r] > acc_t(0)) {
          scale_row(acc_row, padded_dim, acc_t(1) / row_sum[r]);
          lse_row[r] = row_max[r] + std::log(row_sum[r]);
        } else {  // every key masked: zero output; +inf makes the backward's exp(s - lse) zero
          std::fill(acc_row, acc_row + padded_dim, acc_t(0));
          lse_row[r] = inf;
        }
      }
      finish_rows(acc, rows, head_dim, padded_dim, out_rows);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_self_attention_fwd_cpu(
    const at::Tensor& q_a, const at::Tensor& k_a, const at::Tensor& v_a, const at::Tensor& q_b,
    const at::Tensor& k_b, const at::Tensor& v_b, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    double scale) {
  check_attention_inputs({&q_a, &k_a, &v_a, &q_b, &k_b, &v_b}, key_padding_mask);
  TORCH_CHECK(q_a.device().is_cpu(), "cross_self_attention_fwd (CPU kernel): q_a is on ", q_a.device());
  auto o_a = at::empty(q_a.sizes(), q_a.options().memory_format(at::MemoryFormat::Contiguous));
  auto o_b = at::empty_like(o_a);
  auto lse = at::empty({2, q_a.size(0), q_a.size(1), q_a.size(2)}, q_a.options().dtype(lse_dtype_for(q_a.scalar_type())));
  at::Tensor mask;
  if (key_padding_mask.has_value()) mask = key_padding_mask->contiguous();
  const bool* mask_data = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q_a.scalar_type(), "cross_self_attention_fwd_cpu", [&] {
    forward_kernel<scalar_t>(q_a, k_a, v_a, q_b, k_b, v_b, mask_data, causal, scale, o_a, o_b, lse);
  });
  return {o_a, o_b, lse};
}

}  // namespace
}  // namespace srkd::cpu

TORCH_LIBRARY_IMPL(srkd_ext, CPU, m) {
  m.impl("cross_self_attention_fwd", &srkd::cpu::cross_self_attention_fwd_cpu);
}
