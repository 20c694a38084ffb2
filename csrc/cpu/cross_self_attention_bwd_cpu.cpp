// CPU backward of cross_self_attention: recomputes the probabilities tile by tile from the
// saved row log-sum-exp (flash-attention style), for both directions in one parallel loop.
//
// Direction 0 (a queries, b keys) produces dq_a, dk_b, dv_b; direction 1 produces dq_b, dk_a,
// dv_a, so the two directions never write the same gradient. Within a direction, key
// gradients sum over query blocks: a task owns a whole (direction, batch, head) slice and
// accumulates dK, dV for it in scratch. When there are too few slices to keep every thread
// busy (small B x H), the query blocks of a slice are split over several tasks, each writing
// its partial dK, dV to a float buffer that a second parallel pass sums.
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

// delta[r] = sum_d dO[r, d] * O[r, d]: the softmax-Jacobian term of row r.
template <typename scalar_t, typename acc_t>
void row_dot(HeadSlice<scalar_t> grad_out, HeadSlice<scalar_t> out, int64_t row0, int64_t row1, int64_t head_dim,
             acc_t* delta) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  for (int64_t r = row0; r < row1; ++r) {
    acc_t sum = 0;
    int64_t d = 0;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (grad_out.col_stride == 1 && out.col_stride == 1) {
        const acc_t* g = grad_out.data + r * grad_out.row_stride;
        const acc_t* o = out.data + r * out.row_stride;
        Vec acc(acc_t(0));
        for (; d + W <= head_dim; d += W) acc = at::vec::fmadd(Vec::loadu(g + d), Vec::loadu(o + d), acc);
        sum = at::vec::vec_reduce_all<acc_t>([](Vec& x, Vec& y) { return x + y; }, acc);
      }
    }
    for (; d < head_dim; ++d) {
      sum += static_cast<acc_t>(grad_out.at(r, d)) * static_cast<acc_t>(out.at(r, d));
    }
    delta[r - row0] = sum;
  }
}

// For j < n: p = exp(s * scale + bias - lse); s <- p; ds <- p * (dp - delta) * scale.
// Columns [n, width) of both rows are zeroed (the GEMMs read whole row groups). Whole vectors
// are processed: the score rows and the key bias are padded past n to a multiple of the width.
template <typename acc_t>
void probabilities_and_score_grads(acc_t* s, acc_t* dp, const acc_t* bias, int64_t n, int64_t width, acc_t scale,
                                   acc_t lse, acc_t delta) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec vscale(scale), vlse(lse), vdelta(delta), zero(acc_t(0));
  int64_t j = 0;
  for (; j < n; j += W) {
    Vec x = Vec::loadu(s + j) * vscale;
    if (bias != nullptr) x = x + Vec::loadu(bias + j);
    const Vec p = Vec::set(zero, (x - vlse).exp_u20(), std::min<int64_t>(W, n - j));
    p.store(s + j);
    (p * (Vec::loadu(dp + j) - vdelta) * vscale).store(dp + j);
  }
  for (j = std::max<int64_t>(n, 0); j < width; ++j) s[j] = dp[j] = acc_t(0);
}

struct BackwardPlan {
  int64_t batch, heads, length, head_dim, padded_dim, padded_length, query_blocks, splits, blocks_per_split;
};

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_o_a, const at::Tensor& grad_o_b, const at::Tensor& q_a,
                     const at::Tensor& k_a, const at::Tensor& v_a, const at::Tensor& q_b, const at::Tensor& k_b,
                     const at::Tensor& v_b, const at::Tensor& o_a, const at::Tensor& o_b, const at::Tensor& lse,
                     const bool* key_padding_mask, bool causal, double scale_arg, at::Tensor& dq_a, at::Tensor& dk_a,
                     at::Tensor& dv_a, at::Tensor& dq_b, at::Tensor& dk_b, at::Tensor& dv_b) {
  using acc_t = compute_t<scalar_t>;
  BackwardPlan plan;
  plan.batch = q_a.size(0);
  plan.heads = q_a.size(1);
  plan.length = q_a.size(2);
  plan.head_dim = q_a.size(3);
  plan.padded_dim = round_up(plan.head_dim, kPad);
  plan.padded_length = round_up(plan.length, kPad);
  plan.query_blocks = ceil_div(plan.length, kQueryBlock);
  const int64_t slices = 2 * plan.batch * plan.heads;
  // Four tasks per thread balance the uneven causal work; split slices only when short of that.
  const int64_t wanted_tasks = 4 * static_cast<int64_t>(at::get_num_threads());
  plan.splits = slices >= wanted_tasks ? 1 : std::min(plan.query_blocks, ceil_div(wanted_tasks, std::max<int64_t>(slices, 1)));
  plan.blocks_per_split = ceil_div(plan.query_blocks, plan.splits);
  plan.splits = ceil_div(plan.query_blocks, plan.blocks_per_split);

  const int64_t heads = plan.heads, batch = plan.batch, length = plan.length, head_dim = plan.head_dim;
  const int64_t padded_dim = plan.padded_dim, padded_length = plan.padded_length;
  const acc_t scale = static_cast<acc_t>(scale_arg);
  const acc_t* lse_data = lse.const_data_ptr<acc_t>();
  const int64_t slice_elems = padded_length * padded_dim;
  // Partial key gradients [slices, splits, 2 (dK, dV), Lp, Dp], only when slices are split.
  at::Tensor partial;
  if (plan.splits > 1) {
    partial = at::empty({slices, plan.splits, 2, padded_length, padded_dim},
                        q_a.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  }
  acc_t* partial_data = partial.defined() ? partial.data_ptr<acc_t>() : nullptr;

  at::parallel_for(0, slices * plan.splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> key_t(padded_dim * padded_length), value_t(padded_dim * padded_length);
    std::vector<acc_t> key_rows(slice_elems), query_rows(kQueryBlock * padded_dim),
        grad_out_rows(kQueryBlock * padded_dim);
    std::vector<acc_t> scores(kQueryBlock * kKeyBlock), score_grads(kQueryBlock * kKeyBlock);
    std::vector<acc_t> grad_query(kQueryBlock * padded_dim), delta(kQueryBlock), bias_buffer(padded_length);
    std::vector<acc_t> own_key_grads(partial_data ? 0 : slice_elems), own_value_grads(partial_data ? 0 : slice_elems);

    for (int64_t task = begin; task < end; ++task) {
      const int64_t slice = task / plan.splits, split = task % plan.splits;
      const int64_t h = slice % heads, b = (slice / heads) % batch, direction = slice / (heads * batch);
      const DirectionOperands ops = direction_operands(direction, q_a, k_a, v_a, q_b, k_b, v_b);
      const at::Tensor& grad_out_t = direction == 0 ? grad_o_a : grad_o_b;
      const at::Tensor& out_t = direction == 0 ? o_a : o_b;
      at::Tensor& dq_t = direction == 0 ? dq_a : dq_b;
      at::Tensor& dk_t = direction == 0 ? dk_b : dk_a;
      at::Tensor& dv_t = direction == 0 ? dv_b : dv_a;
      const int64_t qb_begin = split * plan.blocks_per_split;
      const int64_t qb_end = std::min(qb_begin + plan.blocks_per_split, plan.query_blocks);
      // Keys any query of this task can see.
      const int64_t key_end = causal ? std::min(qb_end * kQueryBlock, length) : length;

      const HeadSlice<scalar_t> key_slice = head_slice<scalar_t>(*ops.key, b, h);
      stage_transposed(key_slice, key_end, head_dim, padded_dim, key_t.data(), padded_length);
      stage_transposed(head_slice<scalar_t>(*ops.value, b, h), key_end, head_dim, padded_dim, value_t.data(),
                       padded_length);
      const StagedRows<acc_t> key = stage_rows(key_slice, 0, key_end, head_dim, padded_dim, key_rows.data());
      const acc_t* bias = stage_key_bias(key_padding_mask, b, length, bias_buffer.data());
      // dK, dV rows [0, L) of the slice: the outputs themselves, scratch, or this split's partial.
      const int64_t slice_out_offset = (b * heads + h) * length * head_dim;
      scalar_t* dk_rows = dk_t.data_ptr<scalar_t>() + slice_out_offset;
      scalar_t* dv_rows = dv_t.data_ptr<scalar_t>() + slice_out_offset;
      acc_t* grad_key = partial_data ? partial_data + (slice * plan.splits + split) * 2 * slice_elems
                                     : accumulation_rows(dk_rows, head_dim, padded_dim, own_key_grads.data());
      acc_t* grad_value = partial_data ? grad_key + slice_elems
                                       : accumulation_rows(dv_rows, head_dim, padded_dim, own_value_grads.data());
      std::fill(grad_key, grad_key + length * padded_dim, acc_t(0));
      std::fill(grad_value, grad_value + length * padded_dim, acc_t(0));

      for (int64_t qb = qb_begin; qb < qb_end; ++qb) {
        const int64_t q0 = qb * kQueryBlock, q1 = std::min(q0 + kQueryBlock, length), rows = q1 - q0;
        const int64_t block_key_end = causal ? q1 : length;
        const StagedRows<acc_t> query =
            stage_rows(head_slice<scalar_t>(*ops.query, b, h), q0, q1, head_dim, padded_dim, query_rows.data());
        const HeadSlice<scalar_t> grad_out_slice = head_slice<scalar_t>(grad_out_t, b, h);
        const StagedRows<acc_t> grad_out =
            stage_rows(grad_out_slice, q0, q1, head_dim, padded_dim, grad_out_rows.data());
        row_dot(grad_out_slice, head_slice<scalar_t>(out_t, b, h), q0, q1, head_dim, delta.data());
        const acc_t* lse_row = lse_data + slice * length + q0;
        scalar_t* dq_rows = dq_t.data_ptr<scalar_t>() + ((b * heads + h) * length + q0) * head_dim;
        acc_t* grad_q = accumulation_rows(dq_rows, head_dim, padded_dim, grad_query.data());  // [rows, padded_dim]
        std::fill(grad_q, grad_q + rows * padded_dim, acc_t(0));

        for (int64_t k0 = 0; k0 < block_key_end; k0 += kKeyBlock) {
          const int64_t keys = std::min(kKeyBlock, block_key_end - k0);
          auto group_keys = [&](int64_t g1) { return causal ? std::min(keys, q0 + g1 - k0) : keys; };
          // S = Q K^T and dP = dO V^T for this tile.
          for (int64_t g0 = 0; g0 < rows; g0 += kGemmRows) {
            const int64_t g1 = std::min(g0 + kGemmRows, rows);
            const int64_t n = group_keys(g1);
            if (n <= 0) continue;
            gemm<acc_t, false>(g1 - g0, round_up(n, kPad), padded_dim,
                               TileA<acc_t>{query.data + g0 * query.ld, query.ld, 1}, key_t.data() + k0,
                               padded_length, scores.data() + g0 * kKeyBlock, kKeyBlock);
            gemm<acc_t, false>(g1 - g0, round_up(n, kPad), padded_dim,
                               TileA<acc_t>{grad_out.data + g0 * grad_out.ld, grad_out.ld, 1}, value_t.data() + k0,
                               padded_length, score_grads.data() + g0 * kKeyBlock, kKeyBlock);
          }
          // P = exp(S * scale + mask - lse), dS = P (dP - delta) * scale (scale folded in here).
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t visible = causal ? std::min(keys, q0 + r + 1 - k0) : keys;
            probabilities_and_score_grads(scores.data() + r * kKeyBlock, score_grads.data() + r * kKeyBlock,
                                          bias ? bias + k0 : nullptr, visible, keys, scale, lse_row[r], delta[r]);
          }
          // dQ += dS K.
          for (int64_t g0 = 0; g0 < rows; g0 += kGemmRows) {
            const int64_t g1 = std::min(g0 + kGemmRows, rows);
            const int64_t n = group_keys(g1);
            if (n <= 0) continue;
            gemm<acc_t, true>(g1 - g0, padded_dim, n, TileA<acc_t>{score_grads.data() + g0 * kKeyBlock, kKeyBlock, 1},
                              key.data + k0 * key.ld, key.ld, grad_q + g0 * padded_dim, padded_dim);
          }
          // dV += P^T dO and dK += dS^T Q, over the queries that can see each group of keys.
          for (int64_t j0 = 0; j0 < keys; j0 += kGemmRows) {
            const int64_t j1 = std::min(j0 + kGemmRows, keys);
            const int64_t first_query = causal ? std::max<int64_t>(0, k0 + j0 - q0) : 0;
            if (first_query >= rows) continue;
            const int64_t count = rows - first_query;
            const int64_t tile = first_query * kKeyBlock + j0;
            gemm<acc_t, true>(j1 - j0, padded_dim, count, TileA<acc_t>{scores.data() + tile, 1, kKeyBlock},
                              grad_out.data + first_query * grad_out.ld, grad_out.ld,
                              grad_value + (k0 + j0) * padded_dim, padded_dim);
            gemm<acc_t, true>(j1 - j0, padded_dim, count, TileA<acc_t>{score_grads.data() + tile, 1, kKeyBlock},
                              query.data + first_query * query.ld, query.ld, grad_key + (k0 + j0) * padded_dim,
                              padded_dim);
          }
        }
        finish_rows(grad_q, rows, head_dim, padded_dim, dq_rows);
      }
      if (partial_data == nullptr) {
        finish_rows(grad_key, length, head_dim, padded_dim, dk_rows);
        finish_rows(grad_value, length, head_dim, padded_dim, dv_rows);
      }
    }
  });

  if (partial_data == nullptr) return;
  // Sum the split partials of each slice into dK, dV.
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> total(2 * slice_elems);
    for (int64_t slice = begin; slice < end; ++slice) {
      const int64_t h = slice % heads, b = (slice / heads) % batch, direction = slice / (heads * batch);
      std::fill(total.begin(), total.end(), acc_t(0));
      const int64_t used = length * padded_dim;  // rows past L are never written
      for (int64_t split = 0; split < plan.splits; ++split) {
        const acc_t* part = partial_data + (slice * plan.splits + split) * 2 * slice_elems;
        for (int64_t e = 0; e < used; ++e) total[e] += part[e];
        for (int64_t e = 0; e < used; ++e) total[slice_elems + e] += part[slice_elems + e];
      }
      const int64_t offset = (b * heads + h) * length * head_dim;
      store_rows(total.data(), padded_dim, length, head_dim,
                 (direction == 0 ? dk_b : dk_a).data_ptr<scalar_t>() + offset);
      store_rows(total.data() + slice_elems, padded_dim, length, head_dim,
                 (direction == 0 ? dv_b : dv_a).data_ptr<scalar_t>() + offset);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_self_attention_bwd_cpu(
    const at::Tensor& grad_o_a, const at::Tensor& grad_o_b, const at::Tensor& q_a, const at::Tensor& k_a,
    const at::Tensor& v_a, const at::Tensor& q_b, const at::Tensor& k_b, const at::Tensor& v_b,
    const at::Tensor& o_a, const at::Tensor& o_b, const at::Tensor& lse,
    const std::optional<at::Tensor>& key_padding_mask, bool causal, double scale) {
  check_attention_inputs({&q_a, &k_a, &v_a, &q_b, &k_b, &v_b}, key_padding_mask);
  check_backward_extras(q_a, grad_o_a, grad_o_b, o_a, o_b, lse);
  TORCH_CHECK(q_a.device().is_cpu(), "cross_self_attention_bwd (CPU kernel): q_a is on ", q_a.device());
  const auto options = q_a.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor dq_a = at::empty(q_a.sizes(), options), dk_a = at::empty(q_a.sizes(), options),
             dv_a = at::empty(q_a.sizes(), options), dq_b = at::empty(q_a.sizes(), options),
             dk_b = at::empty(q_a.sizes(), options), dv_b = at::empty(q_a.sizes(), options);
  const at::Tensor lse_c = lse.contiguous();
  at::Tensor mask;
  if (key_padding_mask.has_value()) mask = key_padding_mask->contiguous();
  const bool* mask_data = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q_a.scalar_type(), "cross_self_attention_bwd_cpu", [&] {
    backward_kernel<scalar_t>(grad_o_a, grad_o_b, q_a, k_a, v_a, q_b, k_b, v_b, o_a, o_b, lse_c, mask_data, causal,
                              scale, dq_a, dk_a, dv_a, dq_b, dk_b, dv_b);
  });
  return {dq_a, dk_a, dv_a, dq_b, dk_b, dv_b};
}

}  // namespace
}  // namespace srkd::cpu

TORCH_LIBRARY_IMPL(srkd_ext, CPU, m) {
  m.impl("cross_self_attention_bwd", &srkd::cpu::cross_self_attention_bwd_cpu);
}
