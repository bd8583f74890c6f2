// Row-major SGEMM split across the runtime's threads, each chunk one single-threaded OpenBLAS
// call. Why not OpenBLAS's own threads: its threaded sgemm mallocs job descriptors on every call
// (a training step must not allocate), and its spinning threads would compete with our pool.
// OpenBLAS is therefore pinned to one thread (set_blas_threads(1) in the executor) and the
// split happens here: along M (rows of C) when M is the larger side, else along N.
// Five shapes skip OpenBLAS: skinny products (many rows against a B of at most 96 columns: the
// pointwise convs of small feature maps), skinny reductions (A^T B over many rows into a small
// C: their weight gradients), wide products (up to 24 rows of C against a wide B read in place:
// the backward data of convs on 1x1 and 2x2 maps at small batches), dot products (1-4 rows of C
// against a transposed B: their forward at batch 1-4) and short products (5-32 rows of C against
// a wide B, run as C^T = B^T A^T) run hand-written kernels (ops/gemm.cc), and products under
// OpenBLAS's small-matrix limit run register-blocked loops.
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace edgetrain {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, as cblas_sgemm.
void gemm(const Parallel& parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Which kernel gemm() runs for a product of this shape (alpha 1, beta 0 or 1), without running
// it: the cost model's feature for the 1x1 convs (planner/features.cc), whose time depends on it.
// (kSmallDots: small products of B^T with 16 or more columns as dot products, ops/gemm.cc
// small_dots; last, so that stored profiles' variants keep their numbers. Fewer columns took dot
// products before it was named and stay kSmall.)
enum class GemmPath : uint8_t {
  kOpenBlas, kStream, kReduce, kReduceTransposed, kShort, kSmall, kWide, kDot, kSmallDots
};
GemmPath gemm_path(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k);

// Whether skinny and short GEMMs (see ops/gemm.cc) take the streaming kernel instead of OpenBLAS
// (default on). For benchmarks and tests comparing the two.
void set_gemm_streaming(bool enabled);

}  // namespace edgetrain
