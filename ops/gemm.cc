#include "ops/gemm.h"

#include <cblas.h>

#include <algorithm>

#include "ops/simd.h"

namespace edgetrain {

namespace {
// OpenBLAS 0.3.21 sends sgemm calls of at most 100^3 multiply-adds on AVX-512 cores to its
// "small matrix" kernels, which malloc a buffer on every call; training steps must not allocate,
// so problems that small run here instead (they are a negligible share of a step's time).
constexpr int64_t kOpenBlasSmallLimit = 100 * 100 * 100;
void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void sgemm1(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (m * n * k <= kOpenBlasSmallLimit) {  // a chunk of a split can be small too
    small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}
// Below this many multiply-adds a split costs more than it saves (OpenBLAS calls; the small
// kernel's own split pays from a quarter of that).
constexpr int64_t kMinParallelWork = 1 << 18;
constexpr int64_t kMinSmallParallelWork = 1 << 16;

// The plain loops: any alpha and beta, any shape.
void small_gemm_loops(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < n; ++j) ci[j] = 0.0f;  // overwrite: C may hold garbage, even NaN
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
    }
    if (!tb) {
      // C[i,:] += alpha * A(i,p) * B[p,:], contiguous over j.
      for (int64_t p = 0; p < k; ++p) {
        float av = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
        const float* bp = b + p * ldb;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    } else {
      for (int64_t j = 0; j < n; ++j) {
        const float* bj = b + j * ldb;  // B^T column j = stored row j
        float sum = 0.0f;
        if (!ta) {
          const float* ai = a + i * lda;
#pragma omp simd reduction(+ : sum)
          for (int64_t p = 0; p < k; ++p) sum += ai[p] * bj[p];
        } else {
          for (int64_t p = 0; p < k; ++p) sum += a[p * lda + i] * bj[p];
        }
        ci[j] += alpha * sum;
      }
    }
  }
}
// B^T of at most this many floats is transposed on the stack (64 KiB) so that every layout runs
// the register-blocked kernel.
constexpr int64_t kMaxTransposedFloats = 16384;

// Register-blocked (4 rows x 32 or 16 columns of C in registers, ops/simd.h product_block) for alpha = 1 and beta 0 or 1, the cases the conv and linear kernels use;
// columns past the last 16 and other alphas/betas take the plain loops. Measured: MobileNetV2
// with micro-batches of 4 images spent 36% of its samples in the plain loops, and its pointwise
// GEMMs (every one under OpenBLAS's small limit) ran on one thread.
void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  using simd::kLanes;
  using simd::product_block;
  const int64_t n_vec = n / kLanes * kLanes;
  if (alpha != 1.0f || (beta != 0.0f && beta != 1.0f) || n_vec == 0 || k == 0 || (tb && n_vec * k > kMaxTransposedFloats))
    return small_gemm_loops(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  // B as [k][n_vec] rows: in place, or transposed from B^T's rows.
  const float* bk = b;
  int64_t ldbk = ldb;
  alignas(64) float transposed[kMaxTransposedFloats];  // uninitialised: free unless written
  if (tb) {
    for (int64_t j = 0; j < n_vec; ++j)
      for (int64_t p = 0; p < k; ++p) transposed[p * n_vec + j] = b[j * ldb + p];
    bk = transposed, ldbk = n_vec;
  }
  const int64_t a_r = ta ? 1 : lda, a_k = ta ? lda : 1;  // A(i, p) = a[i * a_r + p * a_k]
  const bool add = beta == 1.0f;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    int64_t j = 0;
    for (; j + 2 * kLanes <= n_vec; j += 2 * kLanes)
      product_block<4, 2>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, c + i * ldc + j, ldc, add);
    for (; j < n_vec; j += kLanes) product_block<4, 1>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, c + i * ldc + j, ldc, add);
  }
  for (; i < m; ++i) {
    int64_t j = 0;
    for (; j + 2 * kLanes <= n_vec; j += 2 * kLanes)
      product_block<1, 2>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, c + i * ldc + j, ldc, add);
    for (; j < n_vec; j += kLanes) product_block<1, 1>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, c + i * ldc + j, ldc, add);
  }
  if (n_vec < n)  // the last columns: B's (or B^T's) columns from n_vec on
    small_gemm_loops(ta, tb, m, n - n_vec, k, alpha, a, lda, tb ? b + n_vec * ldb : b + n_vec, ldb, beta, c + n_vec, ldc);
}

}  // namespace

void gemm(const Parallel& parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m * n * k <= kOpenBlasSmallLimit) {
    // Split over blocks of 4 rows of C where there is work for both threads.
    if (parallel.threads > 1 && m >= 8 && m * n * k >= kMinSmallParallelWork) {
      // B^T transposed once here, not by every thread's share.
      alignas(64) float transposed[kMaxTransposedFloats];  // uninitialised: free unless written
      if (trans_b && n * k <= kMaxTransposedFloats) {
        for (int64_t j = 0; j < n; ++j)
          for (int64_t p = 0; p < k; ++p) transposed[p * n + j] = b[j * ldb + p];
        trans_b = false, b = transposed, ldb = n;
      }
      const int64_t blocks = (m + 3) / 4;
      parallel.for_each(blocks, 1, [&](int64_t b0, int64_t b1) {
        const int64_t r0 = b0 * 4, r1 = std::min(m, b1 * 4);
        small_gemm(trans_a, trans_b, r1 - r0, n, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda, b, ldb, beta,
                   c + r0 * ldc, ldc);
      });
      return;
    }
    small_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (parallel.threads <= 1 || m * n * k < kMinParallelWork) {
    sgemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Chunks are whole blocks of 16 rows/columns so every call keeps full-width vector tiles.
  constexpr int64_t kBlock = 16;
  if (m >= n) {
    int64_t blocks = (m + kBlock - 1) / kBlock;
    parallel.for_each(blocks, 1, [&](int64_t b0, int64_t b1) {
      int64_t r0 = b0 * kBlock, r1 = std::min(m, b1 * kBlock);
      const float* a_rows = trans_a ? a + r0 : a + r0 * lda;
      sgemm1(trans_a, trans_b, r1 - r0, n, k, alpha, a_rows, lda, b, ldb, beta, c + r0 * ldc, ldc);
    });
  } else {
    int64_t blocks = (n + kBlock - 1) / kBlock;
    parallel.for_each(blocks, 1, [&](int64_t b0, int64_t b1) {
      int64_t c0 = b0 * kBlock, c1 = std::min(n, b1 * kBlock);
      const float* b_cols = trans_b ? b + c0 * ldb : b + c0;
      sgemm1(trans_a, trans_b, m, c1 - c0, k, alpha, a, lda, b_cols, ldb, beta, c + c0, ldc);
    });
  }
}

}  // namespace edgetrain
