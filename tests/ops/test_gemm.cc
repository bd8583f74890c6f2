// ops/gemm.h against a naive double-precision product: every transpose combination, shapes on
// both sides of the small-GEMM path's vector width (16 columns) and row block (4 rows), alpha 1
// and not, beta 0 (C starts as NaN: it must be overwritten) and 1, one and two threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
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

// C = A B (A transposed when ta, B when tb) + beta C with padded leading dimensions, against a
// double-precision naive product: relative error below tol, the padding of C untouched, and with
// beta 0 nothing read from C (it starts as NaN).
void expect_gemm_matches_naive(ThreadPool& pool, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float beta,
                               double tol) {
  const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
  const std::vector<float> a = random_values(static_cast<size_t>((ta ? k : m) * lda), 1);
  const std::vector<float> b = random_values(static_cast<size_t>((tb ? n : k) * ldb), 2);
  std::vector<float> c = random_values(static_cast<size_t>(m * ldc), 3);
  if (beta == 0.0f)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> c0 = c;
  gemm(pool.parallel(), ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = beta == 0.0f ? 0.0 : double(c0[i * ldc + j]);
      for (int64_t p = 0; p < k; ++p)
        want += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
      worst = std::max(worst, std::fabs(double(c[i * ldc + j]) - want) / std::max(1.0, std::fabs(want)));
    }
  ASSERT_LT(worst, tol) << "ta " << ta << " tb " << tb << " m " << m << " n " << n << " k " << k << " beta " << beta;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "padding changed";
}

// fn(pool, streaming) with ops/gemm.cc's streaming kernels on and off, on one and two threads;
// streaming is on again afterwards.
template <class Fn>
void with_streaming_on_and_off(Fn&& fn) {
  for (bool streaming : {true, false}) {
    set_gemm_streaming(streaming);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      fn(pool, streaming);
    }
  }
  set_gemm_streaming(true);
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

// The streaming kernel for skinny GEMMs (no transposed A, M >= 64, N <= 128): row counts
// off its row blocks (24) and tiles (12, 8, 6, 4 rows), columns off its vectors (16) and tiles
// (4 vectors; 24, 40, 56, 88 end in a half vector, 8 and 7 are one half vector alone), K across its stretches of 64, beta 0 and 1, B stored both ways, one and two
// threads; the same shapes through OpenBLAS (streaming off) for comparison.
TEST(Gemm, SkinnyStreamingMatchesTheNaiveProduct) {
  with_streaming_on_and_off([](ThreadPool& pool, bool streaming) {
    for (bool tb : {false, true})
      for (int64_t m : {64, 77, 300, 1031})
        for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 5}, {15, 96}, {16, 32}, {17, 130}, {24, 144}, {40, 7},
                            {64, 65}, {65, 24}, {96, 96}, {144, 24}, {200, 3}, {577, 16},
                            {8, 20}, {8, 16}, {7, 16}, {56, 33}, {88, 70}, {128, 128}, {120, 33}})
          for (float beta : {0.0f, 1.0f})
            ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, false, tb, m, n, k, beta, 1e-5))
                << "streaming " << streaming << " threads " << pool.threads();
  });
}

// A classifier's forward, [batch, features] x [classes, features]^T with fewer than 16 classes:
// dot products read along the features (dot_gemm), 4 x 4 blocks and their edges, a feature count
// off the 16-lane vectors, beta 0 (C NaN) and 1, one and two threads.
TEST(Gemm, NarrowTransposedBMatchesTheNaiveProduct) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{32, 10, 1280}, {6, 3, 1283}, {64, 15, 512}, {3, 1, 40}})
      for (float beta : {0.0f, 1.0f})
        ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, false, true, m, n, k, beta, 1e-5)) << "threads " << threads;
  }
}

// Products under OpenBLAS's small limit whose B^T is too large to transpose on the stack at once
// (n x k > 16,384 floats: transposed a chunk of columns at a time; past K = 1024 A by B^T takes
// dot products, the other layouts the plain loops), few rows against long B^T rows (dot
// products: 1 row at K 512, 3 at 300; 8 rows at 512 are transposed), and columns past the last
// 16 (a zero-padded copy through the same blocks): every layout, rows on and off the blocks of
// 4, beta 0 (C NaN) and 1, one and two threads. Shapes of MobileNetV2 1x1 convs at small batches (56 -> 336
// channels on 50 pixels, 336 -> 56, 88 -> 336) and classifiers (1280 -> 19 at batch 32).
TEST(Gemm, SmallProductsPastTheTransposeBufferAndTheLastVectorMatchTheNaiveProduct) {
  int dot_products = 0;
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{50, 336, 56}, {50, 56, 336}, {31, 88, 336},
                           {9, 520, 200}, {3, 1100, 300}, {32, 88, 300}, {7, 24, 1100}, {6, 40, 130},
                           {32, 19, 1280}, {1, 148, 512}, {8, 40, 512}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.0f, 1.0f}) {
            ASSERT_LE(m * n * k, 1000000) << "not a small product";
            // gemm_path names the dot products exactly where A by B^T takes them (where no
            // earlier kernel, e.g. the reductions, takes the product).
            const bool dots = !ta && tb && n >= 16 && (k > 1024 || (m <= 4 && k >= 128 && k >= 64 * m));
            const GemmPath path = gemm_path(ta, tb, m, n, k);
            if (path == GemmPath::kSmall || path == GemmPath::kSmallDots) {
              EXPECT_EQ(path, dots ? GemmPath::kSmallDots : GemmPath::kSmall)
                  << m << " x " << n << " x " << k << " ta " << ta << " tb " << tb;
              dot_products += path == GemmPath::kSmallDots;
            }
            ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, ta, tb, m, n, k, beta, 2e-5))
                << "threads " << threads;
          }
  }
  EXPECT_GE(dot_products, 16);  // 1 x 148 x 512, 3 x 1100 x 300, 7 x 24 x 1100, 32 x 19 x 1280
}

// Short GEMMs (2-32 rows of C against 128 or more columns: the 1x1 convs of 1x1 maps, the
// im2col blocks of 2x2 maps) run C^T = B^T A^T through the streaming kernel: row counts on and
// off whole vectors (up to 8 a half vector; 24 and 28 end in a partial one), columns across its
// blocks (517, 300, 144 end in partial ones), K on and off 16 up to the packed A^T's limit (1024
// at 32 rows) and past it (1100: two pieces at 24-32 rows; every shape here is above OpenBLAS's
// small limit), B stored both ways (without transposing, up to 24 rows take the wide GEMMs),
// beta 0 (C NaN) and 1, one and two threads, streaming on and off.
TEST(Gemm, ShortRowsMatchTheNaiveProduct) {
  with_streaming_on_and_off([](ThreadPool& pool, bool streaming) {
    for (bool tb : {false, true})
      for (int64_t m : {2, 5, 8, 9, 15, 16, 24, 28, 32})
        for (auto [n, k] : {std::pair<int64_t, int64_t>{300, 256}, {517, 160}, {1280, 60}, {144, 513}, {160, 1024}, {200, 1100}})
          for (float beta : {0.0f, 1.0f})
            // OpenBLAS sums K = 1024 terms in one running sum (1.04e-5 measured); the streaming
            // kernel's half-vector tiles at 2 rows 1.09e-5 at K = 1100.
            ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, false, tb, m, n, k, beta, streaming ? 2e-5 : 5e-5))
                << "streaming " << streaming << " threads " << pool.threads();
  });
}

// Wide GEMMs (1-24 rows of C against a B of 64 or more columns, whole vectors, read in place):
// row counts up to and past one tile of 6 rows, columns ending in tiles of 1-4 vectors (1040,
// 1056, 1072, 1024), K across the kernel's stretches of 64, beta 0 (C NaN) and 1, one and two
// threads, streaming on and off (OpenBLAS).
TEST(Gemm, WideRowsMatchTheNaiveProduct) {
  with_streaming_on_and_off([](ThreadPool& pool, bool streaming) {
    for (int64_t m : {1, 4, 6, 7, 12, 13, 24})
      for (auto [n, k] : {std::pair<int64_t, int64_t>{1040, 1100}, {1056, 1000}, {1072, 1000}, {1024, 512}, {512, 129}})
        for (float beta : {0.0f, 1.0f}) {
          if (m * n * k <= 1000000) continue;  // under OpenBLAS's small limit: the small loops
          ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, false, false, m, n, k, beta, streaming ? 2e-5 : 5e-5))
              << "streaming " << streaming << " threads " << pool.threads();
        }
  });
}

// Dot-product GEMMs (1-4 rows of C against a transposed B, above OpenBLAS's small limit): row
// counts 1-4 in one block, columns ending in 4-column blocks and single columns, K on and off the
// 16-lane vectors, beta 0 (C NaN) and 1, one and two threads, streaming on and off.
TEST(Gemm, DotRowsMatchTheNaiveProduct) {
  with_streaming_on_and_off([](ThreadPool& pool, bool streaming) {
    for (int64_t m : {1, 2, 3, 4})
      for (auto [n, k] : {std::pair<int64_t, int64_t>{1027, 1024}, {514, 1001}, {2049, 150}, {700, 1100}})
        for (float beta : {0.0f, 1.0f}) {
          if (m * n * k <= 1000000) continue;  // under OpenBLAS's small limit: the small loops
          ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, false, true, m, n, k, beta, streaming ? 2e-5 : 5e-5))
              << "m " << m << " streaming " << streaming << " threads " << pool.threads();
        }
  });
  EXPECT_EQ(gemm_path(false, true, 2, 1024, 1024), GemmPath::kDot);
}

// The wide and dot-product kernels split C by columns: the same bits on one thread as on two.
TEST(Gemm, WideAndDotRowsAreTheSameOnOneAndTwoThreads) {
  const int64_t m = 6, n = 1024, k = 512, ldb = 9 * 512;
  const std::vector<float> a = random_values(static_cast<size_t>(m * k), 1);
  const std::vector<float> b = random_values(static_cast<size_t>(k * ldb), 2);
  std::vector<float> one(static_cast<size_t>(m * n)), two(static_cast<size_t>(m * n));
  ThreadPool p1(1), p2(2);
  gemm(p1.parallel(), false, false, m, n, k, 1.0f, a.data(), k, b.data(), ldb, 0.0f, one.data(), n);
  gemm(p2.parallel(), false, false, m, n, k, 1.0f, a.data(), k, b.data(), ldb, 0.0f, two.data(), n);
  EXPECT_EQ(one, two);
  EXPECT_EQ(gemm_path(false, false, m, n, k), GemmPath::kWide);
  // The same for the dot-product GEMMs (C split by columns).
  std::vector<float> one_dot(static_cast<size_t>(3 * n)), two_dot(static_cast<size_t>(3 * n));
  gemm(p1.parallel(), false, true, 3, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, one_dot.data(), n);
  gemm(p2.parallel(), false, true, 3, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, two_dot.data(), n);
  EXPECT_EQ(one_dot, two_dot);
}

// The streaming reduction for weight gradients (A transposed, K >= 256, C small): row counts off
// its stretches (64) and the threads' parts, C's rows off its tiles, columns off its vectors
// (N % 16 != 0 packs B's rows), C both ways round, beta 0 (C NaN) and 1, one and two threads, streaming on and off.
TEST(Gemm, SkinnyReductionMatchesTheNaiveProduct) {
  with_streaming_on_and_off([](ThreadPool& pool, bool streaming) {
    for (int64_t k : {256, 300, 512, 1000, 2049})
      // {96, 16}, {96, 24}, {144, 24}, {40, 7}, {33, 31} run transposed (C^T = B^T A: few
      // columns, many rows), the last two with A's rows packed (M % 16 != 0).
      for (auto [m, n] : {std::pair<int64_t, int64_t>{1, 16}, {13, 96}, {16, 32}, {24, 17}, {96, 24}, {144, 24},
                          {40, 200}, {7, 1}, {96, 16}, {40, 7}, {33, 31}})
        for (float beta : {0.0f, 1.0f})
          // OpenBLAS sums all K terms in one running sum (1.2e-5 measured at K = 512); the
          // streaming kernel in stretches of 64.
          ASSERT_NO_FATAL_FAILURE(expect_gemm_matches_naive(pool, true, false, m, n, k, beta, streaming ? 1e-5 : 5e-5))
              << "streaming " << streaming << " threads " << pool.threads();
  });
}

}  // namespace
// The reduction's parts follow the shape, not the thread count: one thread and two give the same
// bits (a training run does not change with --threads).
TEST(Gemm, SkinnyReductionIsTheSameOnOneAndTwoThreads) {
  set_gemm_streaming(true);
  for (int64_t k : {1024, 4096, 8192})
    for (auto [m, n] : {std::pair<int64_t, int64_t>{16, 32}, {96, 24}, {24, 96}, {144, 24}, {96, 16}}) {
      const std::vector<float> a = random_values(static_cast<size_t>(k * m), 4);
      const std::vector<float> b = random_values(static_cast<size_t>(k * n), 5);
      std::vector<std::vector<float>> c;
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        c.emplace_back(static_cast<size_t>(m * n), 0.0f);
        gemm(pool.parallel(), true, false, m, n, k, 1.0f, a.data(), m, b.data(), n, 0.0f, c.back().data(), n);
      }
      for (int64_t i = 0; i < m * n; ++i)
        ASSERT_EQ(c[0][i], c[1][i]) << "m " << m << " n " << n << " k " << k << " element " << i;
    }
}

}  // namespace edgetrain
