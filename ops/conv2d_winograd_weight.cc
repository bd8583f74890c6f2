// Winograd for the weight gradient of dense 3x3 stride-1 convs: F(3x3, 4x4) (F(3x3, 2x2) with
// the 2x2 tile). Per output tile t (m x m pixels of dy) the gradient's contribution is the
// correlation of the tile's (m+2) x (m+2) input patch with the tile's dy as a filter, 3 x 3
// outputs:
//   dW_t = A'^T [ (G' dy_t G'^T) .* (B^T x_t B) ] A'
// with the forward's B^T (same points: the input patches transform exactly as in forward), G'
// and A' from ops/winograd_tiles.h. Summed over tiles before the output transform, the sum
// becomes alpha^2 products M[a][o][c] = sum_t D[t][a][o] X[t][a][c], reductions over tiles.
//
// Per block of output channels (rows of dW; one block unless the workspace bound says
// otherwise), per chunk of tiles:
//   1. transforms X (x patches) and D (dy tiles), parallel over tiles;
//   2. products into M, parallel over a (each thread owns its a's of M: nothing to merge);
// then the output transform dW = A'^T M A' (or dW += ...), parallel over output channels.
#include <algorithm>
#include <cstdint>

#include "ops/conv2d_winograd.h"
#include "ops/winograd_tiles.h"
#include "runtime/status.h"

namespace edgetrain {

namespace {

using namespace winograd;

struct Problem {
  int64_t n, h, w, c, out_h, out_w, o, pad_h, pad_w;
  int m;
  int64_t tiles_h, tiles_w, tiles;
  int64_t cp;     // c rounded up to 16: the width of X's and M's rows
  int64_t block;  // output channels (rows of dW) per block
  int64_t chunk;  // tiles per chunk
};

// Workspace: M of a block, [a][block][cp]; X and D of a chunk, [a][t][cp] and [a][t][o], so
// that the products' reduction over tiles walks contiguous rows (as [t][a][..], consecutive
// tiles of one a lay 36 rows apart: measured 4x slower products at 14 x 14 x 256). Each a's
// stretch is one cache line longer than its data, so that the stretches do not all start in
// one cache set.
struct Layout {
  int64_t m_stride, x_stride, d_stride;  // floats from one a to the next
  int64_t m, x, d, total;
};

Layout layout_of(const Problem& p) {
  const int64_t a2 = int64_t{p.m + 2} * (p.m + 2);
  Layout l;
  l.m_stride = p.block * p.cp + kLanes;
  l.x_stride = p.chunk * p.cp + kLanes;
  l.d_stride = p.chunk * p.o + kLanes;
  l.m = 0;
  l.x = l.m + a2 * l.m_stride;
  l.d = l.x + a2 * l.x_stride;
  l.total = l.d + a2 * l.d_stride;
  return l;
}

// Bound as for forward and backward data (workspace_budget_floats). Within it: one chunk holding every tile's
// transforms when it fits (blocks then reuse them); else M whole and chunks of up to kMaxChunk
// tiles, if at least kMinChunk fit (the products reduce over a chunk's tiles, and M is loaded
// and stored once per chunk; longer chunks only push the transforms out of the caches:
// measured 56 x 56 x 64, one thread: chunks of 56 tiles 8.5 ms, of 750 tiles 11.7 ms); else
// chunks of kMinChunk tiles and blocks of output channels, each block transforming the tiles
// anew.
constexpr int64_t kMinChunk = 64;
constexpr int64_t kMaxChunk = 128;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }


Problem make_problem(const ConvGeometry& g, int m) {
  Problem p;
  p.n = g.n, p.h = g.h, p.w = g.w, p.c = g.c;
  p.out_h = g.out_h, p.out_w = g.out_w, p.o = g.out_c;
  p.pad_h = g.ph, p.pad_w = g.pw;
  p.m = m;
  p.tiles_h = (p.out_h + m - 1) / m;
  p.tiles_w = (p.out_w + m - 1) / m;
  p.tiles = p.n * p.tiles_h * p.tiles_w;
  p.cp = round_up(p.c, kLanes);
  const int64_t a2 = int64_t{m + 2} * (m + 2);
  const int64_t budget = workspace_budget_floats(g);
  auto widest_block = [&]() {
    p.block = p.o;
    if (layout_of(p).total <= budget) return;
    p.block = kLanes;
    while (p.block + kLanes < p.o) {
      p.block += kLanes;
      if (layout_of(p).total > budget) {
        p.block -= kLanes;
        return;
      }
    }
  };
  p.chunk = p.tiles;
  p.block = std::min(kLanes, p.o);
  if (layout_of(p).total <= budget) {
    widest_block();
    return p;
  }
  p.block = p.o;
  p.chunk = 0;
  const int64_t room = budget - layout_of(p).total;  // M whole, no chunk yet
  p.chunk = std::min({p.tiles, kMaxChunk, room / (a2 * (p.cp + p.o) + 2 * kLanes) / 8 * 8});
  if (p.chunk >= kMinChunk) return p;
  p.chunk = std::min(p.tiles, kMinChunk);
  widest_block();
  return p;
}

// The tile winograd_weight_tile() chose, except where F(3x3, 4x4)'s M (36 values per weight) must be
// split into blocks that each transform every tile again while F(3x3, 2x2)'s (16 per weight)
// need not: then the 2x2 tile (measured at 14 x 14 x 256, batch 8, one thread: F(3x3, 4x4) in
// 4 blocks 15.7 ms, F(3x3, 2x2) 14.5 ms, im2col 20.5 ms). Only under the automatic policy, so
// that a forced tile is the tile benchmarks measure.
Problem plan(const ConvGeometry& g, int m) {
  Problem p = make_problem(g, m);
  if (m == 4 && winograd_policy() == WinogradPolicy::kAuto && p.block < p.o && p.chunk < p.tiles) {
    Problem p2 = make_problem(g, 2);
    if (p2.block == p2.o || p2.chunk == p2.tiles) return p2;
  }
  return p;
}


// D[a * a_stride] = (G' f G'^T)[a] for the m x m dy values of the tile at (oy0, ox0), channel
// offset c; values outside the image read as zero.
template <class T, class V>
inline void dy_tile(const Problem& p, const float* img, int64_t oy0, int64_t ox0, int64_t c,
                    float* d, int64_t a_stride) {
  constexpr int A = T::alpha, M = T::m;
  const int rows = static_cast<int>(std::min<int64_t>(M, p.out_h - oy0));
  const int cols = static_cast<int>(std::min<int64_t>(M, p.out_w - ox0));
  V tmp[A][M];  // G' f, one column at a time
  for (int j = 0; j < M; ++j) {
    V col[M];
    for (int i = 0; i < M; ++i)
      col[i] = i < rows && j < cols ? load<V>(img + ((oy0 + i) * p.out_w + ox0 + j) * p.o + c) : V{};
    V r[A];
    T::dy(col, r);
    for (int i = 0; i < A; ++i) tmp[i][j] = r[i];
  }
  for (int i = 0; i < A; ++i) {
    V r[A];
    T::dy(tmp[i], r);
    for (int j = 0; j < A; ++j) store(d + (i * A + j) * a_stride + c, r[j]);
  }
}

// dw[o][ky][kx][c] (+)= (A'^T s A')[ky][kx] from s[a * a_stride].
template <class T, class V>
inline void dw_tile(const float* s, int64_t a_stride, float* dw_oc, int64_t c_count, bool accumulate) {
  constexpr int A = T::alpha;
  V tmp[3][A];
  for (int j = 0; j < A; ++j) {
    V col[A];
    for (int i = 0; i < A; ++i) col[i] = load<V>(s + (i * A + j) * a_stride);
    V r[3];
    T::dw(col, r);
    for (int i = 0; i < 3; ++i) tmp[i][j] = r[i];
  }
  for (int i = 0; i < 3; ++i) {
    V r[3];
    T::dw(tmp[i], r);
    for (int j = 0; j < 3; ++j) {
      float* dst = dw_oc + (i * 3 + j) * c_count;
      store(dst, accumulate ? r[j] + load<V>(dst) : r[j]);
    }
  }
}

template <int R>
void product_panels(int64_t k_count, const float* d, int64_t ldd, const float* x, int64_t ldx,
                    int64_t cp, float* m, int64_t ldm, bool add) {
  for (int64_t n0 = 0; n0 < cp; n0 += 2 * kLanes) {
    // m[r][..] (+)= sum over tiles k of d[k * ldd + r] * x[k * ldx + ..] (ops/winograd_tiles.h).
    if (cp - n0 >= 2 * kLanes) product_block<R, 2>(k_count, d, 1, ldd, x + n0, ldx, m + n0, ldm, add);
    else product_block<R, 1>(k_count, d, 1, ldd, x + n0, ldx, m + n0, ldm, add);
  }
}

// M rows [0, rows) of one a.
void products(int64_t rows, int64_t k_count, const float* d, int64_t ldd, const float* x,
              int64_t ldx, int64_t cp, float* m, int64_t ldm, bool add) {
  constexpr int kRows = 8;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    product_panels<kRows>(k_count, d + r, ldd, x, ldx, cp, m + r * ldm, ldm, add);
  d += r, m += r * ldm;
  switch (rows - r) {
    case 1: return product_panels<1>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 2: return product_panels<2>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 3: return product_panels<3>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 4: return product_panels<4>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 5: return product_panels<5>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 6: return product_panels<6>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    case 7: return product_panels<7>(k_count, d, ldd, x, ldx, cp, m, ldm, add);
    default: return;
  }
}

template <class T>
void run(const Parallel& par, const Problem& p, const float* dy, const float* x, float* dw,
         bool accumulate, float* ws) {
  constexpr int A2 = T::alpha * T::alpha, M = T::m;
  const Layout l = layout_of(p);
  float* mm = ws + l.m;
  float* xt = ws + l.x;
  float* dt = ws + l.d;
  const int64_t per_image = p.tiles_h * p.tiles_w;
  const int64_t chunks = (p.tiles + p.chunk - 1) / p.chunk;
  for (int64_t o0 = 0; o0 < p.o; o0 += p.block) {
    const int64_t bo = std::min(p.block, p.o - o0);
    for (int64_t t0 = 0; t0 < p.tiles; t0 += p.chunk) {
      const int64_t tc = std::min(p.chunk, p.tiles - t0);
      if (o0 == 0 || chunks > 1) {  // one chunk: later blocks reuse its transforms
        par.for_each(tc, min_chunk_for(A2 * (p.cp + p.o)), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t t = t0 + r, n = t / per_image;
            const int64_t ty = (t % per_image) / p.tiles_w, tx = t % p.tiles_w;
            float* xr = xt + r * p.cp;
            const float* x_img = x + n * p.h * p.w * p.c;
            for_channels(p.c, [&]<class V>(int64_t c) {
              input_tile<T, V>(p.h, p.w, p.c, x_img, ty * M - p.pad_h, tx * M - p.pad_w, c, xr, l.x_stride);
            });
            for (int64_t c = p.c; c < p.cp; ++c)
              for (int a = 0; a < A2; ++a) xr[a * l.x_stride + c] = 0.0f;
            const float* dy_img = dy + n * p.out_h * p.out_w * p.o;
            for_channels(p.o, [&]<class V>(int64_t c) {
              dy_tile<T, V>(p, dy_img, ty * M, tx * M, c, dt + r * p.o, l.d_stride);
            });
          }
        });
      }
      par.for_each(A2, 1, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a)
          products(bo, tc, dt + a * l.d_stride + o0, p.o, xt + a * l.x_stride, p.cp, p.cp,
                   mm + a * l.m_stride, p.cp, t0 > 0);
      });
    }
    par.for_each(bo, min_chunk_for(A2 * p.cp), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for_channels(p.c, [&]<class V>(int64_t c) {
          dw_tile<T, V>(mm + r * p.cp + c, l.m_stride, dw + (o0 + r) * 9 * p.c + c, p.c, accumulate);
        });
    });
  }
}

}  // namespace

int winograd_backward_weight_tile(const ConvGeometry& g, int m) { return plan(g, m).m; }

WinogradWeightSplit winograd_backward_weight_split(const ConvGeometry& g, int m) {
  const Problem p = plan(g, m);
  return {p.m, (p.o + p.block - 1) / p.block, (p.tiles + p.chunk - 1) / p.chunk};
}

size_t winograd_backward_weight_workspace_bytes(const ConvGeometry& g, int m) {
  return static_cast<size_t>(layout_of(plan(g, m)).total) * sizeof(float);
}

void winograd_backward_weight(const Parallel& par, const ConvGeometry& g, int m, const float* dy,
                              const float* x, float* dw, bool accumulate, void* workspace,
                              size_t workspace_bytes) {
  const Problem p = plan(g, m);
  ET_CHECK(workspace_bytes >= static_cast<size_t>(layout_of(p).total) * sizeof(float));
  float* ws = static_cast<float*>(workspace);
  if (p.m == 4) run<F4>(par, p, dy, x, dw, accumulate, ws);
  else run<F2>(par, p, dy, x, dw, accumulate, ws);
}

}  // namespace edgetrain
