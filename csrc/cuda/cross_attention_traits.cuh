// Every tunable of the cross_self_attention CUDA kernels in one place (flash-attention style).
//
// Both kernels use 128 threads seen as a 16 x 8 grid (ty = tid / 8, tx = tid % 8). A thread owns
// a few consecutive rows (ty) of a tile and the columns tx, tx + 8, tx + 16, ... so that the
// 8 threads of a row read 8 consecutive floats of shared memory (no bank conflicts) and the
// threads of different rows read broadcast values. Shared-memory rows are padded by one float
// for the same reason when a tile is read column-wise.
//
// Head dims are rounded up to a bucket kHeadDim in {32, 64, 128}; the accumulators a thread
// keeps in registers scale with it.
#pragma once

#include <cstddef>

namespace srkd::cuda {

constexpr int kThreads = 128;
constexpr int kThreadRows = kThreads / 8;  // the ty extent
constexpr int kThreadCols = 8;             // the tx extent

// Forward: a block owns kBlockQ queries of one (direction, batch, head) and streams key/value
// tiles of kBlockK rows through shared memory with an online softmax.
template <int kHeadDim_>
struct ForwardTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockQ = 64;
  // 128-wide rows halve the key tile so Q, K, V and P stay near 75 KiB of shared memory.
  static constexpr int kBlockK = kHeadDim_ >= 128 ? 32 : 64;
  static constexpr int kRowsPerThread = kBlockQ / kThreadRows;    // query rows of a thread: 4
  static constexpr int kKeysPerThread = kBlockK / kThreadCols;    // score columns of a thread
  static constexpr int kDimsPerThread = kHeadDim / kThreadCols;   // output columns of a thread
  static constexpr int kRowStride = kHeadDim + 1;                  // Q, K, V tiles in shared memory
  static constexpr int kScoreStride = kBlockK + 1;                 // the P tile
  static_assert(kThreads == 2 * kBlockQ, "the softmax step pairs two threads per query row");
  static constexpr size_t kSharedFloats =
      kBlockQ * kRowStride + 2 * kBlockK * kRowStride + kBlockQ * kScoreStride + 3 * kBlockQ;
  static constexpr size_t kSharedBytes = kSharedFloats * sizeof(float);
};

// Backward: a block owns kBlockK keys of one (direction, batch, head), keeps their dK and dV
// in registers and streams query tiles of kBlockQ rows (Q, dO, lse, delta); dQ is accumulated
// in float32 global memory with atomics.
template <int kHeadDim_>
struct BackwardTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockQ = 32;
  static constexpr int kBlockK = kHeadDim_ >= 128 ? 32 : 64;
  static constexpr int kRowsPerThread = kBlockQ / kThreadRows;   // query rows of a thread: 2
  static constexpr int kKeysPerThread = kBlockK / kThreadCols;   // score columns of a thread
  static constexpr int kKeyRowsPerThread = kBlockK / kThreadRows;  // dK/dV rows of a thread
  static constexpr int kDimsPerThread = kHeadDim / kThreadCols;
  static constexpr int kRowStride = kHeadDim + 1;
  static constexpr int kScoreStride = kBlockK + 1;
  static constexpr size_t kSharedFloats =
      2 * kBlockQ * kRowStride + 2 * kBlockK * kRowStride + 2 * kBlockQ * kScoreStride + 2 * kBlockQ;
  static constexpr size_t kSharedBytes = kSharedFloats * sizeof(float);
};

}  // namespace srkd::cuda
