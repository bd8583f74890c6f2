#include "ops/gemm.h"

#include <cblas.h>

#include <algorithm>

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
// Below this many multiply-adds a split costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 18;

void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
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
}  // namespace

void gemm(const Parallel& parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m * n * k <= kOpenBlasSmallLimit) {
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
