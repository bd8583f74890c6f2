#include "ops/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>

#include "ops/simd.h"

namespace edgetrain {

namespace {
// OpenBLAS 0.3.21 sends sgemm calls of at most 100^3 multiply-adds on AVX-512 cores to its
// "small matrix" kernels, which malloc a buffer on every call; training steps must not allocate,
// so problems that small run here instead (they are a negligible share of a step's time).
constexpr int64_t kOpenBlasSmallLimit = 100 * 100 * 100;
// n rounded up to whole vectors of simd::kLanes floats: the padded width of a packed operand or tile.
constexpr int64_t whole_vectors(int64_t n) { return (n + simd::kLanes - 1) / simd::kLanes * simd::kLanes; }
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

// B's columns [0, n) over k rows packed as [k][ld_dst] rows, zero from column n to n_pad (the
// padding of the last vector): transposed from B^T's rows (tb) or copied from B's.
void pack_b_rows(bool tb, const float* b, int64_t ldb, int64_t n, int64_t k, float* dst, int64_t ld_dst,
                 int64_t n_pad) {
  if (tb) return simd::transpose_pack(b, ldb, n, k, dst, ld_dst, n_pad);
  for (int64_t p = 0; p < k; ++p) {
    float* row = dst + p * ld_dst;
    std::copy(b + p * ldb, b + p * ldb + n, row);
    std::fill(row + n, row + n_pad, 0.0f);
  }
}

// C[i][j] (+)= sum over p of A[i][p] * B^T[j][p] for R rows and Q columns, both operands read
// along p (16 at a time) into R x Q vector sums, added across lanes at the end: the products
// with B^T of fewer than 16 columns (a classifier's [batch, 1280] x [10, 1280]^T), which the
// register-blocked kernel cannot tile and the plain loops ran as dot products of one sum each
// (MobileNetV2's classifier at batch 32: 75 us on two threads).
// B^T's rows are read from memory in a training step (the weights of a conv on a 2x2 map at batch
// 1-4: read once per forward, long after the backward touched them): Q rows at once are Q
// streams that the hardware prefetchers follow late, so each row is also prefetched 2 KiB ahead
// into L2. Measured on the AMD EPYC (Zen 4) host, one thread, ResNet-18 layer4's 3x3 conv
// (512 -> 512, 2x2 map, batch 1) with its weights evicted: 580-640 -> 430-450 us (the same call
// with warm caches 231 -> 245 us); 1 KiB ahead 0.9-1.1x of 2 KiB, 512 B little of the gain. A
// prefetch past the end of B is harmless: prefetches do not fault.
constexpr int64_t kDotPrefetchFloats = 512;

template <int R, int Q>
void dot_block(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool add) {
  using simd::V16;
  using simd::kLanes;
  V16 acc[R][Q] = {};
  int64_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
    V16 av[R], bv[Q];
    for (int r = 0; r < R; ++r) av[r] = simd::load<V16>(a + r * lda + p);
    for (int q = 0; q < Q; ++q) bv[q] = simd::load<V16>(b + q * ldb + p);
    for (int q = 0; q < Q; ++q) __builtin_prefetch(b + q * ldb + p + kDotPrefetchFloats, 0, 2);
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < Q; ++q) acc[r][q] += av[r] * bv[q];
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < Q; ++q) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[r][q][l];
      for (int64_t t = p; t < k; ++t) sum += a[r * lda + t] * b[q * ldb + t];
      float& out = c[r * ldc + q];
      out = add ? out + sum : sum;
    }
}

// dot_block over all of C (m x n), 4 x 4 blocks and the edges.
void dot_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, bool add) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) dot_block<4, 4>(k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, add);
    for (; j < n; ++j) dot_block<4, 1>(k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, add);
  }
  // The last 1-3 rows as one block, so that B passes once (each element's sum is the same).
  const auto rest = [&]<int R>() {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) dot_block<R, 4>(k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, add);
    for (; j < n; ++j) dot_block<R, 1>(k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, add);
  };
  switch (m - i) {
    case 3: rest.template operator()<3>(); break;
    case 2: rest.template operator()<2>(); break;
    case 1: rest.template operator()<1>(); break;
    default: break;
  }
}

// A by B^T of at most this many rows runs as dot products (dot_rows above OpenBLAS's small limit,
// few_rows_for_dots below it).
constexpr int64_t kDotMaxRows = 4;

// Whether a product of m rows against B^T of k-long rows is faster as dot products (no
// transpose) than transposed for the register blocks: transposing costs about as much per
// element of B as the blocks' multiply-adds with one row of A, so it pays only over many rows,
// and dot products pay their horizontal sums over short rows. One thread, AMD EPYC (Zen 4), 100
// columns: 1 row, K 128: 2.24 -> 1.18 us, K 512: 9.55 -> 2.83; 2 rows K 128 2.74 -> 2.34;
// 4 rows K 192 4.59 -> 3.78, K 128 3.10 -> 3.60 (slower); 8 rows K 512 18.0 -> 14.3, K 256 tie
// (not taken: from 8 rows two threads split the product, B^T transposed once for both where it
// fits on the stack; where it does not, each thread's share of 4 rows takes dot products).
bool few_rows_for_dots(int64_t m, int64_t k) { return m <= kDotMaxRows && k >= 128 && k >= 64 * m; }

// Whether small_gemm takes dot products (dot_gemm): A by B^T with alpha 1 and beta 0 or 1, where
// B^T has fewer than 16 columns, rows too long to transpose 16 of them on the stack (K over
// 1024), or A few rows.
bool small_dots(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  return k > 0 && !ta && tb && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) &&
         (n < simd::kLanes || k * simd::kLanes > kMaxTransposedFloats || few_rows_for_dots(m, k));
}

// Register-blocked (4 rows x 32 or 16 columns of C in registers, ops/simd.h product_block) for
// alpha = 1 and beta 0 or 1, the cases the conv and linear kernels use; B^T of fewer than 16
// columns, of rows too long to transpose 16 of them on the stack (K over 1024: the classifier of
// MobileNetV2), or against few rows of A (few_rows_for_dots) takes dot_gemm, other alphas/betas
// the plain loops. K over 1024 went to the plain loops before: MobileNetV2's classifier, 1280
// -> 19 classes at batch 32, took 70.5 us on one thread, 24.9 as dot products; 1280 -> 98 at
// batch 4 45.7 -> 15.8 us; ResNet-18's 512 -> 148 at batch 1 13.5 -> 4.2 us (few rows).
// Measured: MobileNetV2 with micro-batches of 4 images spent 36% of its samples in the plain
// loops, and its pointwise GEMMs (every one under OpenBLAS's small limit) ran on one thread.
// B^T is transposed on the stack a chunk of columns at a time, and the columns past the last 16
// run the same blocks on a zero-padded copy of them. Both went to the plain loops before: a 1x1
// conv of 56 -> 336 channels on 2 images of 5x5 (B^T of 18,816 floats) took 170 us forward
// against 17 us for 3 images of 3x3 (over the small limit: OpenBLAS), and 56 output channels'
// last 8 (the 336 -> 56 conv's backward data) cost as much as the other 48.
void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  using simd::kLanes;
  using simd::product_block;
  if (small_dots(ta, tb, m, n, k, alpha, beta)) return dot_gemm(m, n, k, a, lda, b, ldb, c, ldc, beta == 1.0f);
  const int64_t n_vec = n / kLanes * kLanes;
  // Columns per transposed chunk (whole vectors; 0: K too long for even one vector of B^T).
  const int64_t chunk = tb ? kMaxTransposedFloats / std::max<int64_t>(1, k) / kLanes * kLanes : n_vec;
  if (alpha != 1.0f || (beta != 0.0f && beta != 1.0f) || n_vec == 0 || k == 0 || chunk == 0)
    return small_gemm_loops(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const int64_t a_r = ta ? 1 : lda, a_k = ta ? lda : 1;  // A(i, p) = a[i * a_r + p * a_k]
  const bool add = beta == 1.0f;
  alignas(64) float transposed[kMaxTransposedFloats];  // uninitialised: free unless written
  for (int64_t j0 = 0; j0 < n_vec; j0 += chunk) {
    const int64_t cols = std::min(chunk, n_vec - j0);
    // B's columns [j0, j0 + cols) as [k][...] rows: in place, or transposed from B^T's rows.
    const float* bk = b + j0;
    int64_t ldbk = ldb;
    if (tb) {
      simd::transpose_pack(b + j0 * ldb, ldb, cols, k, transposed, cols, cols);
      bk = transposed, ldbk = cols;
    }
    float* cj = c + j0;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
      int64_t j = 0;
      for (; j + 2 * kLanes <= cols; j += 2 * kLanes)
        product_block<4, 2>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, cj + i * ldc + j, ldc, add);
      for (; j < cols; j += kLanes) product_block<4, 1>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, cj + i * ldc + j, ldc, add);
    }
    for (; i < m; ++i) {
      int64_t j = 0;
      for (; j + 2 * kLanes <= cols; j += 2 * kLanes)
        product_block<1, 2>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, cj + i * ldc + j, ldc, add);
      for (; j < cols; j += kLanes) product_block<1, 1>(k, a + i * a_r, a_r, a_k, bk + j, ldbk, cj + i * ldc + j, ldc, add);
    }
  }
  const int64_t rest = n - n_vec;  // the last 1-15 columns
  if (rest == 0) return;
  if (k * kLanes > kMaxTransposedFloats)
    return small_gemm_loops(ta, tb, m, rest, k, alpha, a, lda, tb ? b + n_vec * ldb : b + n_vec, ldb, beta, c + n_vec, ldc);
  // Their B as [k][16], zero-padded; C's part in a [4][16] tile around each block of rows.
  pack_b_rows(tb, tb ? b + n_vec * ldb : b + n_vec, ldb, rest, k, transposed, kLanes, kLanes);
  alignas(64) float tile[4 * kLanes];
  for (int64_t i = 0; i < m; i += 4) {
    const int64_t rows = std::min<int64_t>(4, m - i);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < kLanes; ++j) tile[r * kLanes + j] = add && j < rest ? c[(i + r) * ldc + n_vec + j] : 0.0f;
    if (rows == 4) {
      product_block<4, 1>(k, a + i * a_r, a_r, a_k, transposed, kLanes, tile, kLanes, add);
    } else {
      for (int64_t r = 0; r < rows; ++r)
        product_block<1, 1>(k, a + (i + r) * a_r, a_r, a_k, transposed, kLanes, tile + r * kLanes, kLanes, add);
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < rest; ++j) c[(i + r) * ldc + n_vec + j] = tile[r * kLanes + j];
  }
}

// --- Skinny GEMMs: many rows of A against a small B ----------------------------------------------
// The pointwise convs of small feature maps (MobileNetV2 at 32x32: 8,192 rows against 16-96
// channels) multiply a tall A by a B of a few thousand floats. OpenBLAS packs A (and B) on every
// call and is memory-bound there; the streaming kernel (ops/simd.h stream_tile) packs only B,
// once, and reads A in place, one block of rows at a time. Used where N is at most
// kStreamMaxSide, B fits the stack buffer and at most 1/8 of the last vector is padding.
// EDGETRAIN_GEMM_STREAMING=off starts with it off (whole-model A/B runs, e.g. edgetrain bench).
bool streaming_default() {
  const char* e = std::getenv("EDGETRAIN_GEMM_STREAMING");
  return e == nullptr || std::string_view(e) != "off";
}
std::atomic<bool> streaming_enabled{streaming_default()};
// What every hand-written path below supports: alpha 1, beta 0 or 1 (the conv and linear
// kernels' calls), and only while streaming is on.
bool own_kernels_take(float alpha, float beta) {
  return alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && streaming_enabled.load(std::memory_order_relaxed);
}
constexpr int64_t kStreamMaxSide = 128;
constexpr int64_t kStreamMinRows = 64;
constexpr int64_t kStreamRowBlock = 24;  // a multiple of every tile's row count (12, 8, 6, 4)

// Measured (bench_conv2d pw_*, one thread, CPU time, streaming vs OpenBLAS): N of 16, 32, 96
// 1.0-1.15x; N = 24 (a third of the last vector wasted) 0.94-0.95x; N = 128 with K = 64 (ResNet-18's
// layer2 1x1 stride-2 downsampling, through im2col) 1.19-1.25x; N = 144 with K = 24 over
// 25,088 rows 0.6x. So only narrow C with (nearly) whole vectors streams; N = 24 runs a vector
// and a half vector (stream_all_columns).
bool streams(bool ta, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  const int64_t n_pad = whole_vectors(n);
  const int64_t rest = n % simd::kLanes;
  const int64_t width = rest > 0 && rest <= 8 ? n - rest + 8 : n_pad;  // with a half vector (alone for N <= 8)
  return !ta && own_kernels_take(alpha, beta) && m >= kStreamMinRows && k > 0 && n <= kStreamMaxSide &&
         (width - n) * 8 <= width && n_pad * k <= kMaxTransposedFloats;
}

// Rows [r0, r1) of C against NV vectors (and with kHalf a half vector) of packed B columns
// starting at column j0 (cols valid).
template <int NV, bool kHalf = false>
void stream_rows(int64_t r0, int64_t r1, int64_t k, const float* a, int64_t a_r, int64_t a_k, const float* bp,
                 int64_t ldbp, float* c, int64_t ldc, int64_t j0, int64_t cols, bool add) {
  // Accumulators: 12, 16, 18, 16 vectors (a half vector counts as a vector); each k step loads
  // the tile's vectors of B and R floats of A.
  constexpr int W = NV + (kHalf ? 1 : 0);
  constexpr int R = W == 1 ? 12 : W == 2 ? 8 : W == 3 ? 6 : 4;
  int64_t i = r0;
  for (; i + R <= r1; i += R)
    simd::stream_tile<R, NV, kHalf>(k, a + i * a_r, a_r, a_k, bp + j0, ldbp, c + i * ldc + j0, ldc, cols, add);
  for (; i < r1; ++i)
    simd::stream_tile<1, NV, kHalf>(k, a + i * a_r, a_r, a_k, bp + j0, ldbp, c + i * ldc + j0, ldc, cols, add);
}

// Rows [r0, r1) of C against every column of packed B (padded to whole vectors, ldbp): tiles of
// at most 4 vectors; a last tile whose columns end within the first half of a vector uses a
// half vector there (N <= 8: the half vector alone).
void stream_all_columns(int64_t r0, int64_t r1, int64_t n, int64_t k, const float* a, int64_t a_r, int64_t a_k,
                        const float* bp, int64_t ldbp, float* c, int64_t ldc, bool add) {
  using simd::kLanes;
  for (int64_t j0 = 0; j0 < n; j0 += 4 * kLanes) {
    const int64_t cols = std::min(n - j0, 4 * kLanes);
    const int64_t full = cols / kLanes, rest = cols % kLanes;
    const bool half = rest > 0 && rest <= 8;
    const int64_t nv = half ? full : (cols + kLanes - 1) / kLanes;
    const auto run = [&]<int NV, bool H>() { stream_rows<NV, H>(r0, r1, k, a, a_r, a_k, bp, ldbp, c, ldc, j0, cols, add); };
    switch (nv * 2 + half) {
      case 1: run.template operator()<0, true>(); break;
      case 2: run.template operator()<1, false>(); break;
      case 3: run.template operator()<1, true>(); break;
      case 4: run.template operator()<2, false>(); break;
      case 5: run.template operator()<2, true>(); break;
      case 6: run.template operator()<3, false>(); break;
      case 7: run.template operator()<3, true>(); break;
      default: run.template operator()<4, false>(); break;
    }
  }
}

void stream_gemm(const Parallel& parallel, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  using simd::kLanes;
  const int64_t ldbp = whole_vectors(n);
  alignas(64) float packed[kMaxTransposedFloats];  // uninitialised: free unless written
  pack_b_rows(tb, b, ldb, n, k, packed, ldbp, ldbp);
  const bool add = beta == 1.0f;
  const int64_t blocks = (m + kStreamRowBlock - 1) / kStreamRowBlock;
  const int64_t min_blocks =
      m * n * k < kMinSmallParallelWork ? blocks : std::max<int64_t>(1, kMinSmallParallelWork / (kStreamRowBlock * n * k));
  parallel.for_each(blocks, min_blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kStreamRowBlock, r1 = std::min(m, r0 + kStreamRowBlock);
      // The block's rows of A stay in L1 across the column tiles.
      stream_all_columns(r0, r1, n, k, a, lda, 1, packed, ldbp, c, ldc, add);
    }
  });
}

// --- Skinny reductions: C[M,N] = A^T B over many rows, C small ----------------------------------
// The pointwise convs' weight gradients (dW = dY^T X over N*H*W rows). Every 64 rows of A and B
// (kStreamStretch: in L1) run through all tiles of C, whose sums are added into C; the rows are
// split into up to kReduceParts parts (whichever thread claims one), each part but the first
// summing into its own copy of C (on the caller's stack), added up in order at the end. Both
// operands are read once, none packed whole.
// 256: the im2col path's chunks of ResNet-18's 8x8 1x1 stride-2 downsampling have 256 rows; at
// 512 they went to OpenBLAS's sgemm_tn (packing both operands: 1.19-1.27x slower, one thread).
constexpr int64_t kReduceMinRows = 256;
constexpr int64_t kReduceMaxSide = 96;  // one side of C at most this
constexpr int64_t kReducePartRows = 128;
constexpr int64_t kReduceParts = 4;  // up to 4 threads share the rows
constexpr int64_t kReduceMaxPackedColumns = 256;  // B's rows are packed only when N % 16 != 0

bool reduces(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  const int64_t n_pad = whole_vectors(n);
  return ta && !tb && own_kernels_take(alpha, beta) && k >= kReduceMinRows &&
         (m <= kReduceMaxSide || n <= kReduceMaxSide) && m * n_pad <= kMaxTransposedFloats &&
         (n % simd::kLanes == 0 || n_pad <= kReduceMaxPackedColumns);
}

// C (+)= A[p0:p1]^T B[p0:p1] (A(i, p) = a[p * lda + i]).
void reduce_rows(int64_t p0, int64_t p1, int64_t m, int64_t n, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* c, int64_t ldc, bool add) {
  using simd::kLanes;
  const int64_t n_pad = whole_vectors(n);
  const bool pack = n % kLanes != 0;  // the last vector would read past B's last row
  alignas(64) float packed[simd::kStreamStretch * kReduceMaxPackedColumns];  // uninitialised: free unless written
  for (int64_t p = p0; p < p1; p += simd::kStreamStretch) {
    const int64_t rows = std::min(simd::kStreamStretch, p1 - p);
    const float* bp = b + p * ldb;
    int64_t ldbp = ldb;
    if (pack) {
      pack_b_rows(false, bp, ldb, n, rows, packed, n_pad, n_pad);
      bp = packed, ldbp = n_pad;
    }
    const float* ap = a + p * lda;
    const bool add_here = add || p > p0;
    stream_all_columns(0, m, n, rows, ap, 1, lda, bp, ldbp, c, ldc, add_here);
  }
}

// A C of few columns and many rows (dW of a conv with few inputs and many outputs: 96 x 16 in
// MobileNetV2's 16 -> 96 expansion) runs transposed: its tiles would be one vector wide, R rows
// of A broadcast per vector of B (9 loads per 8 FMAs, load-bound: 53% of the one-thread sgemm
// peak), while C^T = B^T A has 6 vectors per row and 4 x 4 tiles (2 loads per 4 FMAs).
bool reduces_transposed(int64_t m, int64_t n) {
  const int64_t m_pad = whole_vectors(m);
  return n < 2 * simd::kLanes && m >= 2 * simd::kLanes && (m % simd::kLanes == 0 || m_pad <= kReduceMaxPackedColumns);
}

// Parts of at least kReducePartRows rows (a 4x4 map at batch 32 has 512: two parts; one part
// ran at 0.65x OpenBLAS's two threads there); a part's extra cost, clearing and adding a copy
// of C, is small next to its rows' work. The count follows the shape alone, not the threads,
// so the sums (and a training run) are the same on one thread as on two.
int64_t reduce_parts(int64_t m, int64_t n, int64_t k, int64_t copies) {
  const int64_t by_rows = m * n * k < kMinParallelWork ? 1 : k / kReducePartRows;
  return std::clamp<int64_t>(std::min(kReduceParts, by_rows), 1, copies);
}

// C (+)= (B^T A)^T: every part sums its rows' C^T into its own copy (n x m_pad), added into C
// in part order at the end.
void reduce_gemm_transposed(const Parallel& parallel, int64_t m, int64_t n, int64_t k, const float* a,
                            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int64_t m_pad = whole_vectors(m);
  alignas(64) float partial[kMaxTransposedFloats];  // uninitialised: free unless written
  const int64_t parts = reduce_parts(m, n, k, kMaxTransposedFloats / (n * m_pad));
  parallel.for_each(parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      reduce_rows(k * t / parts, k * (t + 1) / parts, n, m, b, ldb, a, lda, partial + t * n * m_pad, m_pad, false);
  });
  for (int64_t i = 0; i < m; ++i) {
    float* __restrict ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) {
      float sum = beta == 1.0f ? ci[j] : 0.0f;
      for (int64_t t = 0; t < parts; ++t) sum += partial[(t * n + j) * m_pad + i];
      ci[j] = sum;
    }
  }
}

void reduce_gemm(const Parallel& parallel, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (reduces_transposed(m, n)) return reduce_gemm_transposed(parallel, m, n, k, a, lda, b, ldb, beta, c, ldc);
  const int64_t n_pad = whole_vectors(n);
  // Parts of the rows: one per thread, as many as have a copy of C in the buffer and enough rows.
  alignas(64) float partial[kMaxTransposedFloats];  // uninitialised: free unless written
  const int64_t parts = reduce_parts(m, n, k, kMaxTransposedFloats / (m * n_pad) + 1);
  parallel.for_each(parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t p0 = k * t / parts, p1 = k * (t + 1) / parts;
      if (t == 0) reduce_rows(p0, p1, m, n, a, lda, b, ldb, c, ldc, beta == 1.0f);
      else reduce_rows(p0, p1, m, n, a, lda, b, ldb, partial + (t - 1) * m * n_pad, n_pad, false);
    }
  });
  for (int64_t t = 1; t < parts; ++t)
    for (int64_t i = 0; i < m; ++i) {
      float* __restrict ci = c + i * ldc;
      const float* __restrict pi = partial + ((t - 1) * m + i) * n_pad;
      for (int64_t j = 0; j < n; ++j) ci[j] += pi[j];
    }
}


// --- Short GEMMs: a few rows of C against a wide B ------------------------------------------------
// The 1x1 convs of 1x1 maps at batch 32 (MobileNetV2's last blocks, ResNet-18's layer4
// downsampling: C of 32 rows x 256-1280 columns). OpenBLAS packs all of B (the weights) for its
// 32 rows, which costs about as much as the product (one-thread: 55% of its sgemm peak on
// 32 x 512 x 256). Here C^T = B^T A^T runs through the streaming kernel instead: A^T, small, is
// packed once ([K][M], M padded to whole vectors), B^T's rows are read in place, blocks of
// kShortBlock rows of C^T land in a per-thread scratch tile and are transposed into C.
// Up to 32 rows: at 64 (ResNet-18's layer3 downsampling, backward data, split in two) it ran as
// fast as OpenBLAS, at 128 0.87-0.90x. From 2 rows with B transposed (session 13): the im2col
// path's forward GEMMs on 2x2 maps have one row per image of a block (B^T: one kernel row of the
// weights); at 2-12 rows against 256-1024 columns of K = 1024, one thread, 1.24-1.74x OpenBLAS's
// speed (OpenBLAS took as long for 2 rows as for 12: its packing of B).
constexpr int64_t kShortMinRows = 2, kShortMaxRows = 32, kShortMinColumns = 128, kShortBlock = 128;
// A^T packed on the caller's stack: 128 KiB, 1024 of K at 32 rows (MobileNetV2's 960 -> 160 and
// 576 -> 160 in one piece; the 1280-wide backward data of its last conv in two, each added into
// C). With the 16 KiB tile per thread and gemm()'s 64 KiB this is the ~210 KiB runtime/thread_pool.h allows
// kernels.
constexpr int64_t kShortMaxPackedFloats = 32768;

bool short_rows(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  const int64_t m_pad = whole_vectors(m);
  // Under 16 rows the padded lanes cost less than OpenBLAS's packing of B (up to 8 rows the
  // kernel uses a half vector), where B^T's rows are B's (tb): read down B's columns (not tb;
  // the wide GEMMs take those when they can) 6-12 rows measured 0.57-1.2x OpenBLAS. From 17 rows
  // at most a quarter of the lanes may be padding.
  const bool few_rows_ok = tb ? m >= kShortMinRows : m >= simd::kLanes;
  return !ta && own_kernels_take(alpha, beta) && few_rows_ok && m <= kShortMaxRows &&
         (m < simd::kLanes || (m_pad - m) * 4 <= m_pad) && n >= kShortMinColumns && k > 0 && m * n * k > kOpenBlasSmallLimit;
}

// C[:, j0 + 0 .. cols) (+)= t^T, t = rows [0, cols) of a [.][ldt] tile holding C^T's rows j0...
void add_transposed(const float* t, int64_t ldt, int64_t m, int64_t cols, float* c, int64_t ldc, bool add) {
  using simd::kLanes;
  for (int64_t i0 = 0; i0 < m; i0 += kLanes)
    for (int64_t j = 0; j < cols; j += kLanes) {
      alignas(64) float out[kLanes * kLanes];  // out[i - i0][j' - j]; rows past cols are never stored
      simd::transpose_16x16(t + j * ldt + i0, ldt, out, kLanes);
      const int64_t width = std::min(kLanes, cols - j);
      for (int64_t i = i0; i < std::min(m, i0 + kLanes); ++i) {
        float* ci = c + i * ldc + j;
        const float* oi = out + (i - i0) * kLanes;
        for (int64_t q = 0; q < width; ++q) ci[q] = add ? ci[q] + oi[q] : oi[q];
      }
    }
}

// C (+)= A B for K of at most kShortMaxPackedFloats / m_pad; B^T's row j, element p at
// b[j * b_r + p * b_k].
void short_gemm_piece(const Parallel& parallel, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                      const float* b, int64_t b_r, int64_t b_k, float beta, float* c, int64_t ldc) {
  const int64_t m_pad = whole_vectors(m);
  alignas(64) float packed[kShortMaxPackedFloats];  // A^T: [k][m_pad]; uninitialised: free unless written
  simd::transpose_pack(a, lda, m, k, packed, m_pad, m_pad);
  // Blocks of at most kShortBlock rows of C^T, an even count of equal ones (whole tiles of 8), so
  // that two threads get equal shares: 160 columns as 128 + 32 left one thread 80% of the work.
  // Every element is one tile's sum whatever the blocks, so results do not depend on them.
  int64_t blocks = (n + kShortBlock - 1) / kShortBlock;
  blocks += blocks % 2;
  const int64_t block = ((n + blocks - 1) / blocks + 7) / 8 * 8;
  blocks = (n + block - 1) / block;
  parallel.for_each(blocks, 1, [&](int64_t blk0, int64_t blk1) {
    // Every row of the tile is written by stream_all_columns before add_transposed reads it;
    // rows past a last partial block are read by the 16x16 transposes but never stored.
    alignas(64) float tile[kShortBlock * kShortMaxRows];
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t j0 = blk * block, cols = std::min(block, n - j0);
      stream_all_columns(0, cols, m, k, b + j0 * b_r, b_r, b_k, packed, m_pad, tile, m_pad, false);
      add_transposed(tile, m_pad, m, cols, c + j0, ldc, beta == 1.0f);
    }
  });
}

void short_gemm(const Parallel& parallel, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int64_t m_pad = whole_vectors(m);
  // Row j of B^T, element p: B(p, j) = b[j * ldb + p] (tb) or b[p * ldb + j].
  const int64_t b_r = tb ? ldb : 1, b_k = tb ? 1 : ldb;
  // K in pieces whose A^T fits the buffer (whole stretches of the kernel's sums), the first with
  // beta, the others added into C: the same sums on any number of threads.
  const int64_t piece = kShortMaxPackedFloats / m_pad / simd::kStreamStretch * simd::kStreamStretch;
  for (int64_t k0 = 0; k0 < k; k0 += piece)
    short_gemm_piece(parallel, m, n, std::min(piece, k - k0), a + k0, lda, b + k0 * b_k, b_r, b_k,
                     k0 == 0 ? beta : 1.0f, c, ldc);
}

// --- Wide GEMMs: a few rows of C against a wide B read in place ---------------------------------
// The im2col path's GEMMs on 2x2 maps at small batches: each block of the classes plan has one
// output pixel per image, so C has as many rows as the chunk has images (6 in a micro-batch of
// ResNet-18 layer4), against 1024-2048 columns of the weights. OpenBLAS packs all of B for
// those few rows (B here is one kernel row of OHWI weights: 4-18 KiB between its rows), which
// took as long at 2 rows as at 12 (~310 us for 512 x 1024 on one thread). Here tiles of the
// streaming kernel read B's rows in place (a software prefetch ahead, since the rows are far
// apart), all of C's rows at once so B passes once. One thread, K = 512 against 256-1024 columns
// of a B whose rows are 18 KiB apart (layer4's weights): 2-24 rows 1.1-4x OpenBLAS's speed (8
// rows x 1024: 135 against 299 us), and ahead of the short GEMMs up to 24 rows (they read such a
// B down its columns); under OpenBLAS's small limit the small loops keep it (a micro-batch of 4
// images at 28x28 ran 2.5% slower with these).
// Order: for each stretch of 64 rows of B (the kernel's own sums, so the result is the same bits),
// every tile left to right, each prefetching the next tile's part of the rows (ops/simd.h
// stream_tile): B then streams from memory row by row. Tile after tile over all K, each row was
// read 256 B at a time, one tile's width, 18 KiB from the next: in a step, where the weights come
// from memory, the backward data of ResNet-18 layer4's 3x3 conv at batch 1 (weights evicted,
// one thread, AMD EPYC host) took 895 us, 505 us this way (warm 190 -> 176 us); ResNet-18 at
// 40x40 batch 4 in 4 micro-batches, one thread: whole steps 56.1 -> 47.0 ms with the dot
// products' prefetch below.
constexpr int64_t kWideMaxRows = 24, kWideMinColumns = 64;

bool wide_rows(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  return !ta && !tb && own_kernels_take(alpha, beta) && m >= 1 && m <= kWideMaxRows && n >= kWideMinColumns &&
         n % simd::kLanes == 0 && k > 0 && m * n * k > kOpenBlasSmallLimit;
}

// All M rows of C over columns [j0, j0 + 16 NV) (every column valid: n is whole vectors).
template <int NV>
void wide_tile(int64_t m, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
               bool add) {
  constexpr int64_t cols = NV * simd::kLanes;
  const auto rows = [&]<int R>(int64_t i) { simd::stream_tile<R, NV>(k, a + i * lda, lda, 1, b, ldb, c + i * ldc, ldc, cols, add); };
  // Tiles of up to 6 rows (accumulators: R x NV vectors, at most 24); B's tile passes once per 6 rows.
  for (int64_t i = 0; i < m; i += 6) {
    switch (std::min<int64_t>(6, m - i)) {
      case 1: rows.template operator()<1>(i); break;
      case 2: rows.template operator()<2>(i); break;
      case 3: rows.template operator()<3>(i); break;
      case 4: rows.template operator()<4>(i); break;
      case 5: rows.template operator()<5>(i); break;
      default: rows.template operator()<6>(i); break;
    }
  }
}

void wide_gemm(const Parallel& parallel, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float beta, float* c, int64_t ldc) {
  constexpr int64_t kTile = 4 * simd::kLanes;
  const bool add = beta == 1.0f;
  const int64_t tiles = (n + kTile - 1) / kTile;
  parallel.for_each(tiles, m * n * k < kMinSmallParallelWork ? tiles : 1, [&](int64_t t0, int64_t t1) {
    for (int64_t k0 = 0; k0 < k; k0 += simd::kStreamStretch) {
      const int64_t rows = std::min(simd::kStreamStretch, k - k0);
      const float* a_k0 = a + k0;
      const float* b_k0 = b + k0 * ldb;
      const bool into = add || k0 > 0;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j0 = t * kTile, vectors = std::min(kTile, n - j0) / simd::kLanes;
        switch (vectors) {
          case 1: wide_tile<1>(m, rows, a_k0, lda, b_k0 + j0, ldb, c + j0, ldc, into); break;
          case 2: wide_tile<2>(m, rows, a_k0, lda, b_k0 + j0, ldb, c + j0, ldc, into); break;
          case 3: wide_tile<3>(m, rows, a_k0, lda, b_k0 + j0, ldb, c + j0, ldc, into); break;
          default: wide_tile<4>(m, rows, a_k0, lda, b_k0 + j0, ldb, c + j0, ldc, into); break;
        }
      }
    }
  });
}

// --- Dot-product GEMMs: 1-4 rows of C against a transposed B ------------------------------------
// Forward GEMMs of at most kDotMaxRows rows against a transposed B (the im2col blocks of 2x2 maps
// at batch 1-4): dot products along K in one block of all rows x 4 columns, so each row of B^T
// is read once, columns split between threads. One thread, K = 1024 against 256-1024 columns: 2
// rows 2.6-3.7x OpenBLAS's speed (1024 columns: 202 against 516 us; the short GEMMs' half-vector
// tiles 1.3-1.4x), 4 rows 2.3-3.6x; at 6 and 8 rows (two blocks, B read twice) the short GEMMs
// are faster from 512 columns. (kDotMaxRows, above with dot_gemm.)

bool dot_rows(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  return !ta && tb && own_kernels_take(alpha, beta) && m >= 1 && m <= kDotMaxRows && k >= 64 &&
         m * n * k > kOpenBlasSmallLimit;
}

void dot_rows_gemm(const Parallel& parallel, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  parallel.for_each((n + 3) / 4, 1, [&](int64_t j0, int64_t j1) {
    const int64_t c0 = j0 * 4, c1 = std::min(n, j1 * 4);
    dot_gemm(m, c1 - c0, k, a, lda, b + c0 * ldb, ldb, c + c0, ldc, beta == 1.0f);
  });
}
}  // namespace

void set_gemm_streaming(bool enabled) { streaming_enabled.store(enabled, std::memory_order_relaxed); }

// The same decisions, in the same order, as gemm() below.
GemmPath gemm_path(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
  if (streams(trans_a, m, n, k, 1.0f, 0.0f)) return GemmPath::kStream;
  if (reduces(trans_a, trans_b, m, n, k, 1.0f, 0.0f))
    return reduces_transposed(m, n) ? GemmPath::kReduceTransposed : GemmPath::kReduce;
  if (wide_rows(trans_a, trans_b, m, n, k, 1.0f, 0.0f)) return GemmPath::kWide;
  if (dot_rows(trans_a, trans_b, m, n, k, 1.0f, 0.0f)) return GemmPath::kDot;
  if (short_rows(trans_a, trans_b, m, n, k, 1.0f, 0.0f)) return GemmPath::kShort;
  if (m * n * k <= kOpenBlasSmallLimit) {
    // The one-thread answer: from 8 rows two threads split the product (gemm() below), each
    // share taking small_gemm's own path; with B^T over 16,384 floats a share of 4 rows takes
    // dot products. B^T of fewer than 16 columns took dot products before kSmallDots was named
    // and stays kSmall.
    const bool dots = small_dots(trans_a, trans_b, m, n, k, 1.0f, 0.0f) && n >= simd::kLanes;
    return dots ? GemmPath::kSmallDots : GemmPath::kSmall;
  }
  return GemmPath::kOpenBlas;
}

void gemm(const Parallel& parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (streams(trans_a, m, n, k, alpha, beta))
    return stream_gemm(parallel, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (reduces(trans_a, trans_b, m, n, k, alpha, beta)) return reduce_gemm(parallel, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (wide_rows(trans_a, trans_b, m, n, k, alpha, beta)) return wide_gemm(parallel, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (dot_rows(trans_a, trans_b, m, n, k, alpha, beta)) return dot_rows_gemm(parallel, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (short_rows(trans_a, trans_b, m, n, k, alpha, beta))
    return short_gemm(parallel, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (m * n * k <= kOpenBlasSmallLimit) {
    // Split over blocks of 4 rows of C where there is work for both threads.
    if (parallel.threads > 1 && m >= 8 && m * n * k >= kMinSmallParallelWork) {
      // B^T transposed once here, not by every thread's share.
      alignas(64) float transposed[kMaxTransposedFloats];  // uninitialised: free unless written
      // (Fewer than 16 columns stay B^T: small_gemm reads them with dot_gemm.)
      if (trans_b && n >= simd::kLanes && n * k <= kMaxTransposedFloats) {
        simd::transpose_pack(b, ldb, n, k, transposed, n, n);
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
