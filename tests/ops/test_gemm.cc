// ops/gemm.h against a naive double-precision product: every transpose combination, shapes on
// both sides of the small-GEMM path's vector width (16 columns) and row block (4 rows), alpha 1
// and not, beta 0 (C starts as NaN: it must be overwritten) and 1, one and two threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/gemm.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Gemm, MatchesTheNaiveProductForEveryLayoutAndShape) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t m : {1, 4, 5, 9, 40})
          for (int64_t n : {1, 15, 16, 17, 33, 48})
            for (int64_t k : {1, 7, 33, 200})
              for (float alpha : {1.0f, 0.5f})
                for (float beta : {0.0f, 1.0f}) {
                  // Leading dimensions wider than the matrices, as the convs' channel slices are.
                  const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                  const std::vector<float> a = random_values(static_cast<size_t>((ta ? k : m) * lda), 1);
                  const std::vector<float> b = random_values(static_cast<size_t>((tb ? n : k) * ldb), 2);
                  std::vector<float> c = random_values(static_cast<size_t>(m * ldc), 3);
                  if (beta == 0.0f) std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
                  const std::vector<float> c0 = c;
                  gemm(pool.parallel(), ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
                  double worst = 0;
                  for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < n; ++j) {
                      double want = beta == 0.0f ? 0.0 : double(c0[i * ldc + j]);
                      for (int64_t p = 0; p < k; ++p)
                        want += double(alpha) * double(ta ? a[p * lda + i] : a[i * lda + p]) *
                                double(tb ? b[j * ldb + p] : b[p * ldb + j]);
                      worst = std::max(worst, std::fabs(double(c[i * ldc + j]) - want) / std::max(1.0, std::fabs(want)));
                    }
                  ASSERT_LT(worst, 1e-5) << "ta " << ta << " tb " << tb << " m " << m << " n " << n << " k " << k
                                         << " alpha " << alpha << " beta " << beta << " threads " << threads;
                  // Outside the matrix (the leading-dimension padding) nothing changes.
                  for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = n; j < ldc; ++j) {
                      const float now = c[i * ldc + j], before = c0[i * ldc + j];
                      ASSERT_TRUE(now == before || (std::isnan(now) && std::isnan(before)));
                    }
                }
  }
}

}  // namespace
}  // namespace edgetrain
