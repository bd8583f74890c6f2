#include "ops/gemm.h"

#include <cblas.h>

#include <algorithm>

namespace edgetrain {

namespace {
void sgemm1(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}
// Below this many multiply-adds a split costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 18;
}  // namespace

void gemm(const Parallel& parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
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
