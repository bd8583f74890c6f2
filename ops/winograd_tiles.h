// Winograd tiles shared by the conv kernels (ops/conv2d_winograd.cc forward and backward data,
// ops/conv2d_winograd_weight.cc backward weight): the transform matrices of F(2x2, 3x3) and
// F(4x4, 3x3) and of their weight-gradient twins F(3x3, 2x2) and F(3x3, 4x4), written once for
// a lane vector of 16 channels and for one float, and the input-patch transform both share.
// Internal to ops/: not part of the library's interface.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ops/conv2d.h"
#include "ops/simd.h"

namespace edgetrain::winograd {

// Every Winograd direction keeps its workspace within max(kMinWorkspaceFloats, 2 x the im2col
// workspace this conv would otherwise get, ops/conv2d_im2col.h), so that Winograd never moves a
// memory plan by much (measured: with the transformed weights of whole layers, ResNet-18
// 32x32's arena grew 3.6 -> 6.1 MiB), or within the tests' budget
// (set_winograd_budget_for_testing). Defined in ops/conv2d_winograd.cc.
constexpr int64_t kMinWorkspaceFloats = int64_t{1} << 18;
int64_t workspace_budget_floats(const ConvGeometry& g);

// Tile transforms, written once for a lane vector (16 channels) and for one float (channel
// counts that are not a multiple of 16). GCC vector extensions: V * float broadcasts.

using Vec = simd::V16;
using simd::kLanes;
using simd::load;
using simd::store;

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
  // The weight gradient's F(3, 2): the 2 dy values of a tile row are the filter, 3 outputs.
  // B^T is shared, so G' carries the scaling of each point's row of G and column of A^T (here
  // the infinity column's -1): G' = diag(1, 1/2, 1/2, -1) E_2, A'^T = E_3^T (E_k[j] = p_j^0..k-1,
  // [0 .. 0 1] at infinity).
  template <class V> static void dy(const V* f, V* u) {
    u[0] = f[0];
    u[1] = 0.5f * (f[0] + f[1]);
    u[2] = 0.5f * (f[0] - f[1]);
    u[3] = -f[1];
  }
  template <class V> static void dw(const V* s, V* o) {
    o[0] = s[0] + s[1] + s[2];
    o[1] = s[1] - s[2];
    o[2] = s[1] + s[2] + s[3];
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
  // The weight gradient's F(3, 4): the 4 dy values of a tile row are the filter, 3 outputs.
  // Same points and row scaling as G, so B^T is shared (the x patches transform as in forward):
  // G' = [    1      0     0     0]   A'^T = [1  1 1   1  1 0]
  //      [ -1/3    1/3  -1/3   1/3]          [0 -1 1 1/2 -2 0]
  //      [  1/3    1/3   1/3   1/3]          [0  1 1 1/4  4 1]
  //      [-16/15 -8/15 -4/15 -2/15]
  //      [ 1/15  -2/15  4/15 -8/15]
  //      [    0      0     0     1]
  template <class V> static void dy(const V* f, V* u) {
    const V e = f[0] + f[2], o = f[1] + f[3];
    u[0] = f[0];
    u[1] = (1.0f / 3) * (o - e);
    u[2] = (1.0f / 3) * (o + e);
    u[3] = (-2.0f / 15) * (8.0f * f[0] + 4.0f * f[1] + 2.0f * f[2] + f[3]);
    u[4] = (1.0f / 15) * (f[0] - 2.0f * f[1] + 4.0f * f[2] - 8.0f * f[3]);
    u[5] = f[3];
  }
  template <class V> static void dw(const V* s, V* o) {
    const V a = s[2] + s[1], b = s[2] - s[1];
    o[0] = s[0] + a + s[3] + s[4];
    o[1] = b + 0.5f * s[3] - 2.0f * s[4];
    o[2] = a + 0.25f * s[3] + 4.0f * s[4] + s[5];
  }
};

// Runs fn.template operator()<V>(offset) over [0, count) in vectors of 16, then single floats.
template <class Fn>
inline void for_channels(int64_t count, Fn&& fn) {
  int64_t c = 0;
  for (; c + kLanes <= count; c += kLanes) fn.template operator()<Vec>(c);
  for (; c < count; ++c) fn.template operator()<float>(c);
}

// ---------------------------------------------------------------------------------------------
// Transforms of one tile, on one vector (or one float) of channels.

// v[a * a_stride] = (B^T d B)[a] for the patch whose top-left input pixel is (iy0, ix0) of
// image img ([in_h][in_w][channels]), channel offset c; pixels outside the image (padding) read
// as zero.
template <class T, class V>
inline void input_tile(int64_t in_h, int64_t in_w, int64_t channels, const float* img, int64_t iy0,
                       int64_t ix0, int64_t c, float* v, int64_t a_stride) {
  constexpr int A = T::alpha;
  const int i0 = static_cast<int>(std::clamp<int64_t>(-iy0, 0, A));
  const int i1 = static_cast<int>(std::clamp<int64_t>(in_h - iy0, i0, A));
  const int j0 = static_cast<int>(std::clamp<int64_t>(-ix0, 0, A));
  const int j1 = static_cast<int>(std::clamp<int64_t>(in_w - ix0, j0, A));
  V tmp[A][A];  // tmp = B^T d, one column at a time
  for (int j = 0; j < A; ++j) {
    V col[A];
    const bool inside = j >= j0 && j < j1;
    for (int i = 0; i < A; ++i)
      col[i] = (inside && i >= i0 && i < i1)
                   ? load<V>(img + ((iy0 + i) * in_w + ix0 + j) * channels + c)
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

// The products of every direction: simd::product_block (ops/simd.h).
using simd::product_block;

}  // namespace edgetrain::winograd
