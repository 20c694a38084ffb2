// Register-blocked GEMM on small tiles for the cross_self_attention CPU kernels.
//
// The attention tiles are tiny (a 64 x 128 score block, a head dim of 32), so one BLAS call
// per tile would spend more time in call overhead and packing than in arithmetic; this
// micro-kernel keeps an R x (NV vectors) block of C in registers and streams A and B through
// broadcasts and unaligned loads, with no packing. Every product of the forward and backward
// passes is one of these calls:
//   S  = Q  . K^T    (B = K transposed once per (batch, head))
//   O += P  . V      dP = dO . V^T
//   dV += P^T . dO   dK += dS^T . Q   (A read transposed through its strides: no transpose pass)
//   dQ += dS . K
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace srkd::cpu {

// A(r, p) = a[r * a_row + p * a_col]; B and C are row-major with leading dims ldb / ldc.
template <typename T>
struct TileA {
  const T* data;
  int64_t row_stride;
  int64_t col_stride;
};

// C[R, NV * W] (+)= A[R, k] . B[k, NV * W], W = the SIMD width of T.
template <typename T, int R, int NV, bool kAccumulate>
inline void gemm_micro(int64_t k, TileA<T> a, const T* b, int64_t ldb, T* c, int64_t ldc) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int W = Vec::size();
  Vec acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = kAccumulate ? Vec::loadu(c + r * ldc + v * W) : Vec(T(0));
    }
  }
  for (int64_t p = 0; p < k; ++p) {
    Vec bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      bv[v] = Vec::loadu(b + p * ldb + v * W);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec av(a.data[r * a.row_stride + p * a.col_stride]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        acc[r][v] = at::vec::fmadd(av, bv[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      acc[r][v].store(c + r * ldc + v * W);
    }
  }
}

// Rows [0, m) of one column strip: full R-row blocks, then one smaller block for the rest.
template <typename T, int R, int NV, bool kAccumulate>
inline void gemm_strip(int64_t m, int64_t k, TileA<T> a, const T* b, int64_t ldb, T* c, int64_t ldc) {
  int64_t row = 0;
  for (; row + R <= m; row += R) {
    gemm_micro<T, R, NV, kAccumulate>(k, TileA<T>{a.data + row * a.row_stride, a.row_stride, a.col_stride}, b, ldb,
                                      c + row * ldc, ldc);
  }
  const TileA<T> rest{a.data + row * a.row_stride, a.row_stride, a.col_stride};
  T* c_rest = c + row * ldc;
  switch (m - row) {
    case 5: if constexpr (R > 5) gemm_micro<T, 5, NV, kAccumulate>(k, rest, b, ldb, c_rest, ldc); break;
    case 4: if constexpr (R > 4) gemm_micro<T, 4, NV, kAccumulate>(k, rest, b, ldb, c_rest, ldc); break;
    case 3: if constexpr (R > 3) gemm_micro<T, 3, NV, kAccumulate>(k, rest, b, ldb, c_rest, ldc); break;
    case 2: if constexpr (R > 2) gemm_micro<T, 2, NV, kAccumulate>(k, rest, b, ldb, c_rest, ldc); break;
    case 1: gemm_micro<T, 1, NV, kAccumulate>(k, rest, b, ldb, c_rest, ldc); break;
    default: break;
  }
}

// Rows per causal trimming group used by the callers (a multiple of the 3-row blocks below).
constexpr int kGemmRows = 6;

// C[m, n] (+)= A[m, k] . B[k, n]. n must be a multiple of the SIMD width W (callers pad their
// buffers); m and k are arbitrary. k == 0 with kAccumulate leaves C untouched.
// Register blocks hold 12 accumulators (AVX2 has 16 registers; FMA latency x 2 ports needs
// about 10 in flight): 3 rows x 4 vectors while 4 vectors of columns remain, whose B loads
// are shared by 3 rows; 6 rows x 2 or 1 vectors for the rest.
template <typename T, bool kAccumulate>
inline void gemm(int64_t m, int64_t n, int64_t k, TileA<T> a, const T* b, int64_t ldb, T* c, int64_t ldc) {
  constexpr int W = at::vec::Vectorized<T>::size();
  int64_t col = 0;
  for (; col + 4 * W <= n; col += 4 * W) gemm_strip<T, 3, 4, kAccumulate>(m, k, a, b + col, ldb, c + col, ldc);
  for (; col + 2 * W <= n; col += 2 * W) gemm_strip<T, 6, 2, kAccumulate>(m, k, a, b + col, ldb, c + col, ldc);
  if (col < n) gemm_strip<T, 6, 1, kAccumulate>(m, k, a, b + col, ldb, c + col, ldc);
}

}  // namespace srkd::cpu
