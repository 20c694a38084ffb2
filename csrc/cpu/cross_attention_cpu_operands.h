// Tile sizes and operand staging for the cross_self_attention CPU kernels.
//
// Each task works on one (direction, batch, head) slice [L, D] of the [B, H, L, D] inputs.
// Operands are staged as compute-type (float, or double for float64 inputs) rows padded to
// Dp = D rounded up to 8, so the tile GEMM always sees whole SIMD vectors; a float32 slice
// whose rows are already contiguous with D a multiple of 8 is used in place (no copy).
// Keys (and, in the backward, values) are also staged transposed, [Dp, Lp], because a score
// tile S = Q . K^T wants K^T rows as the streamed operand.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace srkd::cpu {

// Queries per task / per tile, and keys per tile (the online-softmax step). 64 x 128 floats of
// scores (32 KiB) stay in L1/L2 next to the staged K^T and V of the slice.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 128;
// Row padding of staged operands: one AVX2 float vector (two double vectors).
constexpr int64_t kPad = 8;

inline int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }
inline int64_t ceil_div(int64_t x, int64_t d) { return (x + d - 1) / d; }

// The float type a kernel computes in for inputs of type scalar_t.
template <typename scalar_t>
using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// One [L, D] slice (batch b, head h) of a [B, H, L, D] tensor, any strides.
template <typename scalar_t>
struct HeadSlice {
  const scalar_t* data;
  int64_t row_stride;
  int64_t col_stride;

  scalar_t at(int64_t row, int64_t col) const { return data[row * row_stride + col * col_stride]; }
};

template <typename scalar_t>
HeadSlice<scalar_t> head_slice(const at::Tensor& t, int64_t b, int64_t h) {
  return {t.const_data_ptr<scalar_t>() + b * t.stride(0) + h * t.stride(1), t.stride(2), t.stride(3)};
}

// Rows of a staged operand: row r at data + r * ld, Dp readable columns.
template <typename acc_t>
struct StagedRows {
  const acc_t* data;
  int64_t ld;
};

// Rows [row0, row1) of `s` as compute-type rows of width Dp (zero padded), in place when the
// layout already fits; `buffer` holds (row1 - row0) * Dp values otherwise.
template <typename scalar_t, typename acc_t>
StagedRows<acc_t> stage_rows(HeadSlice<scalar_t> s, int64_t row0, int64_t row1, int64_t head_dim,
                             int64_t padded_dim, acc_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (s.col_stride == 1 && head_dim == padded_dim) {
      return {s.data + row0 * s.row_stride, s.row_stride};
    }
  }
  for (int64_t r = row0; r < row1; ++r) {
    acc_t* dst = buffer + (r - row0) * padded_dim;
    for (int64_t d = 0; d < head_dim; ++d) dst[d] = static_cast<acc_t>(s.at(r, d));
    std::fill(dst + head_dim, dst + padded_dim, acc_t(0));
  }
  return {buffer, padded_dim};
}

// buffer[d * ld + j] = s(j, d) for j < rows, zero for the padding (d >= D or rows <= j < ld).
template <typename scalar_t, typename acc_t>
void stage_transposed(HeadSlice<scalar_t> s, int64_t rows, int64_t head_dim, int64_t padded_dim, acc_t* buffer,
                      int64_t ld) {
  int64_t j = 0;
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    // The common float32 layout: 8 x 8 register transposes instead of strided scalar stores.
    if (s.col_stride == 1 && head_dim % 8 == 0) {
      for (; j + 8 <= rows; j += 8) {
        for (int64_t d = 0; d < head_dim; d += 8) {
          at::vec::transpose_mxn<float, 8, 8>(s.data + j * s.row_stride + d, s.row_stride, buffer + d * ld + j, ld);
        }
      }
    }
  }
  for (; j < rows; ++j) {
    for (int64_t d = 0; d < head_dim; ++d) buffer[d * ld + j] = static_cast<acc_t>(s.at(j, d));
  }
  for (int64_t d = 0; d < padded_dim; ++d) {
    acc_t* row = buffer + d * ld;
    std::fill(row + (d < head_dim ? rows : 0), row + ld, acc_t(0));
  }
}

// Additive key mask of batch b: 0 for real keys, -inf for padding. Returns nullptr (no mask)
// when key_padding_mask is absent.
template <typename acc_t>
const acc_t* stage_key_bias(const bool* key_padding_mask, int64_t b, int64_t length, acc_t* buffer) {
  if (key_padding_mask == nullptr) return nullptr;
  const bool* row = key_padding_mask + b * length;
  for (int64_t j = 0; j < length; ++j) {
    buffer[j] = row[j] ? -std::numeric_limits<acc_t>::infinity() : acc_t(0);
  }
  return buffer;
}

// dst row r (contiguous, D values of scalar_t) = src row r (compute type, first D columns).
template <typename scalar_t, typename acc_t>
void store_rows(const acc_t* src, int64_t src_ld, int64_t rows, int64_t head_dim, scalar_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      std::copy(src + r * src_ld, src + r * src_ld + head_dim, dst + r * head_dim);
    } else {
      for (int64_t d = 0; d < head_dim; ++d) dst[r * head_dim + d] = static_cast<scalar_t>(src[r * src_ld + d]);
    }
  }
}

// Where a task accumulates rows it will write to the contiguous output `out_rows`: the output
// itself when it already has the compute type and no column padding (no copy at the end),
// else `scratch` (finish_rows then converts).
template <typename scalar_t, typename acc_t>
acc_t* accumulation_rows(scalar_t* out_rows, int64_t head_dim, int64_t padded_dim, acc_t* scratch) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (head_dim == padded_dim) return out_rows;
  }
  return scratch;
}

template <typename scalar_t, typename acc_t>
void finish_rows(const acc_t* acc, int64_t rows, int64_t head_dim, int64_t padded_dim, scalar_t* out_rows) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (acc == out_rows) return;
  }
  store_rows(acc, padded_dim, rows, head_dim, out_rows);
}

// Which tensors one direction reads: direction 0 = a queries attend to b keys/values,
// direction 1 = b queries attend to a keys/values.
struct DirectionOperands {
  const at::Tensor* query;
  const at::Tensor* key;
  const at::Tensor* value;
};

inline DirectionOperands direction_operands(int64_t direction, const at::Tensor& q_a, const at::Tensor& k_a,
                                            const at::Tensor& v_a, const at::Tensor& q_b, const at::Tensor& k_b,
                                            const at::Tensor& v_b) {
  return direction == 0 ? DirectionOperands{&q_a, &k_b, &v_b} : DirectionOperands{&q_b, &k_a, &v_a};
}

}  // namespace srkd::cpu
