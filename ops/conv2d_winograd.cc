// Winograd F(2x2, 3x3) and F(4x4, 3x3) for dense 3x3 stride-1 convs (see the header).
//
// One "problem" maps an input image (x forward, dy backward) through a 3x3 correlation to an
// output image (y forward, dx backward). Per chunk of output tiles:
//   1. input transform   V[a][t][Cin]  = (B^T d_t B)[a], parallel over tiles
//   2. per block of output channels (one block when its transformed weights are small):
//        weight transform U[a][..]     = (G g G^T)[a]   (once per call when there is one block)
//        alpha^2 GEMMs    M[a][t][Co]  = V[a] x U[a], parallel over a, each single-threaded
//        output transform y_t          = A^T M_t A (+ bias, or + dx when accumulating),
//                                        parallel over tiles
// The GEMMs are split over a rather than over tiles so each keeps every row of the chunk (a
// GEMM's efficiency falls with few rows), and so the split needs no per-thread workspace.
// Transforms are vectorised over the channel dimension, contiguous in NHWC and OHWI.
#include "ops/conv2d_winograd.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "ops/gemm.h"
#include "runtime/status.h"

namespace edgetrain {

namespace {

// ---------------------------------------------------------------------------------------------
// Tile transforms, written once for a lane vector (16 channels) and for one float (channel
// counts that are not a multiple of 16). GCC vector extensions: V * float broadcasts.

typedef float Vec __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

template <class V> inline V load(const float* p);
template <> inline float load<float>(const float* p) { return *p; }
template <> inline Vec load<Vec>(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, float v) { *p = v; }
inline void store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof v); }

// F(2, 3), interpolation points 0, 1, -1, infinity.
struct F2 {
  static constexpr int m = 2, alpha = 4;
  template <class V> static void input(const V* d, V* r) {  // r = B^T d
    r[0] = d[0] - d[2];
    r[1] = d[1] + d[2];
    r[2] = d[2] - d[1];
    r[3] = d[1] - d[3];
  }
  template <class V> static void weight(const V* g, V* u) {  // u = G g
    const V s = 0.5f * (g[0] + g[2]), h = 0.5f * g[1];
    u[0] = g[0];
    u[1] = s + h;
    u[2] = s - h;
    u[3] = g[2];
  }
  template <class V> static void output(const V* s, V* o) {  // o = A^T s
    o[0] = s[0] + s[1] + s[2];
    o[1] = s[1] - s[2] - s[3];
  }
};

// F(4, 3), interpolation points 0, -1, 1, 1/2, -2, infinity. Not Lavin's 0, +-1, +-2: the same
// multiplies, but with 1/2 for 2 the transformed values span a smaller range and the result
// rounds ~2.5x less (measured: max error / output RMS 1.3e-5 instead of 6.6e-5 at 256 channels;
// the float direct sum: 5.7e-6). Matrices from the Toom-Cook construction (evaluation at the
// points, interpolation through the inverse Vandermonde), G's rows divided by prod(p_j - p_l).
struct F4 {
  static constexpr int m = 4, alpha = 6;
  // B^T = [1 -3/2   -2  3/2   1 0]
  //       [0    1 -5/2  1/2   1 0]
  //       [0   -1  1/2  5/2   1 0]
  //       [0   -2   -1    2   1 0]
  //       [0  1/2   -1 -1/2   1 0]
  //       [0    1 -3/2   -2 3/2 1]
  template <class V> static void input(const V* d, V* r) {
    const V q = d[4] - d[2], s = d[3] - d[1];
    const V h = q + 1.5f * d[3], k = d[1] - 1.5f * d[2] - d[3];
    r[0] = d[0] - d[2] + q + 1.5f * s;
    r[1] = h + k;
    r[2] = h - k;
    r[3] = q + 2.0f * s;
    r[4] = q - 0.5f * s;
    r[5] = d[5] + d[1] - 2.0f * d[3] + 1.5f * q;
  }
  // G = [    1      0      0]
  //     [ -1/3    1/3   -1/3]
  //     [  1/3    1/3    1/3]
  //     [-16/15 -8/15  -4/15]
  //     [ 1/15  -2/15   4/15]
  //     [    0      0      1]
  template <class V> static void weight(const V* g, V* u) {
    const V e = g[0] + g[2];
    u[0] = g[0];
    u[1] = (1.0f / 3) * (g[1] - e);
    u[2] = (1.0f / 3) * (g[1] + e);
    u[3] = (-4.0f / 15) * (4.0f * g[0] + 2.0f * g[1] + g[2]);
    u[4] = (1.0f / 15) * (g[0] - 2.0f * g[1] + 4.0f * g[2]);
    u[5] = g[2];
  }
  // A^T = [1  1 1   1  1 0]
  //       [0 -1 1 1/2 -2 0]
  //       [0  1 1 1/4  4 0]
  //       [0 -1 1 1/8 -8 1]
  template <class V> static void output(const V* s, V* o) {
    const V a = s[2] + s[1], b = s[2] - s[1];
    o[0] = s[0] + a + s[3] + s[4];
    o[1] = b + 0.5f * s[3] - 2.0f * s[4];
    o[2] = a + 0.25f * s[3] + 4.0f * s[4];
    o[3] = b + 0.125f * s[3] - 8.0f * s[4] + s[5];
  }
};

// ---------------------------------------------------------------------------------------------
// The problem: in [n][in_h][in_w][in_c] -> out [n][out_h][out_w][out_c], out(oy, ox) reading
// in(oy - pad_h + ky, ox - pad_w + kx) for ky, kx in 0..2. pad may be negative (backward data
// of a conv padded by more than 2). Weights are the conv's OHWI tensor: forward, its O is out_c;
// backward, its O is in_c and the taps are read rotated.

struct Problem {
  int64_t n, in_h, in_w, in_c, out_h, out_w, out_c, pad_h, pad_w;
  bool backward;
  int m;                              // output tile size
  int64_t tiles_h, tiles_w, tiles;    // output tiles per column, per row, in the batch
  int64_t block;                      // output channels per weight block
  int64_t chunk;                      // tiles per chunk
};

// Workspace knobs. The transformed weights of a block: at most kWeightBlockFloats (a whole
// layer's up to 512 x 512 channels would need 36 * 512 * 512 floats = 38 MB at m = 4). A chunk
// of tiles: about kChunkFloats of V and M, more (up to 4x) where that is too few GEMM rows.
constexpr int64_t kWeightBlockFloats = int64_t{1} << 20;
constexpr int64_t kChunkFloats = int64_t{1} << 20;
constexpr int64_t kMinChunkTiles = 64;
// gemm() runs problems of at most 100^3 multiply-adds in a plain loop (ops/gemm.cc: OpenBLAS's
// small-matrix path allocates); a chunk tries to give each GEMM more than that.
constexpr int64_t kMinGemmMacs = 100 * 100 * 100 + 1;

Problem make_problem(const ConvGeometry& g, int m, bool backward) {
  Problem p;
  p.n = g.n;
  p.backward = backward;
  if (!backward) {
    p.in_h = g.h, p.in_w = g.w, p.in_c = g.c;
    p.out_h = g.out_h, p.out_w = g.out_w, p.out_c = g.out_c;
    p.pad_h = g.ph, p.pad_w = g.pw;
  } else {
    p.in_h = g.out_h, p.in_w = g.out_w, p.in_c = g.out_c;
    p.out_h = g.h, p.out_w = g.w, p.out_c = g.c;
    p.pad_h = g.kh - 1 - g.ph, p.pad_w = g.kw - 1 - g.pw;
  }
  p.m = m;
  const int64_t alpha2 = int64_t{m + 2} * (m + 2);
  p.tiles_h = (p.out_h + m - 1) / m;
  p.tiles_w = (p.out_w + m - 1) / m;
  p.tiles = p.n * p.tiles_h * p.tiles_w;
  // Whole blocks of 16 channels keep the transforms' full vectors.
  const int64_t fit = kWeightBlockFloats / std::max<int64_t>(1, alpha2 * p.in_c) / kLanes * kLanes;
  p.block = std::min(p.out_c, std::max(kLanes, fit));
  const int64_t by_budget = kChunkFloats / (alpha2 * (p.in_c + p.block));
  const int64_t by_gemm = (kMinGemmMacs + p.in_c * p.block - 1) / (p.in_c * p.block);
  // The GEMM minimum may exceed the budget (few channels), but not by more than 4x.
  p.chunk = std::min(p.tiles, std::max(kMinChunkTiles, std::min(4 * by_budget, std::max(by_budget, by_gemm))));
  return p;
}

int64_t workspace_floats(const Problem& p) {
  const int64_t alpha2 = int64_t{p.m + 2} * (p.m + 2);
  return alpha2 * (p.block * p.in_c + p.chunk * p.in_c + p.chunk * p.block);
}

// Smallest share of a parallel loop worth handing to another thread: about 16K floats of work.
int64_t min_chunk_for(int64_t floats_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, floats_per_item));
}

// ---------------------------------------------------------------------------------------------
// Per-tile work on one vector (or one float) of channels at offset c.

// v[a * a_stride] = (B^T d B)[a] for the patch whose top-left input pixel is (iy0, ix0) of
// image img; pixels outside the image (padding) read as zero.
template <class T, class V>
inline void input_tile(const Problem& p, const float* img, int64_t iy0, int64_t ix0, int64_t c,
                       float* v, int64_t a_stride) {
  constexpr int A = T::alpha;
  const int i0 = static_cast<int>(std::clamp<int64_t>(-iy0, 0, A));
  const int i1 = static_cast<int>(std::clamp<int64_t>(p.in_h - iy0, i0, A));
  const int j0 = static_cast<int>(std::clamp<int64_t>(-ix0, 0, A));
  const int j1 = static_cast<int>(std::clamp<int64_t>(p.in_w - ix0, j0, A));
  V tmp[A][A];  // tmp = B^T d, one column at a time
  for (int j = 0; j < A; ++j) {
    V col[A];
    const bool inside = j >= j0 && j < j1;
    for (int i = 0; i < A; ++i)
      col[i] = (inside && i >= i0 && i < i1)
                   ? load<V>(img + ((iy0 + i) * p.in_w + ix0 + j) * p.in_c + c)
                   : V{};
    V r[A];
    T::input(col, r);
    for (int i = 0; i < A; ++i) tmp[i][j] = r[i];
  }
  for (int i = 0; i < A; ++i) {  // rows of (B^T d) B
    V r[A];
    T::input(tmp[i], r);
    for (int j = 0; j < A; ++j) store(v + (i * A + j) * a_stride + c, r[j]);
  }
}

// The m x m outputs of one tile for channel offset c of the block (global channel oc): from the
// products s[a * a_stride], A^T s A, plus bias, written (or added) where inside the image.
template <class T, class V>
inline void output_tile(const Problem& p, const float* s, int64_t a_stride, const float* bias,
                        float* img, int64_t oy0, int64_t ox0, int64_t oc, bool accumulate) {
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
      float* dst = img + ((oy0 + i) * p.out_w + ox0 + j) * p.out_c + oc;
      store(dst, accumulate ? r[j] + b + load<V>(dst) : r[j] + b);
    }
  }
}

// u[a * a_stride] = (G g G^T)[a] for the 3x3 kernel g(ky, kx) = at[(ky * 3 + kx) * tap_stride]
// (tap order already rotated by the caller when rotate is set).
template <class T, class V>
inline void weight_tile(const float* at, int64_t tap_stride, bool rotate, float* u, int64_t a_stride) {
  constexpr int A = T::alpha;
  V tmp[A][3];  // G g
  for (int kx = 0; kx < 3; ++kx) {
    V col[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int tap = rotate ? (2 - ky) * 3 + (2 - kx) : ky * 3 + kx;
      col[ky] = load<V>(at + tap * tap_stride);
    }
    V r[A];
    T::weight(col, r);
    for (int i = 0; i < A; ++i) tmp[i][kx] = r[i];
  }
  for (int i = 0; i < A; ++i) {
    V r[A];
    T::weight(tmp[i], r);
    for (int j = 0; j < A; ++j) store(u + (i * A + j) * a_stride, r[j]);
  }
}

// Runs fn.template operator()<V>(offset) over [0, count) in vectors of 16, then single floats.
template <class Fn>
inline void for_channels(int64_t count, Fn&& fn) {
  int64_t c = 0;
  for (; c + kLanes <= count; c += kLanes) fn.template operator()<Vec>(c);
  for (; c < count; ++c) fn.template operator()<float>(c);
}

// ---------------------------------------------------------------------------------------------
// Phases.

// Transformed weights of output channels [o0, o0 + bc) into u (per a: block * in_c floats).
// Forward: u[a][o - o0][i] (the GEMM reads it transposed). Backward: u[a][i][o - o0].
template <class T>
void transform_weights(const Parallel& par, const Problem& p, const float* w, int64_t o0,
                       int64_t bc, float* u) {
  constexpr int A2 = T::alpha * T::alpha;
  const int64_t a_stride = p.block * p.in_c;
  if (!p.backward) {
    // w[o][ky][kx][i]: contiguous over the input channels.
    par.for_each(bc, min_chunk_for(A2 * p.in_c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for_channels(p.in_c, [&]<class V>(int64_t i) {
          weight_tile<T, V>(w + (o0 + r) * 9 * p.in_c + i, p.in_c, false, u + r * p.in_c + i, a_stride);
        });
    });
  } else {
    // The conv's w[i][ky][kx][o] (its out channels are this problem's in channels): contiguous
    // over this problem's out channels.
    par.for_each(p.in_c, min_chunk_for(A2 * bc), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i)
        for_channels(bc, [&]<class V>(int64_t o) {
          weight_tile<T, V>(w + i * 9 * p.out_c + o0 + o, p.out_c, true, u + i * bc + o, a_stride);
        });
    });
  }
}

template <class T>
void run(const Parallel& par, const Problem& p, const float* in, const float* w, const float* bias,
         float* out, bool accumulate, float* ws) {
  constexpr int A = T::alpha, A2 = A * A, M = T::m;
  float* u = ws;                          // [A2][block * in_c]
  float* v = u + A2 * p.block * p.in_c;   // [A2][chunk][in_c]
  float* prod = v + A2 * p.chunk * p.in_c;  // [A2][chunk][bc]
  const bool one_block = p.block >= p.out_c;
  if (one_block) transform_weights<T>(par, p, w, 0, p.out_c, u);
  const int64_t per_image = p.tiles_h * p.tiles_w;
  auto tile_origin = [&](int64_t t, int64_t* n, int64_t* ty, int64_t* tx) {
    *n = t / per_image;
    *ty = (t % per_image) / p.tiles_w;
    *tx = t % p.tiles_w;
  };
  for (int64_t t0 = 0; t0 < p.tiles; t0 += p.chunk) {
    const int64_t tc = std::min(p.chunk, p.tiles - t0);
    const int64_t v_stride = p.chunk * p.in_c;
    par.for_each(tc, min_chunk_for(A2 * p.in_c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t n, ty, tx;
        tile_origin(t0 + r, &n, &ty, &tx);
        const float* img = in + n * p.in_h * p.in_w * p.in_c;
        const int64_t iy0 = ty * M - p.pad_h, ix0 = tx * M - p.pad_w;
        for_channels(p.in_c, [&]<class V>(int64_t c) {
          input_tile<T, V>(p, img, iy0, ix0, c, v + r * p.in_c, v_stride);
        });
      }
    });
    for (int64_t o0 = 0; o0 < p.out_c; o0 += p.block) {
      const int64_t bc = std::min(p.block, p.out_c - o0);
      if (!one_block) transform_weights<T>(par, p, w, o0, bc, u);
      const int64_t m_stride = p.chunk * bc;
      par.for_each(A2, 1, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a)
          gemm(Parallel{}, false, !p.backward, tc, bc, p.in_c, 1.0f, v + a * v_stride, p.in_c,
               u + a * p.block * p.in_c, p.backward ? bc : p.in_c, 0.0f, prod + a * m_stride, bc);
      });
      par.for_each(tc, min_chunk_for(A2 * bc), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          int64_t n, ty, tx;
          tile_origin(t0 + r, &n, &ty, &tx);
          float* img = out + n * p.out_h * p.out_w * p.out_c;
          for_channels(bc, [&]<class V>(int64_t c) {
            output_tile<T, V>(p, prod + r * bc + c, m_stride, bias, img,
                              ty * M, tx * M, o0 + c, accumulate);
          });
        }
      });
    }
  }
}

void run_problem(const Parallel& par, const Problem& p, const float* in, const float* w,
                 const float* bias, float* out, bool accumulate, void* workspace, size_t bytes) {
  ET_CHECK(bytes >= static_cast<size_t>(workspace_floats(p)) * sizeof(float));
  float* ws = static_cast<float*>(workspace);
  if (p.m == 4) run<F4>(par, p, in, w, bias, out, accumulate, ws);
  else run<F2>(par, p, in, w, bias, out, accumulate, ws);
}

std::atomic<WinogradPolicy> g_policy{WinogradPolicy::kAuto};

}  // namespace

// ---------------------------------------------------------------------------------------------

int winograd_tile(const ConvGeometry& g) {
  const WinogradPolicy policy = g_policy.load(std::memory_order_relaxed);
  if (policy == WinogradPolicy::kOff) return 0;
  if (g.groups != 1 || g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1) return 0;
  if (policy == WinogradPolicy::kF2) return 2;
  if (policy == WinogradPolicy::kF4) return 4;
  // Tiny images: most of a tile would be padding, and the GEMMs too small to run well.
  if (std::min(g.out_h, g.out_w) < 4) return 0;
  return 4;
}

void set_winograd_policy(WinogradPolicy policy) { g_policy.store(policy, std::memory_order_relaxed); }

size_t winograd_forward_workspace_bytes(const ConvGeometry& g, int m) {
  return static_cast<size_t>(workspace_floats(make_problem(g, m, false))) * sizeof(float);
}

size_t winograd_backward_data_workspace_bytes(const ConvGeometry& g, int m) {
  return static_cast<size_t>(workspace_floats(make_problem(g, m, true))) * sizeof(float);
}

void winograd_forward(const Parallel& par, const ConvGeometry& g, int m, const float* x,
                      const float* w, const float* b, float* y, void* workspace,
                      size_t workspace_bytes) {
  run_problem(par, make_problem(g, m, false), x, w, b, y, false, workspace, workspace_bytes);
}

void winograd_backward_data(const Parallel& par, const ConvGeometry& g, int m, const float* dy,
                            const float* w, float* dx, bool accumulate, void* workspace,
                            size_t workspace_bytes) {
  run_problem(par, make_problem(g, m, true), dy, w, nullptr, dx, accumulate, workspace,
              workspace_bytes);
}

}  // namespace edgetrain
