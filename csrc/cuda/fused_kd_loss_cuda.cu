// CUDA kernels of the fused KD loss (DESIGN.md "Op 1"; schemas in csrc/fused_kd_loss.cpp; the
// CPU kernels in csrc/cpu/fused_kd_loss_cpu.cpp define the same results).
//
// One thread block (kThreads threads) per row. For a row:
//   1. each teacher row: one pass for max / NaN / count above the target's logit (warp + block
//      reductions), then an exact radix select of the k-th largest logit (4 histogram passes for
//      float, scaling to N = 1M and beyond; no sort), ties broken by index with an ordered block
//      scan only when the k-th value repeats; a cached teacher (TeacherTopK) ranks its k cached
//      items by counting instead;
//   2. with T * k small enough, the selected items go to a shared-memory list that is turned
//      into q (sorted by item, repeated items merged); otherwise q is recomputed per item in the
//      gradient pass from the teacher rows and the (k-th key, tie cutoff) of each teacher;
//   3. the student row: one pass of online max / sums (exp(s) = exp(s / tau)^tau for a small
//      integer tau), then one pass writing the gradient, then the sparse corrections.
// Loads are 16-byte vectors when rows are aligned; accumulation is float32 (float64 for float64).
// Argument errors found on the device (a target or cached index out of range, a repeated cached
// index) are reported through a flag read back after the launch (one device sync per call).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "common/fused_kd_loss_host.h"
#include "common/fused_kd_loss_params.h"
#include "cuda/fused_kd_loss_block_ops.cuh"

namespace srkd::kd::cuda {
namespace {

enum ErrorCode : int { kNoError = 0, kTargetOutOfRange = 1, kCacheIndexOutOfRange = 2, kCacheIndexRepeated = 3 };

// The most (item, mass) entries the shared-memory list of q holds: 32 KiB of float32 masses and
// int32 items. Beyond it, dense teachers use the per-item recomputation of q.
template <typename acc_t>
constexpr int kListCapacity = 32768 / (sizeof(int) + sizeof(acc_t)) >= 4096 ? 4096 : 2048;

template <typename scalar_t, typename acc_t>
struct KernelArgs {
  KdLossParams p;
  int64_t batch;
  const scalar_t* student;
  const scalar_t* teachers[kMaxTeachers];  // dense teachers, [B, N] each
  const int64_t* cache_items;              // cached teachers, [T, B, cache_k]
  const acc_t* cache_logits;
  int64_t cache_k;
  const int64_t* target;
  const int64_t* n_valid;  // device scalar: rows not ignored
  bool mean;
  bool sparse;        // q as a shared-memory list
  int list_size;      // power of two >= T * k when sparse
  scalar_t* grad;
  acc_t* row_loss;
  acc_t* row_ce;
  acc_t* row_kd;
  bool* active;       // [T, B]
  int* error;         // [2]: ErrorCode, row
};

template <typename acc_t>
struct RowShared {
  unsigned hist[256];
  acc_t red[kWarps];
  int red_int[kWarps];
  long long red_ll[kWarps];
  acc_t t_max[kMaxTeachers];
  acc_t t_sel_sum[kMaxTeachers];
  acc_t t_log_conf[kMaxTeachers];
  acc_t t_w[kMaxTeachers];
  key_of_t<acc_t> t_kth[kMaxTeachers];
  long long t_cutoff[kMaxTeachers];
  bool t_active[kMaxTeachers];
  bool t_all[kMaxTeachers];
  acc_t z_target;
  int found;
  int count;
  bool has_kd;
};

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }

// exp(d) from e = exp(d / tau) when tau is a small integer (saves an exp per logit).
template <typename acc_t>
__device__ __forceinline__ acc_t exp_from_tau_power(acc_t e, acc_t d, int tau_power) {
  switch (tau_power) {
    case 1: return e;
    case 2: return e * e;
    case 3: return e * e * e;
    case 4: { const acc_t e2 = e * e; return e2 * e2; }
    default: return dexp(d);
  }
}

__device__ __forceinline__ void report_error(int* error, int code, int64_t row) {
  if (atomicCAS(error, kNoError, code) == kNoError) error[1] = static_cast<int>(row);
}

template <typename acc_t>
__device__ __forceinline__ bool is_selected(key_of_t<acc_t> key, int64_t j, key_of_t<acc_t> kth, long long cutoff) {
  return key > kth || (key == kth && j <= cutoff);
}

// Running max and the sums sum exp((s - m) / tau), sum exp(s - m) relative to it.
template <typename acc_t>
struct OnlineSums {
  acc_t m, sum_tau, sum_one;
};

template <typename acc_t>
__device__ __forceinline__ OnlineSums<acc_t> merge(const OnlineSums<acc_t>& a, const OnlineSums<acc_t>& b,
                                                   acc_t inv_tau) {
  const acc_t neg_inf = -INFINITY;
  if (b.m == neg_inf) return a;
  if (a.m == neg_inf) return b;
  const acc_t m = a.m > b.m ? a.m : b.m;
  const acc_t da = a.m - m, db = b.m - m;
  return {m, a.sum_tau * dexp(da * inv_tau) + b.sum_tau * dexp(db * inv_tau),
          a.sum_one * dexp(da) + b.sum_one * dexp(db)};
}

template <typename acc_t>
__device__ OnlineSums<acc_t> block_merge(OnlineSums<acc_t> v, acc_t inv_tau, acc_t* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const OnlineSums<acc_t> other{__shfl_xor_sync(kFullMask, v.m, o), __shfl_xor_sync(kFullMask, v.sum_tau, o),
                                  __shfl_xor_sync(kFullMask, v.sum_one, o)};
    v = merge(v, other, inv_tau);
  }
  __shared__ OnlineSums<acc_t> per_warp[kWarps];
  if ((threadIdx.x & 31) == 0) per_warp[threadIdx.x >> 5] = v;
  __syncthreads();
  OnlineSums<acc_t> r = per_warp[0];
  for (int w = 1; w < kWarps; ++w) r = merge(r, per_warp[w], inv_tau);
  __syncthreads();
  return r;
}

// Step 1 for a dense teacher row. Returns true when the row holds a NaN.
template <typename scalar_t, typename acc_t>
__device__ bool scan_dense_teacher(const KernelArgs<scalar_t, acc_t>& a, RowShared<acc_t>& sh, int* list_items,
                                   acc_t* list_values, int64_t t, int64_t b, int64_t y) {
  using key_t = key_of_t<acc_t>;
  const KdLossParams& p = a.p;
  const int64_t n = p.num_items, k = p.top_k;
  const acc_t inv_tau = static_cast<acc_t>(p.inv_tau);
  const scalar_t* z = a.teachers[t] + b * n;
  const acc_t z_y = static_cast<acc_t>(z[y]);
  const bool gate = p.gate_rank > 0;

  acc_t m = -INFINITY;
  bool nan = false;
  long long greater = 0;
  for_each_in_row<scalar_t, acc_t>(z, n, [&](int64_t, acc_t v) {
    if (v != v) nan = true;
    else m = v > m ? v : m;
    greater += (gate && v > z_y) ? 1 : 0;
  });
  nan = block_any(nan);
  m = block_max(m, sh.red);
  greater = block_sum<long long>(greater, sh.red_ll);
  if (threadIdx.x == 0) {
    sh.t_max[t] = m;
    sh.t_active[t] = !gate || greater + 1 <= p.gate_rank;
    sh.t_log_conf[t] = 0;
    sh.t_all[t] = k >= n;
  }
  if (nan) return true;

  acc_t sel_sum = 0;
  if (k >= n) {
    for_each_in_row<scalar_t, acc_t>(z, n, [&](int64_t, acc_t v) { sel_sum += dexp((v - m) * inv_tau); });
    sel_sum = block_sum(sel_sum, sh.red);
  } else {
    const RadixSelection<scalar_t, acc_t> sel = radix_select<scalar_t, acc_t>(z, n, k, sh.hist);
    const int64_t cutoff =
        sel.take_equal < sel.count_equal ? tie_cutoff<scalar_t, acc_t>(z, n, sel.kth, sel.take_equal, sh.red_int) : n;
    const key_t kth = sel.kth;
    if (threadIdx.x == 0) {
      sh.t_kth[t] = kth;
      sh.t_cutoff[t] = cutoff;
      sh.count = 0;
    }
    __syncthreads();
    if (a.sparse) {
      int* items = list_items + t * k;
      acc_t* values = list_values + t * k;
      for_each_in_row<scalar_t, acc_t>(z, n, [&](int64_t j, acc_t v) {
        if (is_selected<acc_t>(order_key(v), j, kth, cutoff)) {
          const int pos = atomicAdd(&sh.count, 1);
          if (pos < k) {
            items[pos] = static_cast<int>(j);
            values[pos] = v;
          }
        }
      });
      __syncthreads();
      for (int64_t i = threadIdx.x; i < k; i += kThreads) sel_sum += dexp((values[i] - m) * inv_tau);
    } else {
      for_each_in_row<scalar_t, acc_t>(z, n, [&](int64_t j, acc_t v) {
        if (is_selected<acc_t>(order_key(v), j, kth, cutoff)) sel_sum += dexp((v - m) * inv_tau);
      });
    }
    sel_sum = block_sum(sel_sum, sh.red);
  }
  if (p.confidence) {
    acc_t total = sel_sum;
    if (!(k >= n && p.tau == 1.0)) {
      total = 0;
      for_each_in_row<scalar_t, acc_t>(z, n, [&](int64_t, acc_t v) { total += dexp(v - m); });
      total = block_sum(total, sh.red);
    }
    if (threadIdx.x == 0) sh.t_log_conf[t] = z_y - (m + dlog(total));
  }
  if (threadIdx.x == 0) sh.t_sel_sum[t] = sel_sum;
  __syncthreads();
  return false;
}

// Step 1 for a cached teacher row (k_cached items): selection by counting ranks.
template <typename scalar_t, typename acc_t>
__device__ bool scan_cached_teacher(const KernelArgs<scalar_t, acc_t>& a, RowShared<acc_t>& sh, int* list_items,
                                    acc_t* list_values, int64_t t, int64_t b, int64_t y) {
  const KdLossParams& p = a.p;
  const int64_t n = p.num_items, k = p.top_k, kc = a.cache_k;
  const acc_t inv_tau = static_cast<acc_t>(p.inv_tau);
  const int64_t off = (t * a.batch + b) * kc;
  const int64_t* items = a.cache_items + off;
  const acc_t* z = a.cache_logits + off;
  const bool gate = p.gate_rank > 0;

  if (threadIdx.x == 0) sh.found = 0;
  __syncthreads();
  acc_t m = -INFINITY;
  bool nan = false;
  for (int64_t i = threadIdx.x; i < kc; i += kThreads) {
    const acc_t v = z[i];
    if (v != v) nan = true;
    else m = v > m ? v : m;
    const int64_t item = items[i];
    if (item < 0 || item >= n) report_error(a.error, kCacheIndexOutOfRange, b);
    if (item == y) {
      sh.z_target = v;
      sh.found = 1;
    }
  }
  nan = block_any(nan);
  m = block_max(m, sh.red);
  const bool found = sh.found != 0;
  const acc_t z_y = found ? sh.z_target : acc_t(-INFINITY);
  long long greater = 0;
  if (gate && found) {
    for (int64_t i = threadIdx.x; i < kc; i += kThreads) greater += z[i] > z_y ? 1 : 0;
  }
  greater = block_sum<long long>(greater, sh.red_ll);
  if (threadIdx.x == 0) {
    sh.t_max[t] = m;
    // An uncached target's rank is unknown beyond k, and gate_rank <= k: the gate closes.
    sh.t_active[t] = !gate || (found && greater + 1 <= p.gate_rank);
    sh.t_log_conf[t] = -INFINITY;
    sh.t_all[t] = false;
  }
  if (nan) return true;

  // Rank of each cached item: how many cached items are better (larger, or equal with a lower
  // item index). The top k go to the list at their rank.
  for (int64_t i = threadIdx.x; i < kc; i += kThreads) {
    const acc_t vi = z[i];
    const int64_t ii = items[i];
    int64_t rank = 0;
    bool repeated = false;
    for (int64_t j = 0; j < kc; ++j) {
      const acc_t vj = z[j];
      const int64_t ij = items[j];
      rank += (vj > vi || (vj == vi && ij < ii)) ? 1 : 0;
      repeated |= (j != i && ij == ii);
    }
    if (repeated) report_error(a.error, kCacheIndexRepeated, b);
    if (rank < k) {
      list_items[t * k + rank] = static_cast<int>(ii);
      list_values[t * k + rank] = vi;
    }
  }
  __syncthreads();
  acc_t sel_sum = 0;
  for (int64_t i = threadIdx.x; i < k; i += kThreads) sel_sum += dexp((list_values[t * k + i] - m) * inv_tau);
  sel_sum = block_sum(sel_sum, sh.red);
  if (p.confidence && found) {
    acc_t total = 0;
    for (int64_t i = threadIdx.x; i < kc; i += kThreads) total += dexp(z[i] - m);
    total = block_sum(total, sh.red);
    if (threadIdx.x == 0) sh.t_log_conf[t] = z_y - (m + dlog(total));
  }
  if (threadIdx.x == 0) sh.t_sel_sum[t] = sel_sum;
  __syncthreads();
  return false;
}

template <typename scalar_t, typename acc_t>
__device__ void write_constant_row(const KernelArgs<scalar_t, acc_t>& a, int64_t b, acc_t value) {
  scalar_t* g = a.grad + b * a.p.num_items;
  const scalar_t v = static_cast<scalar_t>(value);
  for (int64_t j = threadIdx.x; j < a.p.num_items; j += kThreads) g[j] = v;
  if (threadIdx.x == 0) a.row_loss[b] = a.row_ce[b] = a.row_kd[b] = value;
}

// __launch_bounds__(kThreads, 1): one 512-thread block per SM is enough to stream a row, and the
// register budget it leaves keeps every variant free of spills (ptxas, CUDA 13, sm_80/sm_90:
// 74-92 registers, 0 spill bytes). The 160-288 byte stack frame is thread 0's per-teacher
// weight arrays, used once per row.
template <typename scalar_t, typename acc_t, bool kCached>
__global__ void __launch_bounds__(kThreads, 1) kd_loss_rows_kernel(const KernelArgs<scalar_t, acc_t> a) {
  extern __shared__ __align__(16) unsigned char list_memory[];
  __shared__ RowShared<acc_t> sh;
  const KdLossParams& p = a.p;
  const int64_t b = blockIdx.x;
  const int64_t n = p.num_items, T = p.num_teachers, k = p.top_k;
  const int64_t row = b * n;  // int64: B * N may exceed 2^31
  const int64_t y = a.target[b];

  if (y == p.ignore_index || y < 0 || y >= n) {
    if (y != p.ignore_index && threadIdx.x == 0) report_error(a.error, kTargetOutOfRange, b);
    write_constant_row(a, b, acc_t(0));
    for (int64_t t = threadIdx.x; t < T; t += kThreads) a.active[t * a.batch + b] = false;
    return;
  }

  // Items first (int32, 4-byte aligned), then masses at an offset that keeps them aligned.
  int* list_items = reinterpret_cast<int*>(list_memory);
  acc_t* list_mass = reinterpret_cast<acc_t*>(list_memory + sizeof(int) * a.list_size);

  bool row_nan = false;
  for (int64_t t = 0; t < T; ++t) {
    const bool nan = kCached ? scan_cached_teacher(a, sh, list_items, list_mass, t, b, y)
                             : scan_dense_teacher(a, sh, list_items, list_mass, t, b, y);
    row_nan = row_nan || nan;
  }
  __syncthreads();
  for (int64_t t = threadIdx.x; t < T; t += kThreads) a.active[t * a.batch + b] = sh.t_active[t];
  if (row_nan) {
    write_constant_row(a, b, acc_t(NAN));
    return;
  }

  const acc_t tau = static_cast<acc_t>(p.tau), inv_tau = static_cast<acc_t>(p.inv_tau);
  const acc_t alpha = static_cast<acc_t>(p.alpha);
  if (threadIdx.x == 0) {
    acc_t log_w[kMaxTeachers];
    bool active[kMaxTeachers];
    for (int64_t t = 0; t < T; ++t) {
      log_w[t] = teacher_log_weight<acc_t>(p, t, sh.t_log_conf[t]);
      active[t] = sh.t_active[t];
    }
    sh.has_kd = mixture_weights<acc_t>(p, log_w, active, sh.t_w);
  }
  __syncthreads();
  const bool has_kd = sh.has_kd;

  // q as a list: mass of each selected item, sorted by item, repeated items merged into the first.
  const bool list_q = a.sparse && has_kd;
  if (list_q) {
    const int used = static_cast<int>(T * k);
    for (int i = threadIdx.x; i < a.list_size; i += kThreads) {
      if (i < used) {
        const int64_t t = i / k;
        const acc_t w = sh.t_w[t];
        list_mass[i] = w > 0 ? w / sh.t_sel_sum[t] * dexp((list_mass[i] - sh.t_max[t]) * inv_tau) : acc_t(0);
      } else {
        list_items[i] = INT_MAX;
        list_mass[i] = 0;
      }
    }
    __syncthreads();
    sort_pairs_by_item(list_items, list_mass, a.list_size);
    constexpr int kPerThread = kListCapacity<acc_t> / kThreads;
    acc_t merged[kPerThread];
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int i = threadIdx.x + r * kThreads;
      merged[r] = 0;
      if (i < a.list_size && (i == 0 || list_items[i - 1] != list_items[i])) {
        for (int j = i; j < a.list_size && list_items[j] == list_items[i]; ++j) merged[r] += list_mass[j];
      }
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int i = threadIdx.x + r * kThreads;
      if (i < a.list_size) list_mass[i] = merged[r];
    }
    __syncthreads();
  }

  // Student: online max and sums, then the gradient row.
  const scalar_t* s = a.student + row;
  OnlineSums<acc_t> acc{-INFINITY, 0, 0};
  bool s_nan = false;
  for_each_in_row<scalar_t, acc_t>(s, n, [&](int64_t, acc_t x) {
    if (x != x) {
      s_nan = true;
    } else if (x > acc.m) {
      acc.sum_tau = acc.sum_tau * dexp((acc.m - x) * inv_tau) + acc_t(1);
      acc.sum_one = acc.sum_one * dexp(acc.m - x) + acc_t(1);
      acc.m = x;
    } else if (x > -INFINITY) {
      const acc_t d = x - acc.m;
      const acc_t e = dexp(d * inv_tau);
      acc.sum_tau += e;
      acc.sum_one += exp_from_tau_power(e, d, p.tau_power);
    }
  });
  s_nan = block_any(s_nan);
  const OnlineSums<acc_t> st = block_merge(acc, inv_tau, sh.red);
  if (s_nan) {
    write_constant_row(a, b, acc_t(NAN));
    return;
  }
  const acc_t scale = a.mean ? acc_t(1) / static_cast<acc_t>(*a.n_valid > 1 ? *a.n_valid : 1) : acc_t(1);
  const acc_t ce_coef = alpha * scale / st.sum_one;
  const acc_t kd_scale = has_kd ? (1 - alpha) * tau * scale : acc_t(0);
  const acc_t kd_coef = kd_scale / st.sum_tau;
  const acc_t log_sum_tau = dlog(st.sum_tau);
  const bool dense_q = has_kd && !a.sparse;
  scalar_t* g = a.grad + row;
  acc_t kl = 0;
  transform_row<scalar_t, acc_t>(s, g, n, [&](int64_t j, acc_t x) {
    const acc_t d = x - st.m;
    const acc_t e_tau = dexp(d * inv_tau);
    acc_t gj = ce_coef * exp_from_tau_power(e_tau, d, p.tau_power) + kd_coef * e_tau;
    if (dense_q) {
      acc_t q = 0;
      for (int64_t t = 0; t < T; ++t) {
        if (sh.t_w[t] > 0) {
          const acc_t zv = static_cast<acc_t>(a.teachers[t][row + j]);
          if (sh.t_all[t] || is_selected<acc_t>(order_key(zv), j, sh.t_kth[t], sh.t_cutoff[t])) {
            q += sh.t_w[t] / sh.t_sel_sum[t] * dexp((zv - sh.t_max[t]) * inv_tau);
          }
        }
      }
      if (q > 0) {
        gj -= kd_scale * q;
        kl += q * (dlog(q) - (d * inv_tau - log_sum_tau));
      }
    }
    return gj;
  });
  __syncthreads();  // the gradient row is written before the sparse corrections read it
  if (list_q) {
    for (int i = threadIdx.x; i < a.list_size; i += kThreads) {
      const acc_t q = list_mass[i];
      if (q > 0) {
        const int64_t item = list_items[i];
        const acc_t d = static_cast<acc_t>(s[item]) - st.m;
        g[item] = static_cast<scalar_t>(static_cast<acc_t>(g[item]) - kd_scale * q);
        kl += q * (dlog(q) - (d * inv_tau - log_sum_tau));
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) g[y] = static_cast<scalar_t>(static_cast<acc_t>(g[y]) - alpha * scale);
  kl = block_sum(kl, sh.red);
  if (threadIdx.x == 0) {
    const acc_t ce = dlog(st.sum_one) + st.m - static_cast<acc_t>(s[y]);
    const acc_t kd = has_kd ? tau * tau * kl : acc_t(0);
    a.row_ce[b] = ce;
    a.row_kd[b] = kd;
    a.row_loss[b] = alpha * ce + (1 - alpha) * kd;
  }
}

int64_t next_power_of_two(int64_t v) {
  int64_t r = 1;
  while (r < v) r <<= 1;
  return r;
}

template <typename scalar_t, bool kCached>
void launch(const KdLossParams& p, const at::Tensor& student, const std::vector<at::Tensor>& teachers,
            const at::Tensor& cache_items, const at::Tensor& cache_logits, const at::Tensor& target,
            const at::Tensor& n_valid, bool mean, const at::Tensor& error, const KdOutputs& outputs) {
  using acc_t = at::opmath_type<scalar_t>;
  KernelArgs<scalar_t, acc_t> a{};
  a.p = p;
  a.batch = student.size(0);
  a.student = student.data_ptr<scalar_t>();
  for (size_t t = 0; t < teachers.size(); ++t) a.teachers[t] = teachers[t].data_ptr<scalar_t>();
  if constexpr (kCached) {
    a.cache_items = cache_items.data_ptr<int64_t>();
    a.cache_logits = cache_logits.data_ptr<acc_t>();
    a.cache_k = cache_items.size(2);
  }
  a.target = target.data_ptr<int64_t>();
  a.n_valid = n_valid.data_ptr<int64_t>();
  a.mean = mean;
  const int64_t entries = p.num_teachers * p.top_k;
  a.sparse = entries <= kListCapacity<acc_t>;
  TORCH_CHECK(!kCached || a.sparse, "fused_kd_loss (CUDA): a teacher cache with T * top_k = ", entries,
              " selected entries exceeds the kernel's list of ", kListCapacity<acc_t>, "; lower top_k");
  a.list_size = a.sparse ? static_cast<int>(next_power_of_two(entries)) : 0;
  a.grad = std::get<1>(outputs).data_ptr<scalar_t>();
  a.row_loss = std::get<0>(outputs).data_ptr<acc_t>();
  a.row_ce = std::get<2>(outputs).data_ptr<acc_t>();
  a.row_kd = std::get<3>(outputs).data_ptr<acc_t>();
  a.active = std::get<4>(outputs).data_ptr<bool>();
  a.error = error.data_ptr<int>();
  if (a.batch == 0) return;
  const size_t list_bytes = a.sparse ? a.list_size * (sizeof(int) + sizeof(acc_t)) : 0;
  kd_loss_rows_kernel<scalar_t, acc_t, kCached>
      <<<static_cast<unsigned>(a.batch), kThreads, list_bytes, at::cuda::getCurrentCUDAStream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Reduction on the device (no sync), then the one sync: the error flag.
void finish(KdOutputs& outputs, Reduction reduction, const at::Tensor& n_valid, const at::Tensor& error,
            int64_t ignore_index, int64_t n_items) {
  at::Tensor& rows = std::get<0>(outputs);
  if (reduction == Reduction::kSum) {
    rows = rows.sum();
  } else if (reduction == Reduction::kMean) {
    rows = rows.sum() / n_valid.clamp_min(1).to(rows.scalar_type());
  }
  const at::Tensor e = error.cpu();
  const int code = e[0].item<int>(), row = e[1].item<int>();
  TORCH_CHECK(code != kTargetOutOfRange, "fused_kd_loss: target[", row, "] is outside [0, N) = [0, ", n_items,
              ") and is not ignore_index (", ignore_index, ")");
  TORCH_CHECK(code != kCacheIndexOutOfRange, "fused_kd_loss: teacher_indices holds an item outside [0, N) = [0, ",
              n_items, ") in row ", row);
  TORCH_CHECK(code != kCacheIndexRepeated, "fused_kd_loss: teacher_indices repeats an item in row ", row,
              "; cached items must be distinct");
}

KdOutputs fused_kd_loss_dense_cuda(const at::Tensor& student_logits, at::TensorList teacher_logits,
                                   const at::Tensor& target, double temperature, int64_t top_k,
                                   std::optional<int64_t> gate_rank,
                                   std::optional<at::ArrayRef<double>> teacher_weights, bool confidence_weights,
                                   double alpha, int64_t ignore_index, c10::string_view reduction) {
  const KdCall call = prepare_dense_call(student_logits, teacher_logits, target, temperature, top_k, gate_rank,
                                         teacher_weights, confidence_weights, alpha, ignore_index, reduction);
  const Reduction red = call.reduction;
  const KdLossParams& p = call.params;
  const c10::cuda::CUDAGuard guard(student_logits.device());
  const at::Tensor s = student_logits.contiguous();
  const at::Tensor y = target.contiguous();
  const std::vector<at::Tensor> teachers = contiguous_teachers(teacher_logits);
  KdOutputs outputs = allocate_outputs(s, p.num_teachers);
  const at::Tensor n_valid = y.ne(ignore_index).sum();
  const at::Tensor error = at::zeros({2}, y.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "fused_kd_loss_dense_cuda", [&] {
    launch<scalar_t, false>(p, s, teachers, at::Tensor(), at::Tensor(), y, n_valid, red == Reduction::kMean, error,
                            outputs);
  });
  finish(outputs, red, n_valid, error, ignore_index, p.num_items);
  return outputs;
}

KdOutputs fused_kd_loss_cached_cuda(const at::Tensor& student_logits, const at::Tensor& teacher_indices,
                                    const at::Tensor& teacher_logits, const at::Tensor& target, double temperature,
                                    int64_t top_k, std::optional<int64_t> gate_rank,
                                    std::optional<at::ArrayRef<double>> teacher_weights, bool confidence_weights,
                                    double alpha, int64_t ignore_index, c10::string_view reduction) {
  const KdCall call = prepare_cached_call(student_logits, teacher_indices, teacher_logits, target, temperature,
                                          top_k, gate_rank, teacher_weights, confidence_weights, alpha,
                                          ignore_index, reduction);
  const Reduction red = call.reduction;
  const KdLossParams& p = call.params;
  const c10::cuda::CUDAGuard guard(student_logits.device());
  const at::Tensor s = student_logits.contiguous();
  const at::Tensor y = target.contiguous();
  KdOutputs outputs = allocate_outputs(s, p.num_teachers);
  const at::Tensor n_valid = y.ne(ignore_index).sum();
  const at::Tensor error = at::zeros({2}, y.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "fused_kd_loss_cached_cuda", [&] {
    launch<scalar_t, true>(p, s, {}, teacher_indices.contiguous(), teacher_logits.contiguous(), y, n_valid,
                           red == Reduction::kMean, error, outputs);
  });
  finish(outputs, red, n_valid, error, ignore_index, p.num_items);
  return outputs;
}

}  // namespace
}  // namespace srkd::kd::cuda

TORCH_LIBRARY_IMPL(srkd_ext, CUDA, m) {
  m.impl("fused_kd_loss_dense", &srkd::kd::cuda::fused_kd_loss_dense_cuda);
  m.impl("fused_kd_loss_cached", &srkd::kd::cuda::fused_kd_loss_cached_cuda);
}
