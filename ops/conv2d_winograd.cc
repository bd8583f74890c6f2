// Winograd F(2x2, 3x3) and F(4x4, 3x3) for dense 3x3 stride-1 convs (see the header).
//
// One "problem" maps an input image (x forward, dy backward) through a 3x3 correlation to an
// output image (y forward, dx backward). Per block of output channels (one block unless the
// workspace bound says otherwise, see make_problem):
//   1. weight transform  U[a][K x block] = (G g G^T)[a], packed in panels for the products,
//                        parallel over (panel, rows of k)
//   2. in one parallel region, each thread (slot) takes a contiguous range of output tiles and,
//      a few tiles (`rows`) at a time:
//        input transform   V[t][a][K]     = (B^T d_t B)[a]
//        products          M[t][a][block] = sum_k V[t][a][k] U[a][k][..], for every a
//        output transform  y_t            = A^T M_t A (+ bias, or + y when accumulating)
// The products are this file's own kernel (8 tiles x 32 channels of accumulators, the
// transformed weights packed once per block), not sgemm: 36 small GEMMs per few tiles would
// each pay OpenBLAS's packing and call overhead, and its small-matrix path allocates.
// Transforms are vectorised over the channel dimension, contiguous in NHWC and OHWI.
#include "ops/conv2d_winograd.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ops/conv2d_im2col.h"
#include "ops/winograd_tiles.h"
#include "runtime/status.h"

namespace edgetrain {

namespace winograd {
namespace {
std::atomic<int64_t> g_budget_for_testing{0};
}  // namespace

int64_t workspace_budget_floats(const ConvGeometry& g) {
  const int64_t test_budget = g_budget_for_testing.load(std::memory_order_relaxed);
  if (test_budget > 0) return test_budget;
  return std::max(kMinWorkspaceFloats, 2 * im2col_workspace_floats(g));
}
}  // namespace winograd

namespace {

using namespace winograd;

// ---------------------------------------------------------------------------------------------
// The problem: in [n][in_h][in_w][K] -> out [n][out_h][out_w][N], out(oy, ox) reading
// in(oy - pad_h + ky, ox - pad_w + kx) for ky, kx in 0..2. pad may be negative (backward data
// of a conv padded by more than 2). Weights are the conv's OHWI tensor: forward, its O is N;
// backward, its O is K and the taps are read rotated by 180 degrees.

struct Problem {
  int64_t n, in_h, in_w, k, out_h, out_w, out_n, pad_h, pad_w;
  bool backward;
  int m;                              // output tile size
  int64_t tiles_h, tiles_w, tiles;    // output tiles per column, per row, in the batch
  int64_t block;                      // output channels per weight block (a multiple of 16, or all)
  int64_t rows;                       // tiles a slot transforms and multiplies at a time
};

// Rows (tiles) of one register block of the products kernel, and the panel width of the packed
// transformed weights (two vectors).
constexpr int kRowBlock = 8;
constexpr int64_t kPanel = 2 * kLanes;

// The workspace stays within workspace_budget_floats (ops/winograd_tiles.h). Within it, in
// order of preference:
//  - one pass: the transformed inputs of all tiles stay in the workspace while blocks of output
//    channels (as many as fit, multiples of 16) have their weights transformed and multiplied
//    in turn; each a's weights are read once per thread for all its tiles (few tiles, many
//    channels: the weights come from L3 and dominate);
//  - else passes of `rows` tiles per thread, sized for its L2 cache (kSlotFloats), with all the
//    transformed weights at once; if even those do not fit, blocks again, each transforming
//    the inputs anew.
// The tiles are split into kSlots contiguous ranges, one per thread, each with its own stretch
// of workspace: one parallel region per block, however many tiles (a region per small chunk of
// tiles cost ~20% at 2 threads on a loaded machine). Workspaces are planned without knowing
// the thread count: kSlots = 2, the target's cores; with more threads these convs still run
// on 2 (a thread-aware plan would lift that).
constexpr int64_t kSlots = 2;
constexpr int64_t kSlotFloats = int64_t{1} << 16;
constexpr int64_t kMaxSlotRows = 64;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }


// The workspace: the packed weights U of a block, [a][K x block]; per slot, the transformed
// inputs V and the products M of its rows, [tile][a][channels], so that one tile's alpha^2
// values lie together (as [a][tile][channels], a tile's transforms touched alpha^2 pages:
// measured ~2x slower transforms, TLB misses); forward also keeps its block of weights
// transposed. U's a stretches are one cache line longer than their data so that they do not
// all start in the same cache set (K x block is often a multiple of 4 KiB).
struct Layout {
  int64_t u_stride;         // floats from one a to the next in U
  int64_t v_row, m_row;     // floats from one tile to the next in V, M
  int64_t slot;             // floats from one slot to the next
  int64_t u, v, m, transposed, total;    // offsets in floats (v, m: of slot 0)
};

Layout layout_of(const Problem& p) {
  const int64_t alpha2 = int64_t{p.m + 2} * (p.m + 2), bp = round_up(p.block, kLanes);
  Layout l;
  l.u_stride = p.k * bp + kLanes;
  l.v_row = alpha2 * p.k;
  l.m_row = alpha2 * bp;
  l.slot = p.rows * (l.v_row + l.m_row);
  l.u = 0;
  l.v = l.u + alpha2 * l.u_stride;
  l.m = l.v + p.rows * l.v_row;
  l.transposed = l.u + alpha2 * l.u_stride + kSlots * l.slot;
  l.total = l.transposed + (p.backward ? 0 : 9 * p.k * bp);  // forward's weights, [tap][k][n]
  return l;
}

int64_t workspace_floats(const Problem& p) { return layout_of(p).total; }

Problem make_problem(const ConvGeometry& g, int m, bool backward) {
  Problem p;
  p.n = g.n;
  p.backward = backward;
  if (!backward) {
    p.in_h = g.h, p.in_w = g.w, p.k = g.c;
    p.out_h = g.out_h, p.out_w = g.out_w, p.out_n = g.out_c;
    p.pad_h = g.ph, p.pad_w = g.pw;
  } else {
    p.in_h = g.out_h, p.in_w = g.out_w, p.k = g.out_c;
    p.out_h = g.h, p.out_w = g.w, p.out_n = g.c;
    p.pad_h = g.kh - 1 - g.ph, p.pad_w = g.kw - 1 - g.pw;
  }
  p.m = m;
  const int64_t alpha2 = int64_t{m + 2} * (m + 2);
  p.tiles_h = (p.out_h + m - 1) / m;
  p.tiles_w = (p.out_w + m - 1) / m;
  p.tiles = p.n * p.tiles_h * p.tiles_w;
  const int64_t budget = workspace_budget_floats(g);
  // The widest block (all channels, or a multiple of 16) whose workspace fits, or 16.
  auto widest_block = [&]() {
    p.block = p.out_n;
    if (workspace_floats(p) <= budget) return;
    p.block = kLanes;
    while (p.block + kLanes < p.out_n) {
      p.block += kLanes;
      if (workspace_floats(p) > budget) {
        p.block -= kLanes;
        return;
      }
    }
  };
  p.rows = (p.tiles + kSlots - 1) / kSlots;  // one pass
  p.block = std::min<int64_t>(kLanes, p.out_n);
  if (workspace_floats(p) <= budget) {
    widest_block();
    return p;
  }
  const int64_t per_tile = alpha2 * (p.k + p.out_n);
  p.rows = std::min(p.rows, std::clamp<int64_t>(kSlotFloats / per_tile / kRowBlock * kRowBlock,
                                                kRowBlock, kMaxSlotRows));
  widest_block();
  return p;
}


// ---------------------------------------------------------------------------------------------
// Transforms of one tile, on one vector (or one float) of channels.

// The epilogue of one vector (or one float) of output channels from oc: the batch-norm
// kernel's expression, (v - mean) * scale + beta clamped to [lo, hi].
inline float normalise(float v, const ConvNormEpilogue& e, int64_t oc) { return e.apply(v, oc); }
inline Vec normalise(Vec v, const ConvNormEpilogue& e, int64_t oc) {
  Vec r = (v - load<Vec>(e.mean + oc)) * load<Vec>(e.scale + oc) + load<Vec>(e.beta + oc);
  const Vec lo = Vec{} + e.lo, hi = Vec{} + e.hi;
  r = r < lo ? lo : r;    // std::max(r, lo)
  return hi < r ? hi : r;  // std::min(r, hi)
}

// The m x m outputs of one tile for output channel oc: from the products s[a * a_stride],
// A^T s A, plus bias, written (or added) where inside the image; with an epilogue, normalised.
template <class T, class V>
inline void output_tile(const Problem& p, const float* s, int64_t a_stride, const float* bias,
                        const ConvNormEpilogue* epilogue, float* img, int64_t oy0, int64_t ox0,
                        int64_t oc, bool accumulate) {
  constexpr int A = T::alpha, M = T::m;
  const int rows = static_cast<int>(std::min<int64_t>(M, p.out_h - oy0));
  const int cols = static_cast<int>(std::min<int64_t>(M, p.out_w - ox0));
  V tmp[M][A];  // A^T s, one column at a time
  for (int j = 0; j < A; ++j) {
    V col[A];
    for (int i = 0; i < A; ++i) col[i] = load<V>(s + (i * A + j) * a_stride);
    V r[M];
    T::output(col, r);
    for (int i = 0; i < M; ++i) tmp[i][j] = r[i];
  }
  const V b = bias ? load<V>(bias + oc) : V{};
  for (int i = 0; i < rows; ++i) {
    V r[M];
    T::output(tmp[i], r);
    for (int j = 0; j < cols; ++j) {
      float* dst = img + ((oy0 + i) * p.out_w + ox0 + j) * p.out_n + oc;
      if (epilogue) store(dst, normalise(r[j] + b, *epilogue, oc));
      else store(dst, accumulate ? r[j] + b + load<V>(dst) : r[j] + b);
    }
  }
}

// u[a] = (G g G^T)[a] for the 3x3 kernel g[ky * 3 + kx].
template <class T, class V>
inline void weight_tile(const V* g, V* u) {
  constexpr int A = T::alpha;
  V tmp[A][3];  // G g
  for (int kx = 0; kx < 3; ++kx) {
    const V col[3] = {g[kx], g[3 + kx], g[6 + kx]};
    V r[A];
    T::weight(col, r);
    for (int i = 0; i < A; ++i) tmp[i][kx] = r[i];
  }
  for (int i = 0; i < A; ++i) T::weight(tmp[i], u + i * A);
}

// ---------------------------------------------------------------------------------------------
// Products: for each a, M[row][n] = sum_k V[row][k] * U[k][n] over the rows of a chunk.
// U is packed in panels of kPanel output channels (the last one may be 16 wide), each panel
// [k][its width], so a register block reads one contiguous stretch per k; V rows are read in
// place, one broadcast per (row, k). Accumulators: kRowBlock rows x two vectors, 16 registers.

// One block of R rows across every panel: the rows' V stays in L1 while the panels stream by.
template <int R>
void product_panels(int64_t k_count, const float* v, int64_t ldv, const float* u, int64_t bp,
                    float* m, int64_t ldm) {
  for (int64_t n0 = 0; n0 < bp; n0 += kPanel) {
    // A panel is [k][its width]: row k of B at width * k.
    if (bp - n0 >= kPanel) product_block<R, 2>(k_count, v, ldv, 1, u + n0 * k_count, kPanel, m + n0, ldm, false);
    else product_block<R, 1>(k_count, v, ldv, 1, u + n0 * k_count, kLanes, m + n0, ldm, false);
  }
}

// m[row * ldm + 0..bp) for `rows` rows of v (ldv apart); u packed for bp (a multiple of 16)
// output channels.
void products(int64_t rows, int64_t k_count, const float* v, int64_t ldv, const float* u,
              int64_t bp, float* m, int64_t ldm) {
  int64_t r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock)
    product_panels<kRowBlock>(k_count, v + r * ldv, ldv, u, bp, m + r * ldm, ldm);
  v += r * ldv, m += r * ldm;
  switch (rows - r) {
    case 1: return product_panels<1>(k_count, v, ldv, u, bp, m, ldm);
    case 2: return product_panels<2>(k_count, v, ldv, u, bp, m, ldm);
    case 3: return product_panels<3>(k_count, v, ldv, u, bp, m, ldm);
    case 4: return product_panels<4>(k_count, v, ldv, u, bp, m, ldm);
    case 5: return product_panels<5>(k_count, v, ldv, u, bp, m, ldm);
    case 6: return product_panels<6>(k_count, v, ldv, u, bp, m, ldm);
    case 7: return product_panels<7>(k_count, v, ldv, u, bp, m, ldm);
    default: return;
  }
}

// ---------------------------------------------------------------------------------------------
// Phases.

// A 16 x 16 transpose in registers: four rounds, each swapping the off-diagonal b x b blocks of
// every 2b x 2b block (b = 8, 4, 2, 1), one two-source shuffle per output row.
typedef int IVec __attribute__((vector_size(64)));

template <int B>
inline void swap_blocks(Vec* r) {
  constexpr IVec lo = B == 8 ? IVec{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}
                    : B == 4 ? IVec{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}
                    : B == 2 ? IVec{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}
                             : IVec{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
  constexpr IVec hi = lo + B;
  for (int i = 0; i < 16; ++i) {
    if (i & B) continue;
    const Vec a = r[i], b = r[i + B];
    r[i] = __builtin_shuffle(a, b, lo);
    r[i + B] = __builtin_shuffle(a, b, hi);
  }
}

inline void transpose16(Vec* r) {
  swap_blocks<8>(r);
  swap_blocks<4>(r);
  swap_blocks<2>(r);
  swap_blocks<1>(r);
}

// transposed[t][k][n] = w[o0 + n][t][k] for n < bc, 0 up to bp. Through 16 x 16 squares: the
// rows of w are 9 K floats apart, often a multiple of 4 KiB, so reading one float from each of
// many rows would thrash a cache set; a square reads 16 whole cache lines instead.
void transpose_weights(const Parallel& par, const Problem& p, const float* w, int64_t o0,
                       int64_t bc, float* transposed) {
  const int64_t K = p.k, bp = round_up(bc, kLanes), k_squares = (K + kLanes - 1) / kLanes;
  par.for_each(k_squares, min_chunk_for(9 * kLanes * bp), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t k0 = s * kLanes, kc = std::min(kLanes, K - k0);
      for (int64_t t = 0; t < 9; ++t)
        for (int64_t n0 = 0; n0 < bp; n0 += kLanes) {
          Vec r[kLanes];  // r[i] = row n0 + i of w at taps t, channels k0..: zero past bc, K
          for (int64_t i = 0; i < kLanes; ++i) {
            const float* row = w + ((o0 + n0 + i) * 9 + t) * K + k0;
            __builtin_prefetch(row + kLanes);  // the next square's line of this row: strided
                                               // rows the hardware prefetchers do not follow
            if (n0 + i >= bc) r[i] = Vec{};
            else if (kc == kLanes) r[i] = load<Vec>(row);
            else {
              r[i] = Vec{};
              for (int64_t j = 0; j < kc; ++j) r[i][j] = row[j];
            }
          }
          transpose16(r);
          for (int64_t j = 0; j < kc; ++j) store(transposed + (t * K + k0 + j) * bp + n0, r[j]);
        }
    }
  });
}

// Transformed, packed weights of output channels [o0, o0 + bc): u[a][packed (k, n)], zero for
// n in [bc, bp). The transform runs vectorised over n, so forward first transposes its block of
// the OHWI weights, [n][tap][k], to [tap][k][n]; backward's taps already are [k][tap][n].
// Work items are (panel, kPackRows rows of k): their alpha^2 results gather in a local buffer
// and go out as one contiguous stretch per a. (Storing each transform's alpha^2 vectors
// straight to alpha^2 distant places ran ~4x slower: a page and a cache miss per store.)
constexpr int64_t kPackRows = 8;

template <class T>
void pack_weights(const Parallel& par, const Problem& p, const Layout& l, const float* w,
                  int64_t o0, int64_t bc, float* ws) {
  constexpr int A2 = T::alpha * T::alpha;
  const int64_t K = p.k, bp = round_up(bc, kLanes);
  float* u = ws + l.u;
  const float* src = w;  // tap t of (k, n) at src[k * k_stride + t * t_stride + n]
  int64_t k_stride, t_stride;
  if (!p.backward) {
    transpose_weights(par, p, w, o0, bc, ws + l.transposed);
    src = ws + l.transposed, k_stride = bp, t_stride = K * bp;
  } else {
    src = w + o0, k_stride = 9 * p.out_n, t_stride = p.out_n;
  }
  const int64_t panels = (bp + kPanel - 1) / kPanel, k_blocks = (K + kPackRows - 1) / kPackRows;
  par.for_each(panels * k_blocks, min_chunk_for(A2 * kPackRows * kPanel), [&](int64_t i0, int64_t i1) {
    alignas(64) float buf[A2][kPackRows][kPanel];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n0 = item / k_blocks * kPanel, width = std::min(kPanel, bp - n0);
      const int64_t k0 = item % k_blocks * kPackRows, kc = std::min(kPackRows, K - k0);
      for (int64_t k = k0; k < k0 + kc; ++k) {
        // Backward reads the conv's weights in place, rows 9 N floats apart (in a profile, half
        // of the packing time waited on these loads): fetch the next item's rows ahead.
        if (k + kPackRows < K)
          for (int t = 0; t < 9; ++t)
            for (int64_t n = n0; n < n0 + width; n += kLanes)
              __builtin_prefetch(src + (k + kPackRows) * k_stride + t * t_stride + n);
        for (int64_t n = n0; n < n0 + width; n += kLanes) {
          auto transform = [&]<class V>(int64_t c, int64_t lane) {
            V g[9], r[A2];
            for (int t = 0; t < 9; ++t)  // backward: the kernel rotated by 180 degrees
              g[t] = load<V>(src + k * k_stride + (p.backward ? 8 - t : t) * t_stride + c);
            weight_tile<T, V>(g, r);
            for (int a = 0; a < A2; ++a) store(&buf[a][k - k0][n - n0 + lane], r[a]);
          };
          if (n + kLanes <= bc) {
            transform.template operator()<Vec>(n, 0);
          } else {
            for (int64_t lane = 0; lane < kLanes; ++lane) {
              if (n + lane < bc) transform.template operator()<float>(n + lane, lane);
              else
                for (int a = 0; a < A2; ++a) buf[a][k - k0][n - n0 + lane] = 0.0f;
            }
          }
        }
      }
      for (int a = 0; a < A2; ++a) {
        float* dst = u + a * l.u_stride + n0 * K + k0 * width;
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t j = 0; j < width; j += kLanes) store(dst + k * width + j, load<Vec>(&buf[a][k][j]));
      }
    }
  });
}

// Input patches come from memory: overlapping 6-row windows over images far larger than the
// caches, which the hardware prefetchers follow poorly (in a profile at 56 x 56 x 64 the input
// transform waited mostly on its loads). Prefetch the patch kPrefetchTiles ahead (measured,
// one thread on a loaded machine: 56 x 56 x 64 forward 8.3 -> 7.7 ms, backward 8.6 -> 7.1).
constexpr int64_t kPrefetchTiles = 2;

template <class T>
inline void prefetch_patch(const Problem& p, const float* in, int64_t t) {
  if (t >= p.tiles) return;
  constexpr int A = T::alpha, M = T::m;
  const int64_t per_image = p.tiles_h * p.tiles_w, n = t / per_image;
  const int64_t iy0 = (t % per_image) / p.tiles_w * M - p.pad_h, ix0 = t % p.tiles_w * M - p.pad_w;
  const int64_t x0 = std::max<int64_t>(0, ix0), x1 = std::min(p.in_w, ix0 + A);
  if (x0 >= x1) return;
  for (int64_t iy = std::max<int64_t>(0, iy0); iy < std::min(p.in_h, iy0 + A); ++iy) {
    const char* row = reinterpret_cast<const char*>(in + ((n * p.in_h + iy) * p.in_w + x0) * p.k);
    for (int64_t byte = 0; byte < (x1 - x0) * p.k * int64_t{sizeof(float)}; byte += 64)
      __builtin_prefetch(row + byte);
  }
}

template <class T>
void run(const Parallel& par, const Problem& p, const float* in, const float* w, const float* bias,
         const ConvNormEpilogue* epilogue, float* out, bool accumulate, float* ws) {
  constexpr int A2 = T::alpha * T::alpha, M = T::m;
  const int64_t K = p.k;
  const Layout l = layout_of(p);
  const float* u = ws + l.u;  // [A2][packed K x bp]
  const int64_t per_image = p.tiles_h * p.tiles_w;
  // Always kSlots slots (fewer threads run them in turn), so that one pass stays one pass.
  const int64_t slots = std::min(kSlots, p.tiles);
  // When every slot's tiles fit its rows at once, later blocks reuse the transformed inputs.
  const bool one_pass = (p.tiles + slots - 1) / slots <= p.rows;
  for (int64_t o0 = 0; o0 < p.out_n; o0 += p.block) {
    const int64_t bc = std::min(p.block, p.out_n - o0), bp = round_up(bc, kLanes);
    pack_weights<T>(par, p, l, w, o0, bc, ws);
    par.for_each(slots, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t slot = s0; slot < s1; ++slot) {
        float* v = ws + l.v + slot * l.slot;  // [rows][A2][K]
        float* prod = ws + l.m + slot * l.slot;  // [rows][A2][bp]
        const int64_t t_end = (slot + 1) * p.tiles / slots;
        for (int64_t t0 = slot * p.tiles / slots; t0 < t_end; t0 += p.rows) {
          const int64_t rows = std::min(p.rows, t_end - t0);
          for (int64_t r = 0; r < rows && (o0 == 0 || !one_pass); ++r) {
            const int64_t t = t0 + r, n = t / per_image;
            const int64_t ty = (t % per_image) / p.tiles_w, tx = t % p.tiles_w;
            const float* img = in + n * p.in_h * p.in_w * K;
            prefetch_patch<T>(p, in, t + kPrefetchTiles);
            for_channels(K, [&]<class V>(int64_t c) {
              input_tile<T, V>(p.in_h, p.in_w, K, img, ty * M - p.pad_h, tx * M - p.pad_w, c, v + r * l.v_row, K);
            });
          }
          for (int a = 0; a < A2; ++a)
            products(rows, K, v + a * K, l.v_row, u + a * l.u_stride, bp, prod + a * bp, l.m_row);
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t t = t0 + r, n = t / per_image;
            const int64_t ty = (t % per_image) / p.tiles_w, tx = t % p.tiles_w;
            float* img = out + n * p.out_h * p.out_w * p.out_n;
            for_channels(bc, [&]<class V>(int64_t c) {
              output_tile<T, V>(p, prod + r * l.m_row + c, bp, bias, epilogue, img, ty * M,
                                tx * M, o0 + c, accumulate);
            });
          }
        }
      }
    });
  }
}

void run_problem(const Parallel& par, const Problem& p, const float* in, const float* w,
                 const float* bias, const ConvNormEpilogue* epilogue, float* out, bool accumulate,
                 void* workspace, size_t bytes) {
  ET_CHECK(bytes >= static_cast<size_t>(workspace_floats(p)) * sizeof(float));
  ET_CHECK(epilogue == nullptr || !accumulate);
  float* ws = static_cast<float*>(workspace);
  if (p.m == 4) run<F4>(par, p, in, w, bias, epilogue, out, accumulate, ws);
  else run<F2>(par, p, in, w, bias, epilogue, out, accumulate, ws);
}

// EDGETRAIN_WINOGRAD=off|f2|f4 (anything else: auto) sets the starting policy, so that one
// binary can time whole training steps with and without Winograd, interleaved.
WinogradPolicy policy_from_environment() {
  const char* v = std::getenv("EDGETRAIN_WINOGRAD");
  const std::string s = v ? v : "";
  if (s == "off") return WinogradPolicy::kOff;
  if (s == "f2") return WinogradPolicy::kF2;
  if (s == "f4") return WinogradPolicy::kF4;
  return WinogradPolicy::kAuto;
}

std::atomic<WinogradPolicy> g_policy{policy_from_environment()};

}  // namespace

// ---------------------------------------------------------------------------------------------

int winograd_weight_tile(const ConvGeometry& g) {
  const WinogradPolicy policy = g_policy.load(std::memory_order_relaxed);
  if (policy == WinogradPolicy::kOff) return 0;
  if (g.groups != 1 || g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1) return 0;
  if (policy == WinogradPolicy::kF2) return 2;
  if (policy == WinogradPolicy::kF4) return 4;
  // Measured (bench/bench_conv2d, ResNet-18 layers, 1 thread, CPU time): F(4x4) beats F(2x2)
  // and im2col at every size from 4 x 4 outputs up (4x at 56 x 56 x 64 ... 1.4-1.8x at
  // 7 x 7 x 512); at 2 x 2 outputs most of a tile is padding and im2col wins. Few channels
  // make short products for little gain (and a workspace larger than im2col's).
  if (std::min(g.out_h, g.out_w) < 4) return 0;
  if (std::min(g.c, g.out_c) < 16) return 0;
  return 4;
}

int winograd_tile(const ConvGeometry& g) {
  const int m = winograd_weight_tile(g);
  if (m == 0 || g_policy.load(std::memory_order_relaxed) != WinogradPolicy::kAuto) return m;
  // Forward and backward data transform all the weights (36 values each for F(4x4)) and stream
  // them through 36 products of [tiles x Cin] x [Cin x Cout]: with few tiles that is most of the
  // cost, while im2col reads the 9 raw values once. Session 13 (2 threads, one conv, F4 against
  // im2col, ResNet shapes at batch 1-16): Winograd pays once the batch's output pixels, weighted
  // by the share of its tiles they fill (5x5 maps fill 25 of 64 tile pixels), reach about
  // three quarters of the output channels: 4x4 x 512 at batch 1 ran 8.3x slower than im2col (4.0
  // against 0.48 ms), at 16 0.85x; 8x8 x 256 at batch 2 0.98x, at 4 1.34x; 7x7 x 512 at batch 8
  // 0.99x (backward data 1.09x), at 16 1.50x; 16x16 x 128 from batch 1 1.9x. ResNet-18 steps at
  // batch 1, 128x128, ran 2.3x slower with Winograd (63 against 27 ms). The weight gradient keeps
  // winograd_weight_tile: its Winograd wins from fewer tiles (4x4 x 512 at batch 2: 1.6x).
  const double useful = static_cast<double>(g.n * g.out_h * g.out_w);
  const double covered = static_cast<double>(g.n * ((g.out_h + m - 1) / m) * ((g.out_w + m - 1) / m) * m * m);
  if (useful * (useful / covered) < 0.75 * static_cast<double>(g.out_c)) return 0;
  return m;
}

void set_winograd_policy(WinogradPolicy policy) { g_policy.store(policy, std::memory_order_relaxed); }
WinogradPolicy winograd_policy() { return g_policy.load(std::memory_order_relaxed); }

void set_winograd_budget_for_testing(int64_t floats) {
  winograd::g_budget_for_testing.store(floats, std::memory_order_relaxed);
}

size_t winograd_forward_workspace_bytes(const ConvGeometry& g, int m) {
  return static_cast<size_t>(workspace_floats(make_problem(g, m, false))) * sizeof(float);
}

size_t winograd_backward_data_workspace_bytes(const ConvGeometry& g, int m) {
  return static_cast<size_t>(workspace_floats(make_problem(g, m, true))) * sizeof(float);
}

void winograd_forward(const Parallel& par, const ConvGeometry& g, int m, const float* x,
                      const float* w, const float* b, float* y, void* workspace,
                      size_t workspace_bytes, const ConvNormEpilogue* epilogue) {
  run_problem(par, make_problem(g, m, false), x, w, b, epilogue, y, false, workspace, workspace_bytes);
}

void winograd_backward_data(const Parallel& par, const ConvGeometry& g, int m, const float* dy,
                            const float* w, float* dx, bool accumulate, void* workspace,
                            size_t workspace_bytes) {
  run_problem(par, make_problem(g, m, true), dy, w, nullptr, nullptr, dx, accumulate, workspace,
              workspace_bytes);
}

}  // namespace edgetrain
