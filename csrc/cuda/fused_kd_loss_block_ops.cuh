// Block-level building blocks of the fused KD loss CUDA kernel (csrc/cuda/fused_kd_loss_cuda.cu):
// warp/block reductions, an index-ordered block scan, vectorised row traversal and an exact
// radix select of the k-th largest logit. One thread block works on one row; every function
// here must be called by all threads of the block (they synchronise).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace srkd::kd::cuda {

constexpr int kThreads = 512;  // per block: 16 warps, one row
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// NaN-propagating max (a NaN anywhere makes the result NaN).
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) {
  return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b);
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Block sum / max, broadcast to every thread. scratch: kWarps entries of shared memory.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

template <typename T>
__device__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T m = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) m = nan_max(m, scratch[w]);
  __syncthreads();
  return m;
}

__device__ __forceinline__ bool block_any(bool v) { return __syncthreads_or(v) != 0; }

// Exclusive prefix count of `flag` over the block in thread order; *total gets the block's count.
__device__ inline int block_exclusive_count(bool flag, int* scratch, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned ballot = __ballot_sync(kFullMask, flag);
  const int in_warp = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0) scratch[warp] = __popc(ballot);
  __syncthreads();
  int before = 0, all = 0;
  for (int w = 0; w < kWarps; ++w) {
    before += (w < warp) ? scratch[w] : 0;
    all += scratch[w];
  }
  __syncthreads();
  *total = all;
  return before + in_warp;
}

// Loads of a row as the accumulation type, 16 bytes per thread when the row is aligned.
template <typename scalar_t, typename acc_t, typename F>
__device__ __forceinline__ void for_each_in_row(const scalar_t* row, int64_t n, F f) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  struct alignas(16) Pack {
    scalar_t v[kVec];
  };
  int64_t head = 0;
  if (reinterpret_cast<uintptr_t>(row) % 16 == 0) {
    const int64_t packs = n / kVec;
    const Pack* p = reinterpret_cast<const Pack*>(row);
    for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
      const Pack pk = p[i];
#pragma unroll
      for (int l = 0; l < kVec; ++l) f(i * kVec + l, static_cast<acc_t>(pk.v[l]));
    }
    head = packs * kVec;
  }
  for (int64_t j = head + threadIdx.x; j < n; j += kThreads) f(j, static_cast<acc_t>(row[j]));
}

// Writes out[j] = f(j, in[j]) over a row, vectorised when both rows are aligned.
template <typename scalar_t, typename acc_t, typename F>
__device__ __forceinline__ void transform_row(const scalar_t* in, scalar_t* out, int64_t n, F f) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  struct alignas(16) Pack {
    scalar_t v[kVec];
  };
  int64_t head = 0;
  if (reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    const int64_t packs = n / kVec;
    const Pack* p = reinterpret_cast<const Pack*>(in);
    Pack* q = reinterpret_cast<Pack*>(out);
    for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
      const Pack pk = p[i];
      Pack o;
#pragma unroll
      for (int l = 0; l < kVec; ++l) o.v[l] = static_cast<scalar_t>(f(i * kVec + l, static_cast<acc_t>(pk.v[l])));
      q[i] = o;
    }
    head = packs * kVec;
  }
  for (int64_t j = head + threadIdx.x; j < n; j += kThreads) out[j] = static_cast<scalar_t>(f(j, static_cast<acc_t>(in[j])));
}

// Order-preserving unsigned keys of floating values (larger value -> larger key). -0 and +0 get
// the same key: they are equal logits, and ties are broken by index, not by sign.
__device__ __forceinline__ uint32_t order_key(float f) {
  if (f == 0.f) f = 0.f;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint64_t order_key(double f) {
  if (f == 0.0) f = 0.0;
  const uint64_t u = static_cast<uint64_t>(__double_as_longlong(f));
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

template <typename acc_t>
using key_of_t = decltype(order_key(acc_t(0)));

// The k-th largest of a NaN-free row, exactly: radix select over the order keys, 8 bits per
// pass, from the most significant digit (4 passes for float, 8 for double; each pass reads the
// row, which on a GPU costs less than sorting it). Ties: the selection is {key > kth} plus the
// first `take_equal` items (in index order) with key == kth; `count_equal` is how many there are.
template <typename scalar_t, typename acc_t>
struct RadixSelection {
  key_of_t<acc_t> kth;
  int64_t take_equal;
  int64_t count_equal;
};

template <typename scalar_t, typename acc_t>
__device__ RadixSelection<scalar_t, acc_t> radix_select(const scalar_t* row, int64_t n, int64_t k, unsigned* hist) {
  using key_t = key_of_t<acc_t>;
  constexpr int kBits = 8 * sizeof(key_t);
  __shared__ key_t s_prefix;
  __shared__ long long s_remaining;
  __shared__ long long s_count_equal;
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_remaining = k;
  }
  key_t mask = 0;
  for (int shift = kBits - 8; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += kThreads) hist[d] = 0;
    __syncthreads();
    const key_t prefix = s_prefix;
    for_each_in_row<scalar_t, acc_t>(row, n, [&](int64_t, acc_t v) {
      const key_t key = order_key(v);
      // Early passes put most of a row in a handful of bins (sign and exponent bits): lanes of
      // a warp with the same digit add once, through their lowest lane.
      const unsigned digit = (key & mask) == prefix ? static_cast<unsigned>((key >> shift) & 0xff) : 256u;
      const unsigned peers = __match_any_sync(__activemask(), digit);
      if (digit < 256u && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
    });
    __syncthreads();
    if (threadIdx.x == 0) {  // walk the digits from the largest down to the k-th item's digit
      long long above = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= s_remaining) {
          s_prefix = prefix | (static_cast<key_t>(d) << shift);
          s_remaining -= above;
          s_count_equal = hist[d];
          break;
        }
        above += hist[d];
      }
    }
    mask |= static_cast<key_t>(0xff) << shift;
    __syncthreads();
  }
  RadixSelection<scalar_t, acc_t> r{s_prefix, s_remaining, s_count_equal};
  __syncthreads();
  return r;
}

// Index of the take_equal-th item (1-based, in index order) whose key equals kth; the selected
// ties are those with index <= the returned one. Scans the row in block-sized rounds in order.
template <typename scalar_t, typename acc_t>
__device__ int64_t tie_cutoff(const scalar_t* row, int64_t n, key_of_t<acc_t> kth, int64_t take_equal,
                              int* scratch) {
  __shared__ long long s_cutoff;
  if (threadIdx.x == 0) s_cutoff = n;
  __syncthreads();
  long long seen = 0;
  for (int64_t base = 0; base < n && seen < take_equal; base += kThreads) {
    const int64_t j = base + threadIdx.x;
    const bool equal = j < n && order_key(static_cast<acc_t>(row[j])) == kth;
    int round_total = 0;
    const int before = block_exclusive_count(equal, scratch, &round_total);
    if (equal && seen + before + 1 == take_equal) s_cutoff = j;
    seen += round_total;  // the same value in every thread: the loop exits together
  }
  __syncthreads();
  const int64_t cutoff = s_cutoff;
  __syncthreads();
  return cutoff;
}

// Bitonic sort of `size` (a power of two) (item, mass) pairs in shared memory by item.
template <typename acc_t>
__device__ void sort_pairs_by_item(int* items, acc_t* mass, int size) {
  for (int width = 2; width <= size; width <<= 1) {
    for (int stride = width >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < size; i += kThreads) {
        const int partner = i ^ stride;
        if (partner > i) {
          const bool ascending = (i & width) == 0;
          if ((items[i] > items[partner]) == ascending) {
            const int ti = items[i];
            items[i] = items[partner];
            items[partner] = ti;
            const acc_t tm = mass[i];
            mass[i] = mass[partner];
            mass[partner] = tm;
          }
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace srkd::kd::cuda
