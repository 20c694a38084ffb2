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

template <typename T, int R, bool kAccumulate>
inline void gemm_row_group(int64_t n, int64_t k, TileA<T> a, const T* b, int64_t ldb, T* c, int64_t ldc) {
  constexpr int W = at::vec::Vectorized<T>::size();
  int64_t col = 0;
  for (; col + 2 * W <= n; col += 2 * W) {
    gemm_micro<T, R, 2, kAccumulate>(k, a, b + col, ldb, c + col, ldc);
  }
  if (col < n) {  // n is a multiple of W: at most one vector left
    gemm_micro<T, R, 1, kAccumulate>(k, a, b + col, ldb, c + col, ldc);
  }
}

// Rows per register block: 4 rows x 2 vectors = 8 accumulators, which leaves AVX2's other
// 8 registers for the B vectors and the broadcast A values.
constexpr int kGemmRows = 4;

// C[m, n] (+)= A[m, k] . B[k, n]. n must be a multiple of the SIMD width (callers pad their
// buffers); m and k are arbitrary. k == 0 with kAccumulate leaves C untouched.
template <typename T, bool kAccumulate>
inline void gemm(int64_t m, int64_t n, int64_t k, TileA<T> a, const T* b, int64_t ldb, T* c,
                 int64_t ldc) {
  int64_t row = 0;
  for (; row + kGemmRows <= m; row += kGemmRows) {
    TileA<T> a_rows{a.data + row * a.row_stride, a.row_stride, a.col_stride};
    gemm_row_group<T, kGemmRows, kAccumulate>(n, k, a_rows, b, ldb, c + row * ldc, ldc);
  }
  TileA<T> a_rows{a.data + row * a.row_stride, a.row_stride, a.col_stride};
  switch (m - row) {
    case 3: gemm_row_group<T, 3, kAccumulate>(n, k, a_rows, b, ldb, c + row * ldc, ldc); break;
    case 2: gemm_row_group<T, 2, kAccumulate>(n, k, a_rows, b, ldb, c + row * ldc, ldc); break;
    case 1: gemm_row_group<T, 1, kAccumulate>(n, k, a_rows, b, ldb, c + row * ldc, ldc); break;
    default: break;
  }
}

}  // namespace srkd::cpu
