// Depthwise convolution kernels (see the header).
#include "ops/conv2d_depthwise.h"

#include <algorithm>

#include "ops/simd.h"

namespace edgetrain {

namespace {

using simd::for_slices;
using simd::load;
using simd::store;
using simd::V16;
using simd::V8;

// Output columns [lo, hi) whose taps all lie inside the input (no padding).
inline void interior_columns(int64_t out_w, int64_t in_w, int64_t kw, int64_t sw, int64_t pw, int64_t* lo,
                             int64_t* hi) {
  *lo = std::min<int64_t>(out_w, (pw + sw - 1) / sw);
  const int64_t last = in_w - kw + pw;  // ox * sw <= last
  *hi = last < 0 ? *lo : std::clamp<int64_t>(last / sw + 1, *lo, out_w);
}

// The taps some output of the correlation geometry g reads, [ky0, ky1) x [kx0, kx1) (a 1x1 map
// padded by 1: only the centre).
void used_taps(const ConvGeometry& g, int64_t* ky0, int64_t* ky1, int64_t* kx0, int64_t* kx1) {
  *ky0 = std::clamp<int64_t>(g.ph - (g.out_h - 1) * g.sh, 0, g.kh);
  *ky1 = std::clamp<int64_t>(g.h + g.ph, *ky0, g.kh);
  *kx0 = std::clamp<int64_t>(g.pw - (g.out_w - 1) * g.sw, 0, g.kw);
  *kx1 = std::clamp<int64_t>(g.w + g.pw, *kx0, g.kw);
}
int64_t used_tap_count(const ConvGeometry& g) {
  int64_t ky0, ky1, kx0, kx1;
  used_taps(g, &ky0, &ky1, &kx0, &kx1);
  return std::max<int64_t>(1, (ky1 - ky0) * (kx1 - kx0));
}

// transpose_weights for channels [c0, c1) only, every tap.
void transpose_weights_channels(const ConvGeometry& g, const float* w, float* wt, bool rotate, int64_t c0, int64_t c1) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t t = 0; t < taps; ++t) wt[(rotate ? taps - 1 - t : t) * g.c + c] = w[c * taps + t];
}

// OHWI [C][kh][kw][1] -> [tap][C]; rotated: tap (ky, kx) takes w's (kh-1-ky, kw-1-kx). With
// used_only, only the taps correlation geometry g reads (the per-pixel path reads no others).
void transpose_weights(const ConvGeometry& g, const float* w, float* wt, bool rotate, bool used_only) {
  const int64_t taps = g.kh * g.kw;
  int64_t ky0 = 0, ky1 = g.kh, kx0 = 0, kx1 = g.kw;
  if (used_only) used_taps(g, &ky0, &ky1, &kx0, &kx1);
  if (ky0 == 0 && ky1 == g.kh && kx0 == 0 && kx1 == g.kw) return transpose_weights_channels(g, w, wt, rotate, 0, g.c);
  for (int64_t ky = ky0; ky < ky1; ++ky)
    for (int64_t kx = kx0; kx < kx1; ++kx) {
      const int64_t u = ky * g.kw + kx, t = rotate ? taps - 1 - u : u;
      for (int64_t c = 0; c < g.c; ++c) wt[u * g.c + c] = w[c * taps + t];
    }
}


// The correlation at the heart of forward and stride-1 backward data, on a geometry whose input
// is `in` [n][h][w][C] and output `out` [n][out_h][out_w][C], weights [tap][C]: output rows
// [r0, r1) (r = n * out_h + oy) for the channel slice at c. acc starts from the bias, or from out
// when accumulating. Any kernel size: each pixel's valid taps, weights from L1.
template <class V>
void correlate_rows_any(const ConvGeometry& g, const float* in, const float* wt, const float* bias, bool accumulate,
                        int64_t r0, int64_t r1, int64_t c, float* out) {
  const int64_t C = g.c, kw = g.kw;
  const V start = bias ? load<V>(bias + c) : V{};
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = in + n * g.h * g.w * C;
    float* row = out + r * g.out_w * C;
    int64_t ky0, ky1;
    valid_taps(oy, g.sh, g.ph, g.kh, g.h, &ky0, &ky1);
    const int64_t iy0 = oy * g.sh - g.ph;
    for (int64_t ox = 0; ox < g.out_w; ++ox) {
      int64_t kx0, kx1;
      valid_taps(ox, g.sw, g.pw, kw, g.w, &kx0, &kx1);
      const int64_t ix0 = ox * g.sw - g.pw;
      V acc = accumulate ? load<V>(row + ox * C + c) : start;
      for (int64_t ky = ky0; ky < ky1; ++ky)
        for (int64_t kx = kx0; kx < kx1; ++kx)
          acc += load<V>(img + ((iy0 + ky) * g.w + ix0 + kx) * C + c) * load<V>(wt + (ky * kw + kx) * C + c);
      store(row + ox * C + c, acc);
    }
  }
}

// f.operator()<KY0, KY1>() for a row of valid kernel rows [ky0, ky1) of a 3x3 kernel.
template <class F>
__attribute__((always_inline)) inline void with_rows(int64_t ky0, int64_t ky1, F&& f) {
  switch (ky0 * 4 + ky1) {
    case 3: f.template operator()<0, 3>(); break;
    case 7: f.template operator()<1, 3>(); break;
    case 2: f.template operator()<0, 2>(); break;
    case 6: f.template operator()<1, 2>(); break;
    case 1: f.template operator()<0, 1>(); break;
    case 11: f.template operator()<2, 3>(); break;
    default: f.template operator()<0, 0>(); break;  // no valid row: bias (or out) only
  }
}

// The same for 3x3 kernels and NS adjacent slices at once: their nine weights stay in registers
// (constant indices once the tap loops unroll), weights loaded once for all rows (small maps
// have a pixel or two per row). Two 16-channel slices per pass read two adjacent cache lines of
// each input pixel instead of one, and a row of the input is walked half as often.
// Output columns [x0, x1) of each row only (the column tiles of correlate_tiled).
template <class V, int NS>
void correlate_rows_3x3(const ConvGeometry& g, const float* in, const float* wt, const float* bias, bool accumulate,
                        int64_t r0, int64_t r1, int64_t c, float* out, int64_t x0, int64_t x1) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  const int64_t C = g.c;
  V w[NS][9], start[NS];
  for (int s = 0; s < NS; ++s) {
    start[s] = bias ? load<V>(bias + c + s * kL) : V{};
    for (int t = 0; t < 9; ++t) w[s][t] = load<V>(wt + t * C + c + s * kL);
  }
  int64_t col_lo = 0, col_hi = 0;
  interior_columns(g.out_w, g.w, 3, g.sw, g.pw, &col_lo, &col_hi);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = in + n * g.h * g.w * C + c;
    float* row = out + r * g.out_w * C + c;
    const int64_t iy0 = oy * g.sh - g.ph;
    int64_t ky0, ky1;
    valid_taps(oy, g.sh, g.ph, 3, g.h, &ky0, &ky1);
    // The row's valid kernel rows [KY0, KY1) as constants: rows next to the padding run the
    // interior loop too, only the columns next to it take `border`.
    with_rows(ky0, ky1, [&]<int KY0, int KY1>() __attribute__((always_inline)) {
      // Pixels next to the padding (every pixel of a 1- or 2-pixel map): the weights still in
      // registers, the taps in the padding skipped.
      auto border = [&](int64_t ox) {
        int64_t kx0, kx1;
        valid_taps(ox, g.sw, g.pw, 3, g.w, &kx0, &kx1);
        const int64_t base = (iy0 * g.w + ox * g.sw - g.pw) * C;
        float* o = row + ox * C;
        V acc[NS];
        for (int s = 0; s < NS; ++s) acc[s] = accumulate ? load<V>(o + s * kL) : start[s];
#pragma GCC unroll 3
        for (int ky = KY0; ky < KY1; ++ky)
#pragma GCC unroll 3
          for (int kx = 0; kx < 3; ++kx)
            if (kx >= kx0 && kx < kx1)
              for (int s = 0; s < NS; ++s) acc[s] += load<V>(img + (base + (ky * g.w + kx) * C + s * kL)) * w[s][ky * 3 + kx];
        for (int s = 0; s < NS; ++s) store(o + s * kL, acc[s]);
      };
      const int64_t lo = std::clamp(col_lo, x0, x1), hi = std::clamp(col_hi, lo, x1);
      for (int64_t ox = x0; ox < lo; ++ox) border(ox);
      const int64_t step = g.sw * C;
      int64_t off = (iy0 * g.w + lo * g.sw - g.pw) * C;
      for (int64_t ox = lo; ox < hi; ++ox, off += step) {
        float* o = row + ox * C;
        V acc[NS];
        for (int s = 0; s < NS; ++s) acc[s] = accumulate ? load<V>(o + s * kL) : start[s];
        for (int ky = KY0; ky < KY1; ++ky)
          for (int kx = 0; kx < 3; ++kx)
            for (int s = 0; s < NS; ++s)
              acc[s] += load<V>(img + (off + (ky * g.w + kx) * C + s * kL)) * w[s][ky * 3 + kx];
        for (int s = 0; s < NS; ++s) store(o + s * kL, acc[s]);
      }
      for (int64_t ox = hi; ox < x1; ++ox) border(ox);
    });
  }
}

// f.operator()<V, NS>(c) over [0, channels): pairs of 16-channel slices, then for_slices' 16,
// 8 and single channels.
template <class F>
inline void for_slice_pairs(int64_t channels, F&& f) {
  int64_t c = 0;
  for (; c + 32 <= channels; c += 32) f.template operator()<V16, 2>(c);
  for_slices(channels - c, [&]<class V>(int64_t rest) { f.template operator()<V, 1>(c + rest); });
}

// Rows a thread computes slice by slice before the next group: ~8K floats of output, so that the
// group stays in L1/L2 across its slices and for the epilogue.
int64_t group_rows_for(int64_t floats_per_row) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, floats_per_row)); }

// Small maps (a few pixels per row, nearly all next to the padding): per pixel and valid tap,
// one multiply-add over all channels, contiguous. Measured on MobileNetV2's 2x2 and 1x1 maps:
// ~2x faster than slices, whose per-slice setup then outweighs a pixel's work.
constexpr int64_t kSmallMapWidth = 4;
bool small_map(int64_t out_w) { return out_w <= kSmallMapWidth; }
// ... except 3x3 kernels on maps wider than one pixel: their slices keep the nine weights (or
// sums) in registers for the border pixels too, and a row group spans many images (measured on
// MobileNetV2's 2x2 map, 384 channels, batch 32: forward 23.9 -> 14.8 us on 1 thread).
bool pixel_path(const ConvGeometry& g) { return small_map(g.out_w) && !(g.kh == 3 && g.kw == 3 && g.out_w > 1); }

// Small maps (both sides up to kSmallMapWidth) with 3x3 kernels: a layer is a few microseconds,
// as much as the row chunks' set-up (a zero fill, a second parallel loop adding the chunks and
// transposing). Instead each thread owns units of 32 channels and sums every dy row for them in
// registers, then writes them to dw (OHWI) and db itself. Chunking by channels, each channel's
// sum runs over the rows in order: the same on any thread count.
constexpr int64_t kChannelUnit = 32;
bool weight_direct_3x3(const ConvGeometry& g) {
  return g.kh == 3 && g.kw == 3 && small_map(g.out_w) && small_map(g.out_h) && !pixel_path(g);
}
// The weight gradient takes the same path on maps up to 7x7 with at least 8 channel units (so
// that two threads share them evenly): MobileNetV2's dw960 7x7 and dw576 stride 2 (7x7 out)
// measured 87 -> 55 and 94 -> 68 us at 2 threads; dw144 8x8 (5 units) measured 44 -> 58 us.
bool weight_direct_3x3_any(const ConvGeometry& g) {
  return weight_direct_3x3(g) || (g.kh == 3 && g.kw == 3 && g.out_w <= 7 && g.out_h <= 7 && g.out_w > 1 &&
                                  g.c >= 8 * kChannelUnit);
}

inline void axpy(float* __restrict y, const float* __restrict a, const float* __restrict b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a[i] * b[i];
}

// Not inlined into correlate: inlined (GCC 12), the 1x1 map's forward measured 7.4 -> 9.6 us.
__attribute__((noinline)) void correlate_pixels(const Parallel& par, const ConvGeometry& g, const float* in, const float* wt,
                      const float* bias, bool accumulate, float* out, const ConvNormEpilogue* epilogue) {
  const int64_t C = g.c, rows = g.n * g.out_h;
  par.for_each(rows, min_chunk_for(g.out_w * C * used_tap_count(g)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.out_h, oy = r % g.out_h, iy0 = oy * g.sh - g.ph;
      const float* img = in + n * g.h * g.w * C;
      int64_t ky0, ky1;
      valid_taps(oy, g.sh, g.ph, g.kh, g.h, &ky0, &ky1);
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        float* yp = out + (r * g.out_w + ox) * C;
        if (!accumulate) {
          if (bias) std::copy(bias, bias + C, yp);
          else std::fill(yp, yp + C, 0.0f);
        }
        int64_t kx0, kx1;
        valid_taps(ox, g.sw, g.pw, g.kw, g.w, &kx0, &kx1);
        const int64_t ix0 = ox * g.sw - g.pw;
        for (int64_t ky = ky0; ky < ky1; ++ky)
          for (int64_t kx = kx0; kx < kx1; ++kx)
            axpy(yp, img + ((iy0 + ky) * g.w + ix0 + kx) * C, wt + (ky * g.kw + kx) * C, C);
      }
      if (epilogue) epilogue->apply_rows(out + r * g.out_w * C, g.out_w, C);
    }
  });
}

// 3x3 kernels on maps up to 4x4 without an epilogue (MobileNetV2's 2x2 maps): a layer is a few
// microseconds, as much as transposing every weight before the parallel loop. Instead each thread
// owns units of 32 channels, transposes their weights and runs every row for them.
bool correlate_by_channels(const ConvGeometry& g, bool has_epilogue) { return !has_epilogue && weight_direct_3x3(g); }
void correlate_channels(const Parallel& par, const ConvGeometry& g, const float* in, const float* w, bool rotate,
                        float* wt, const float* bias, bool accumulate, float* out) {
  const int64_t C = g.c, rows = g.n * g.out_h, units = (C + kChannelUnit - 1) / kChannelUnit;
  par.for_each(units, min_chunk_for(rows * g.out_w * kChannelUnit * 9), [&](int64_t u0, int64_t u1) {
    const int64_t c0 = u0 * kChannelUnit, c1 = std::min(C, u1 * kChannelUnit);
    transpose_weights_channels(g, w, wt, rotate, c0, c1);
    for_slice_pairs(c1 - c0, [&]<class V, int NS>(int64_t c) {
      correlate_rows_3x3<V, NS>(g, in, wt, bias, accumulate, 0, rows, c0 + c, out, 0, g.out_w);
    });
  });
}

// 3x3 stride 2 with more channels than one pass of two slices takes each output row in tiles of
// kColumnTile pixels (backward data: 2 kColumnTile dx pixels), every slice of a tile before the
// next: a tile's input pixels, all their channels, stay in L1 while the slices read them, where
// whole rows slice by slice walk the 3 input rows (dw96 112x112: 129 KiB, past L1) once per pass.
// The sums run in the same order either way. Measured (1 thread, CPU time, shared host): dw96
// 112x112 forward 1.03-1.07x, dw576 14x14 backward data 1.04-1.06x, the others unchanged.
constexpr int64_t kColumnTile = 8;
// MobileNetV2's downsampling depthwise convs: 3x3, stride 2.
bool is_3x3_stride2(const ConvGeometry& g) { return g.kh == 3 && g.kw == 3 && g.sh == 2 && g.sw == 2; }
bool column_tiled(const ConvGeometry& g) { return is_3x3_stride2(g) && g.c > 32; }

// Channels innermost (3x3 kernels, more than 32 channels, a multiple of 16; the correlation
// below and the weight gradient's weight_by_pixel): each output row runs in blocks of
// kPixelBlock pixels, every 16-channel vector of a block before the next. Per 16-channel tile,
// the weights are kTapFloats floats ([tap][16]), the weight gradient's sums kTileFloats (nine
// taps, then db).
constexpr int64_t kPixelBlock = 4;
constexpr int64_t kTapFloats = 9 * 16;
constexpr int64_t kTileFloats = kTapFloats + 16;

// A row of out_w output pixels whose interior (all taps valid) is [lo, hi): border(ox) for the
// pixels next to the padding, block.template operator()<P>(ox) for the interior in blocks of
// P = kPixelBlock pixels, then one of 2, then single pixels.
template <class Block, class Border>
__attribute__((always_inline)) inline void for_pixel_blocks(int64_t out_w, int64_t lo, int64_t hi, Block&& block,
                                                            Border&& border) {
  for (int64_t ox = 0; ox < lo; ++ox) border(ox);
  int64_t ox = lo;
  for (; ox + kPixelBlock <= hi; ox += kPixelBlock) block.template operator()<kPixelBlock>(ox);
  if (ox + 2 <= hi) {
    block.template operator()<2>(ox);
    ox += 2;
  }
  for (; ox < hi; ++ox) block.template operator()<1>(ox);
  for (ox = hi; ox < out_w; ++ox) border(ox);
}

// The correlation of 3x3 kernels with more than 32 channels (a multiple of 16), stride 1, or
// stride 2 on rows of at least kPixelsStride2 outputs, channels innermost: each output row in
// blocks of kPixelBlock pixels, every 16-channel vector of a block before the next, so that the
// input and output are read and written in address order; the weights tile-major
// [C / 16][9][16] (pack_weight_tiles), from L1. A block's input columns are loaded once per kernel
// row and feed three taps. Each output's sum starts from the bias (or out) and adds the taps in
// the order of correlate_rows_3x3, so the results are the slices' to the bit. Measured (2
// threads, A/B interleaved, idle): forward / backward data dw144 56x56 1.18 / 1.20x, dw192 28x28
// 1.13 / 1.07x, dw384 14x14 1.07 / 1.06x, dw144 8x8 at batch 32 1.09 / 1.06x; blocks of 8
// pixels 0.94-0.98x of 4. Stride 2 measured 1.00x on session 13's Intel host (the column tiles
// keep a tile's pixels in L1 too) and, with prefetch_next_rows, 1.10x on dw96 112x112 on
// 2026-12-07's AMD EPYC host (one thread, CPU time, six alternating runs: 0.98-1.17x); dw576
// 14x14 (7 outputs a row) keeps the column tiles, whose small maps ran 0.87x by pixel.
constexpr int64_t kPixelsStride2 = 16;
bool correlate_by_pixel(const ConvGeometry& g) {
  const bool stride_ok = g.sh == g.sw && (g.sh == 1 || (g.sh == 2 && g.out_w >= kPixelsStride2));
  return g.kh == 3 && g.kw == 3 && stride_ok && g.c > 32 && g.c % 16 == 0 && !pixel_path(g);
}
// OHWI [C][3][3][1] -> [C / 16][tap][16] (rotated as transpose_weights).
void pack_weight_tiles(const ConvGeometry& g, const float* w, float* tiles, bool rotate) {
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t t = 0; t < 9; ++t) tiles[(c / 16) * kTapFloats + (rotate ? 8 - t : t) * 16 + c % 16] = w[c * 9 + t];
}

// Asks for the input rows the next output row reads and this one does not (rows 3 .. 2 + S of
// a block whose first input row is at in_at), the block's P * S pixel columns, one 64-byte line
// of each per call (called once per 16-channel vector): by the time the next output row starts,
// its new rows are in cache. The hardware prefetchers follow each row in address order but not
// the next row, 1-2 rows (tens of KiB) ahead. Measured on 2026-12-07's AMD EPYC host (one
// thread, CPU time, medians of 7, three alternating runs): forward dw144 56x56 3.47 -> 2.63 ms,
// backward data 3.42 -> 2.49 ms (it runs this correlation), the weight gradient's dw96 stride 2
// 112x112 4.43 -> 3.67 ms and dw144 3.36 -> 2.97 ms; dw576 14x14 and dw960 7x7 unchanged.
template <int S, int P>
__attribute__((always_inline)) inline void prefetch_next_rows(const float* in_at, int64_t C, int64_t row_stride) {
  const float* next = in_at + 3 * row_stride;
#pragma GCC unroll 2
  for (int r = 0; r < S; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < P * S; ++j) __builtin_prefetch(next + r * row_stride + j * C, /*rw=*/0, /*locality=*/3);
}

// P output pixels of a row at out_at (pixel stride C), their first input column at in_at (rows
// row_stride apart, stride S), valid kernel rows [KY0, KY1) and columns [kx0, kx1) (all three
// but next to the padding, where P is 1).
template <int KY0, int KY1, int P, int S>
__attribute__((always_inline)) inline void correlate_pixel_block(const float* in_at, const float* tiles,
                                                                 const float* bias, bool accumulate, int64_t C,
                                                                 int64_t row_stride, float* out_at, int64_t kx0,
                                                                 int64_t kx1) {
  constexpr int kCols = (P - 1) * S + 3;
  for (int64_t c = 0; c < C; c += 16, tiles += kTapFloats, in_at += 16, out_at += 16) {
    V16 acc[P];
    const V16 start = bias ? load<V16>(bias + c) : V16{};
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[p] = accumulate ? load<V16>(out_at + p * C) : start;
    if constexpr (P > 1) prefetch_next_rows<S, P>(in_at, C, row_stride);
#pragma GCC unroll 3
    for (int ky = KY0; ky < KY1; ++ky) {
      const float* in_row = in_at + ky * row_stride;
      if constexpr (P == 1) {
        for (int64_t kx = kx0; kx < kx1; ++kx)
          acc[0] += load<V16>(in_row + kx * C) * load<V16>(tiles + (ky * 3 + kx) * 16);
      } else {
        V16 v[kCols];
#pragma GCC unroll 16
        for (int j = 0; j < kCols; ++j) v[j] = load<V16>(in_row + j * C);
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx) {
          const V16 wv = load<V16>(tiles + (ky * 3 + kx) * 16);
#pragma GCC unroll 8
          for (int p = 0; p < P; ++p) acc[p] += v[p * S + kx] * wv;
        }
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) store(out_at + p * C, acc[p]);
  }
}

// Output rows [r0, r1) of correlate_by_pixel's shapes.
template <int S>
void correlate_rows_by_pixel_s(const ConvGeometry& g, const float* in, const float* tiles, const float* bias,
                               bool accumulate, int64_t r0, int64_t r1, float* out) {
  const int64_t C = g.c, row_stride = g.w * C;
  int64_t lo = 0, hi = 0;
  interior_columns(g.out_w, g.w, 3, S, g.pw, &lo, &hi);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = in + n * g.h * g.w * C;
    float* row = out + r * g.out_w * C;
    int64_t ky0, ky1;
    valid_taps(oy, S, g.ph, 3, g.h, &ky0, &ky1);
    const int64_t iy0 = oy * S - g.ph;
    auto in_at = [&](int64_t ox) { return img + (iy0 * g.w + ox * S - g.pw) * C; };
    with_rows(ky0, ky1, [&]<int KY0, int KY1>() __attribute__((always_inline)) {
      for_pixel_blocks(
          g.out_w, lo, hi,
          [&]<int P>(int64_t ox) __attribute__((always_inline)) {
            correlate_pixel_block<KY0, KY1, P, S>(in_at(ox), tiles, bias, accumulate, C, row_stride, row + ox * C, 0, 3);
          },
          [&](int64_t ox) {
            int64_t kx0, kx1;
            valid_taps(ox, S, g.pw, 3, g.w, &kx0, &kx1);
            correlate_pixel_block<KY0, KY1, 1, S>(in_at(ox), tiles, bias, accumulate, C, row_stride, row + ox * C, kx0,
                                                  kx1);
          });
    });
  }
}
void correlate_rows_by_pixel(const ConvGeometry& g, const float* in, const float* tiles, const float* bias,
                             bool accumulate, int64_t r0, int64_t r1, float* out) {
  if (g.sw == 2) correlate_rows_by_pixel_s<2>(g, in, tiles, bias, accumulate, r0, r1, out);
  else correlate_rows_by_pixel_s<1>(g, in, tiles, bias, accumulate, r0, r1, out);
}

// The weights as correlate reads them: tile-major for correlate_by_pixel, else [tap][C].
void prepare_weights(const ConvGeometry& g, const float* w, float* wt, bool rotate) {
  if (correlate_by_pixel(g)) pack_weight_tiles(g, w, wt, rotate);
  else transpose_weights(g, w, wt, rotate, pixel_path(g));
}

// Weights as the kernels read them ([tap][C] or tile-major), prepared by each thread for itself
// on its stack where they fit in kThreadWeightFloats (every MobileNetV2 depthwise layer up to
// width 1.0: 9 x 960 floats), else once in the shared workspace. Prepared once by the caller, the
// other thread read every line of them from the caller's core: MobileNetV2's dw576 stride-2
// forward at batch 1 ran 14.5 us on two threads against 12.4 on one (7.6 with the weights
// prepared per thread; backward data 15.5 -> 9.4 us).
constexpr int64_t kThreadWeightFloats = 9 * 1024;
bool thread_weights(const ConvGeometry& g) { return g.kh * g.kw * g.c <= kThreadWeightFloats; }

// Runs correlate_rows over every output row and channel slice, groups of rows in parallel; the
// epilogue normalises each finished group while it is in cache. w is OHWI, rotated for backward
// data; wt_shared holds the prepared weights where they do not fit on a thread's stack.
void correlate(const Parallel& par, const ConvGeometry& g, const float* in, const float* w, bool rotate,
               float* wt_shared, const float* bias, bool accumulate, float* out, const ConvNormEpilogue* epilogue) {
  const bool per_thread = thread_weights(g) && !pixel_path(g);
  if (!per_thread) prepare_weights(g, w, wt_shared, rotate);
  if (pixel_path(g)) return correlate_pixels(par, g, in, wt_shared, bias, accumulate, out, epilogue);
  const int64_t rows = g.n * g.out_h, C = g.c, row_floats = g.out_w * C;
  const int64_t group = group_rows_for(row_floats);
  const bool k3 = g.kh == 3 && g.kw == 3, tiled = column_tiled(g), by_pixel = correlate_by_pixel(g);
  par.for_each(rows, min_chunk_for(row_floats * g.kh * g.kw), [&](int64_t r0, int64_t r1) {
    alignas(64) float wt_thread[kThreadWeightFloats];
    const float* wt = wt_shared;
    if (per_thread) {
      prepare_weights(g, w, wt_thread, rotate);
      wt = wt_thread;
    }
    for (int64_t g0 = r0; g0 < r1; g0 += group) {
      const int64_t g1 = std::min(r1, g0 + group);
      if (by_pixel) correlate_rows_by_pixel(g, in, wt, bias, accumulate, g0, g1, out);
      else if (tiled)
        for (int64_t r = g0; r < g1; ++r)
          for (int64_t x0 = 0; x0 < g.out_w; x0 += kColumnTile)
            for_slice_pairs(C, [&]<class V, int NS>(int64_t c) {
              correlate_rows_3x3<V, NS>(g, in, wt, bias, accumulate, r, r + 1, c, out, x0,
                                        std::min(g.out_w, x0 + kColumnTile));
            });
      else if (k3)
        for_slice_pairs(C, [&]<class V, int NS>(int64_t c) {
          correlate_rows_3x3<V, NS>(g, in, wt, bias, accumulate, g0, g1, c, out, 0, g.out_w);
        });
      else
        for_slices(C, [&]<class V>(int64_t c) { correlate_rows_any<V>(g, in, wt, bias, accumulate, g0, g1, c, out); });
      if (epilogue) epilogue->apply_rows(out + g0 * row_floats, (g1 - g0) * g.out_w, C);
    }
  });
}

// Backward data for strides > 1: each dx pixel gathers the dy pixels whose taps read it. Along
// an axis, the taps that reach dx position i are k = (i + pad) mod stride, then every stride-th
// one, reading dy at (i + pad - k) / stride, one less per step.
template <class V>
inline void gather_row(const ConvGeometry& g, const float* dy, const float* wt, bool accumulate, int64_t n,
                       int64_t iy, int64_t c, float* dx) {
  const int64_t C = g.c;
  const float* dy_img = dy + n * g.out_h * g.out_w * C;
  float* row = dx + (n * g.h + iy) * g.w * C;
  const int64_t ky_first = (iy + g.ph) % g.sh, ty0 = (iy + g.ph - ky_first) / g.sh;
  for (int64_t ix = 0; ix < g.w; ++ix) {
    const int64_t kx_first = (ix + g.pw) % g.sw, ux0 = (ix + g.pw - kx_first) / g.sw;
    V acc = accumulate ? load<V>(row + ix * C + c) : V{};
    for (int64_t ky = ky_first, ty = ty0; ky < g.kh; ky += g.sh, --ty) {
      if (ty < 0) break;
      if (ty >= g.out_h) continue;
      const float* dy_row = dy_img + ty * g.out_w * C;
      for (int64_t kx = kx_first, ux = ux0; kx < g.kw; kx += g.sw, --ux) {
        if (ux < 0) break;
        if (ux >= g.out_w) continue;
        acc += load<V>(dy_row + ux * C + c) * load<V>(wt + (ky * g.kw + kx) * C + c);
      }
    }
    store(row + ix * C + c, acc);
  }
}

// A finished output vector: streamed past the cache (kStream, see use_streaming) or stored.
template <class V, bool kStream>
inline void put(float* p, const V& v) {
  if constexpr (kStream) simd::store_stream(p, v);
  else store(p, v);
}

// Outputs above this many bytes are written with non-temporal stores: the stride-2 backward
// data's dx is 4x its dy (38 MiB on MobileNetV2's first downsampling at 224x224 batch 8), and an
// ordinary store first reads each line it writes. Only whole aligned 16-channel vectors that
// nothing reads back: no accumulation, C a multiple of 16, out 64-byte aligned.
constexpr int64_t kStreamBytes = int64_t{8} << 20;
bool streaming_output(int64_t floats, int64_t C, bool accumulate) {
  return simd::kCanStream && !accumulate && C % 16 == 0 && floats * static_cast<int64_t>(sizeof(float)) > kStreamBytes;
}
bool use_streaming(const float* out, int64_t floats, int64_t C, bool accumulate) {
  return streaming_output(floats, C, accumulate) && reinterpret_cast<uintptr_t>(out) % 64 == 0;
}

// The same for 3x3 stride 2 (MobileNetV2's downsampling blocks), NS adjacent slices at once. A dx
// row is read by kernel rows ky with (iy + pad - ky) even: {0, 2} or {1}; a dx column by kernel
// columns {0, 2} or {1} likewise, alternating along the row. So each dx pixel sums 1, 2 or 4
// products, chosen per row and per column parity without testing every tap; with padding 1 the
// row runs in pairs of pixels (dy column j gives 2j its column-1 product and 2j + 1 its column-2
// one, dy column j + 1 gives 2j + 1 its column-0 one), the rest pixel by pixel.
template <class V, int NS, bool kStream>
inline void gather_rows_3x3_s2(const ConvGeometry& g, const float* dy, const float* wt, bool accumulate, int64_t r0,
                               int64_t r1, int64_t c, float* dx, int64_t x0, int64_t x1) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  const int64_t C = g.c;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.h, iy = r % g.h;
    const float* dy_img = dy + n * g.out_h * g.out_w * C + c;
    float* row = dx + r * g.w * C + c;
    // The dy rows this dx row reads (null: outside dy) for kernel row py (0 or 1) and, when py
    // is 0, kernel row 2.
    const int py = static_cast<int>((iy + g.ph) & 1);
    auto dy_row = [&](int ky) -> const float* {
      const int64_t t = iy + g.ph - ky;
      return t >= 0 && (t >> 1) < g.out_h ? dy_img + (t >> 1) * g.out_w * C : nullptr;
    };
    // NR of them, src[i] read with kernel row ky[i], their weights in registers.
    auto run = [&]<int NR>(const float* const* src, const int* ky) {
      V wk[NR > 0 ? NR : 1][NS][3];
      for (int i = 0; i < NR; ++i)
        for (int s = 0; s < NS; ++s)
          for (int j = 0; j < 3; ++j) wk[i][s][j] = load<V>(wt + (ky[i] * 3 + j) * C + c + s * kL);
      auto pixel = [&](int64_t ix) {
        float* o = row + ix * C;
        V acc[NS];
        for (int s = 0; s < NS; ++s) acc[s] = accumulate ? load<V>(o + s * kL) : V{};
        const int64_t q = ix + g.pw;
        if ((q & 1) == 0) {  // kernel columns 0 (dy column q/2) and 2 (q/2 - 1)
          const int64_t u0 = q >> 1, u2 = u0 - 1;
          const bool ok0 = u0 < g.out_w, ok2 = u2 >= 0 && u2 < g.out_w;
          for (int i = 0; i < NR; ++i)
            for (int s = 0; s < NS; ++s) {
              if (ok0) acc[s] += load<V>(src[i] + u0 * C + s * kL) * wk[i][s][0];
              if (ok2) acc[s] += load<V>(src[i] + u2 * C + s * kL) * wk[i][s][2];
            }
        } else {  // kernel column 1 (dy column (q - 1)/2)
          const int64_t u1 = (q - 1) >> 1;
          if (u1 >= 0 && u1 < g.out_w)
            for (int i = 0; i < NR; ++i)
              for (int s = 0; s < NS; ++s) acc[s] += load<V>(src[i] + u1 * C + s * kL) * wk[i][s][1];
        }
        for (int s = 0; s < NS; ++s) put<V, kStream>(o + s * kL, acc[s]);
      };
      int64_t ix = x0;
      if (g.pw == 1)
        for (int64_t j = x0 / 2; 2 * j + 1 < x1 && j + 1 < g.out_w; ++j, ix += 2) {
          float* o = row + 2 * j * C;
          for (int s = 0; s < NS; ++s) {
            V e = accumulate ? load<V>(o + s * kL) : V{};
            V f = accumulate ? load<V>(o + C + s * kL) : V{};
            for (int i = 0; i < NR; ++i) {
              const V d0 = load<V>(src[i] + j * C + s * kL), d1 = load<V>(src[i] + (j + 1) * C + s * kL);
              e += d0 * wk[i][s][1];
              f += d1 * wk[i][s][0] + d0 * wk[i][s][2];
            }
            put<V, kStream>(o + s * kL, e);
            put<V, kStream>(o + C + s * kL, f);
          }
        }
      for (; ix < x1; ++ix) pixel(ix);
    };
    const float* src[2];
    int ky[2], nr = 0;
    if (const float* a = dy_row(py)) src[nr] = a, ky[nr++] = py;
    if (py == 0)
      if (const float* b = dy_row(2)) src[nr] = b, ky[nr++] = 2;
    if (nr == 2) run.template operator()<2>(src, ky);
    else if (nr == 1) run.template operator()<1>(src, ky);
    else run.template operator()<0>(src, ky);
  }
}

// The weight gradient of column_tiled shapes likewise: each group of rows in tiles of
// kWeightColumnTile outputs, every slice of a tile before the next (the slices' sums wait in the
// workspace, as between groups). Measured on dw96 112x112 (1 thread, CPU time, shared host):
// 1.03-1.11x in three runs; stride 1 measured 0.93-1.05x (dw144 56x56 slower) and keeps rows.
constexpr int64_t kWeightColumnTile = 8;
// Backward weight: chunks of dy rows, fixed by the shape alone.
constexpr int64_t kWeightChunks = 8;
// ... each with at least ~16K multiply-adds' worth of dy (small maps: fewer chunks to add up).
int64_t weight_chunks(const ConvGeometry& g) {
  if (pixel_path(g) || weight_direct_3x3_any(g)) return 1;
  const int64_t by_work = g.n * g.out_h * g.out_w * g.c / 16384;
  return std::clamp<int64_t>(std::min(kWeightChunks, by_work), 1, std::max<int64_t>(1, g.n * g.out_h));
}
// Each chunk's sums: [tap][C] for dw, then one [C] row for db.
int64_t chunk_floats(const ConvGeometry& g) { return (g.kh * g.kw + 1) * g.c; }

// Adds the sums over dy rows [r0, r1) for the slice at c to part ([tap][C], then db's [C]),
// which the first group of a chunk starts from zero. Any kernel size: each pixel's valid taps,
// summed in part (L1); 3x3 kernels take weight_sums_3x3.
template <class V>
void weight_sums_any(const ConvGeometry& g, const float* dy, const float* x, int64_t r0, int64_t r1, int64_t c,
                     float* part, bool first) {
  const int64_t C = g.c, kw = g.kw, taps = g.kh * g.kw;
  if (first)
    for (int64_t t = 0; t <= taps; ++t) store(part + t * C + c, V{});
  V db = V{};
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = x + n * g.h * g.w * C;
    const float* dy_row = dy + r * g.out_w * C;
    int64_t ky0, ky1;
    valid_taps(oy, g.sh, g.ph, g.kh, g.h, &ky0, &ky1);
    const int64_t iy0 = oy * g.sh - g.ph;
    for (int64_t ox = 0; ox < g.out_w; ++ox) {
      const V d = load<V>(dy_row + ox * C + c);
      db += d;
      int64_t kx0, kx1;
      valid_taps(ox, g.sw, g.pw, kw, g.w, &kx0, &kx1);
      const int64_t ix0 = ox * g.sw - g.pw;
      for (int64_t ky = ky0; ky < ky1; ++ky)
        for (int64_t kx = kx0; kx < kx1; ++kx) {
          float* s = part + (ky * kw + kx) * C + c;
          store(s, load<V>(s) + load<V>(img + ((iy0 + ky) * g.w + ix0 + kx) * C + c) * d);
        }
    }
  }
  store(part + taps * C + c, load<V>(part + taps * C + c) + db);
}

// The same for 3x3 kernels and NS adjacent slices: the nine sums of each slice stay in
// registers for every pixel, those next to the padding included (taps in the padding skipped).
// Adds dy rows [r0, r1) to sum and db.
template <class V, int NS>
__attribute__((always_inline)) inline void sum_rows_3x3(const ConvGeometry& g, const float* dy, const float* x,
                                                        int64_t r0, int64_t r1, int64_t c, V (&sum)[NS][9],
                                                        V (&db)[NS], int64_t x0, int64_t x1) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  const int64_t C = g.c;
  int64_t col_lo = 0, col_hi = 0;
  interior_columns(g.out_w, g.w, 3, g.sw, g.pw, &col_lo, &col_hi);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = x + n * g.h * g.w * C + c;
    const float* dy_row = dy + r * g.out_w * C + c;
    int64_t ky0, ky1;
    valid_taps(oy, g.sh, g.ph, 3, g.h, &ky0, &ky1);
    const int64_t iy0 = oy * g.sh - g.ph;
    with_rows(ky0, ky1, [&]<int KY0, int KY1>() __attribute__((always_inline)) {
      auto border = [&](int64_t ox) {
        int64_t kx0, kx1;
        valid_taps(ox, g.sw, g.pw, 3, g.w, &kx0, &kx1);
        const int64_t base = (iy0 * g.w + ox * g.sw - g.pw) * C;
        V d[NS];
        for (int s = 0; s < NS; ++s) d[s] = load<V>(dy_row + ox * C + s * kL), db[s] += d[s];
#pragma GCC unroll 3
        for (int ky = KY0; ky < KY1; ++ky)
#pragma GCC unroll 3
          for (int kx = 0; kx < 3; ++kx)
            if (kx >= kx0 && kx < kx1)
              for (int s = 0; s < NS; ++s)
                sum[s][ky * 3 + kx] += load<V>(img + (base + (ky * g.w + kx) * C + s * kL)) * d[s];
      };
      const int64_t lo = std::clamp(col_lo, x0, x1), hi = std::clamp(col_hi, lo, x1);
      for (int64_t ox = x0; ox < lo; ++ox) border(ox);
      const int64_t step = g.sw * C;
      int64_t off = (iy0 * g.w + lo * g.sw - g.pw) * C;
      for (int64_t ox = lo; ox < hi; ++ox, off += step) {
        V d[NS];
        for (int s = 0; s < NS; ++s) d[s] = load<V>(dy_row + ox * C + s * kL), db[s] += d[s];
        for (int ky = KY0; ky < KY1; ++ky)
          for (int kx = 0; kx < 3; ++kx)
            for (int s = 0; s < NS; ++s)
              sum[s][ky * 3 + kx] += load<V>(img + (off + (ky * g.w + kx) * C + s * kL)) * d[s];
      }
      for (int64_t ox = hi; ox < x1; ++ox) border(ox);
    });
  }
}

// One chunk's sums for dy rows [r0, r1) into part ([tap][C], then db's [C]), which the first
// group of a chunk starts from zero.
template <class V, int NS>
void weight_sums_3x3(const ConvGeometry& g, const float* dy, const float* x, int64_t r0, int64_t r1, int64_t c,
                     float* part, bool first, int64_t x0, int64_t x1) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  const int64_t C = g.c;
  V sum[NS][9], db[NS];
  for (int s = 0; s < NS; ++s) {
    db[s] = first ? V{} : load<V>(part + 9 * C + c + s * kL);
    for (int t = 0; t < 9; ++t) sum[s][t] = first ? V{} : load<V>(part + t * C + c + s * kL);
  }
  sum_rows_3x3<V, NS>(g, dy, x, r0, r1, c, sum, db, x0, x1);
  for (int s = 0; s < NS; ++s) {
    for (int t = 0; t < 9; ++t) store(part + t * C + c + s * kL, sum[s][t]);
    store(part + 9 * C + c + s * kL, db[s]);
  }
}

// The weight gradient of 3x3 kernels with stride 1 or 2 and more than 32 channels, a multiple of
// 16 (MobileNetV2's mid-size maps): channels innermost. Each output row runs in blocks of
// kPixelBlock pixels, and for every 16-channel vector of a block the nine sums and db are read
// from the chunk's sums (L1), added to and written back. dy and x are read in address order,
// every channel of a pixel at once, where the slices above stride over each pixel C / 32 times
// (a pixel of dw192 is 768 bytes, a pass reads 128 of them: the hardware prefetchers do not
// follow, and each group's first pass waits on memory). A block's input columns are loaded once
// per kernel row and feed its three taps. A chunk's sums are tile-major, [C / 16][10][16] (nine
// taps, then db): one pointer reaches a vector's ten sums (with [tap][C], GCC kept a pointer per
// tap and input column and spilled them). Measured (2 threads, A/B interleaved, idle, the
// benchmark's shapes): dw144 56x56 1.29-1.36x, dw192 28x28 1.24-1.25x, dw384 14x14 1.19-1.23x,
// dw96 s2 112x112 1.07x, dw144 8x8 at batch 32 0.97-0.99x (1.10x on one thread). Each sum
// runs over the rows in order, pixel by pixel, as on the slices. Slower and not taken: 32
// channels (the slices then read whole pixels: dw32 112x112 0.92x, 16x16 0.84x) and the direct
// paths' small maps (dw576 s2 1.00 / 0.89x in two runs, dw960 7x7 0.62x); blocks of 8 pixels (0.94-0.98x of 4).
bool weight_by_pixel(const ConvGeometry& g) {
  return g.kh == 3 && g.kw == 3 && g.sh == g.sw && (g.sw == 1 || g.sw == 2) && g.c > 32 && g.c % 16 == 0;
}

// P interior pixels of a row: dy from d_at (pixel stride C), their first input column from x_at
// (rows row_stride apart), valid kernel rows [KY0, KY1), into the tile-major sums.
template <int SW, int KY0, int KY1, int P>
__attribute__((always_inline)) inline void pixel_block_sums(const float* d_at, const float* x_at, int64_t C,
                                                            int64_t row_stride, float* __restrict sums) {
  constexpr int kCols = (P - 1) * SW + 3;
  for (int64_t c = 0; c < C; c += 16, sums += kTileFloats, d_at += 16, x_at += 16) {
    V16 d[P];
    V16 db = load<V16>(sums + kTapFloats);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      d[p] = load<V16>(d_at + p * C);
      db += d[p];
    }
    store(sums + kTapFloats, db);
    prefetch_next_rows<SW, P>(x_at, C, row_stride);
#pragma GCC unroll 3
    for (int ky = KY0; ky < KY1; ++ky) {
      const float* in_row = x_at + ky * row_stride;
      V16 in[kCols];
#pragma GCC unroll 16
      for (int j = 0; j < kCols; ++j) in[j] = load<V16>(in_row + j * C);
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx) {
        float* s = sums + (ky * 3 + kx) * 16;
        V16 sum = load<V16>(s);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) sum += in[p * SW + kx] * d[p];
        store(s, sum);
      }
    }
  }
}

// One pixel next to the padding: taps [KY0, KY1) x [kx0, kx1).
template <int KY0, int KY1>
inline void border_pixel_sums(const float* d_at, const float* x_at, int64_t C, int64_t row_stride, int64_t kx0,
                              int64_t kx1, float* __restrict sums) {
  for (int64_t c = 0; c < C; c += 16, sums += kTileFloats) {
    const V16 d = load<V16>(d_at + c);
    store(sums + kTapFloats, load<V16>(sums + kTapFloats) + d);
    for (int ky = KY0; ky < KY1; ++ky)
      for (int64_t kx = kx0; kx < kx1; ++kx) {
        float* s = sums + (ky * 3 + kx) * 16;
        store(s, load<V16>(s) + load<V16>(x_at + ky * row_stride + kx * C + c) * d);
      }
  }
}

// One chunk, dy rows [r0, r1), into its tile-major sums (zeroed first).
template <int SW>
void weight_sums_by_pixel(const ConvGeometry& g, const float* dy, const float* x, int64_t r0, int64_t r1,
                          float* sums) {
  const int64_t C = g.c, row_stride = g.w * C;
  std::fill(sums, sums + (C / 16) * kTileFloats, 0.0f);
  int64_t lo = 0, hi = 0;
  interior_columns(g.out_w, g.w, 3, SW, g.pw, &lo, &hi);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h;
    const float* img = x + n * g.h * g.w * C;
    const float* dy_row = dy + r * g.out_w * C;
    int64_t ky0, ky1;
    valid_taps(oy, SW, g.ph, 3, g.h, &ky0, &ky1);
    const int64_t iy0 = oy * SW - g.ph;
    auto x_at = [&](int64_t ox) { return img + (iy0 * g.w + ox * SW - g.pw) * C; };
    with_rows(ky0, ky1, [&]<int KY0, int KY1>() __attribute__((always_inline)) {
      for_pixel_blocks(
          g.out_w, lo, hi,
          [&]<int P>(int64_t ox) __attribute__((always_inline)) {
            pixel_block_sums<SW, KY0, KY1, P>(dy_row + ox * C, x_at(ox), C, row_stride, sums);
          },
          [&](int64_t ox) {
            int64_t kx0, kx1;
            valid_taps(ox, SW, g.pw, 3, g.w, &kx0, &kx1);
            border_pixel_sums<KY0, KY1>(dy_row + ox * C, x_at(ox), C, row_stride, kx0, kx1, sums);
          });
    });
  }
}

// weight_by_pixel's whole gradient: the chunks of rows (weight_chunks, as on the slices) in
// parallel, each into its own tile-major sums in the workspace; then per tile, the chunks added
// in order and written to dw (OHWI) and db, added to or overwritten.
void weight_grads_by_pixel(const Parallel& par, const ConvGeometry& g, const float* dy, const float* x,
                           float* workspace, float* dw, float* db, bool accumulate_dw, bool accumulate_db) {
  const int64_t chunks = weight_chunks(g), rows = g.n * g.out_h, per_chunk = chunk_floats(g);
  par.for_each(chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t r0 = k * rows / chunks, r1 = (k + 1) * rows / chunks;
      if (g.sw == 1) weight_sums_by_pixel<1>(g, dy, x, r0, r1, workspace + k * per_chunk);
      else weight_sums_by_pixel<2>(g, dy, x, r0, r1, workspace + k * per_chunk);
    }
  });
  par.for_each(g.c / 16, min_chunk_for(kTileFloats * chunks), [&](int64_t t0, int64_t t1) {
    for (int64_t k = 1; k < chunks; ++k)
      for (int64_t i = t0 * kTileFloats; i < t1 * kTileFloats; ++i) workspace[i] += workspace[k * per_chunk + i];
    for (int64_t c = t0 * 16; c < t1 * 16; ++c) {
      const float* sums = workspace + (c / 16) * kTileFloats + c % 16;
      if (dw)
        for (int64_t t = 0; t < 9; ++t) dw[c * 9 + t] = (accumulate_dw ? dw[c * 9 + t] : 0.0f) + sums[t * 16];
      if (db) db[c] = (accumulate_db ? db[c] : 0.0f) + sums[kTapFloats];
    }
  });
}

// The weight gradient of weight_direct_3x3's small maps, for NS slices at c.
template <class V, int NS>
void weight_grads_3x3_direct(const ConvGeometry& g, const float* dy, const float* x, int64_t c, float* dw, float* db,
                             bool accumulate_dw, bool accumulate_db) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  V sum[NS][9], dbs[NS];
  for (int s = 0; s < NS; ++s) {
    dbs[s] = V{};
    for (int t = 0; t < 9; ++t) sum[s][t] = V{};
  }
  sum_rows_3x3<V, NS>(g, dy, x, 0, g.n * g.out_h, c, sum, dbs, 0, g.out_w);
  if (db)
    for (int s = 0; s < NS; ++s) {
      float* p = db + c + s * kL;
      store(p, accumulate_db ? load<V>(p) + dbs[s] : dbs[s]);
    }
  if (dw) {
    float t9[9][NS * kL];  // [tap][channel], transposed to [channel][tap] below
    for (int s = 0; s < NS; ++s)
      for (int t = 0; t < 9; ++t) store(&t9[t][s * kL], sum[s][t]);
    float* o = dw + c * 9;
    for (int64_t k = 0; k < NS * kL; ++k)
      for (int t = 0; t < 9; ++t) o[k * 9 + t] = accumulate_dw ? o[k * 9 + t] + t9[t][k] : t9[t][k];
  }
}

// The sum over i < n of a[i * stride], in four independent chains so that the adds do not wait
// on each other.
template <class V>
inline V sum_strided(const float* a, int64_t n, int64_t stride) {
  V s[4] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += load<V>(a + (i + j) * stride);
  for (; i < n; ++i) s[0] += load<V>(a + i * stride);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// The weight gradient of maps with one output pixel (MobileNetV2's 1x1 maps, padding 1: only the
// centre tap): every image reads the same taps, so for the slice at c each tap's sum over the
// batch runs in registers and goes straight to dw (OHWI; the taps never read are 0, or left as
// they are when accumulating), and db's likewise.
template <class V>
void weight_grads_one_pixel(const ConvGeometry& g, const float* dy, const float* x, int64_t c, float* dw, float* db,
                            bool accumulate_dw, bool accumulate_db) {
  constexpr int64_t kL = sizeof(V) / sizeof(float);
  const int64_t C = g.c, taps = g.kh * g.kw, image = g.h * g.w * C;
  if (db) {
    const V s = sum_strided<V>(dy + c, g.n, C);
    store(db + c, accumulate_db ? load<V>(db + c) + s : s);
  }
  if (dw == nullptr) return;
  if (!accumulate_dw) std::fill(dw + c * taps, dw + (c + kL) * taps, 0.0f);
  int64_t ky0, ky1, kx0, kx1;
  valid_taps(0, g.sh, g.ph, g.kh, g.h, &ky0, &ky1);
  valid_taps(0, g.sw, g.pw, g.kw, g.w, &kx0, &kx1);
  for (int64_t ky = ky0; ky < ky1; ++ky)
    for (int64_t kx = kx0; kx < kx1; ++kx) {
      const float* xp = x + ((ky - g.ph) * g.w + kx - g.pw) * C + c;
      V s[4] = {};
      int64_t n = 0;
      for (; n + 4 <= g.n; n += 4)
        for (int j = 0; j < 4; ++j) s[j] += load<V>(xp + (n + j) * image) * load<V>(dy + (n + j) * C + c);
      for (; n < g.n; ++n) s[0] += load<V>(xp + n * image) * load<V>(dy + n * C + c);
      float lanes[kL];
      store(lanes, (s[0] + s[1]) + (s[2] + s[3]));
      const int64_t t = ky * g.kw + kx;
      for (int64_t k = 0; k < kL; ++k) dw[(c + k) * taps + t] += lanes[k];
    }
}

// The weight gradient on the per-pixel path (one-pixel maps, other kernels on small maps):
// parallel over blocks of 64 channels, each thread owning its channels: their sums of the taps
// the map reads (a 1x1 map: the centre) in workspace ([tap][C], then db's [C]), then written to
// dw (OHWI; the taps never read are 0, or left as they are when accumulating) and db.
void weight_grads_pixels(const Parallel& par, const ConvGeometry& g, const float* dy, const float* x, float* part,
                         float* dw, float* dbo, bool accumulate_dw, bool accumulate_db) {
  const int64_t C = g.c, taps = g.kh * g.kw, blocks = (C + 63) / 64;
  int64_t uy0, uy1, ux0, ux1;
  used_taps(g, &uy0, &uy1, &ux0, &ux1);
  auto used = [&](int64_t t) { return t / g.kw >= uy0 && t / g.kw < uy1 && t % g.kw >= ux0 && t % g.kw < ux1; };
  par.for_each(blocks, min_chunk_for(g.n * g.out_h * g.out_w * 64 * used_tap_count(g)), [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * 64, c1 = std::min(C, b1 * 64), cb = c1 - c0;
    for (int64_t t = 0; t <= taps; ++t)
      if (t == taps || used(t)) std::fill(part + t * C + c0, part + t * C + c1, 0.0f);
    for (int64_t r = 0; r < g.n * g.out_h; ++r) {
      const int64_t n = r / g.out_h, oy = r % g.out_h, iy0 = oy * g.sh - g.ph;
      const float* img = x + n * g.h * g.w * C;
      int64_t ky0, ky1;
      valid_taps(oy, g.sh, g.ph, g.kh, g.h, &ky0, &ky1);
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        const float* d = dy + (r * g.out_w + ox) * C + c0;
        float* db = part + taps * C + c0;
        for (int64_t k = 0; k < cb; ++k) db[k] += d[k];
        int64_t kx0, kx1;
        valid_taps(ox, g.sw, g.pw, g.kw, g.w, &kx0, &kx1);
        const int64_t ix0 = ox * g.sw - g.pw;
        for (int64_t ky = ky0; ky < ky1; ++ky)
          for (int64_t kx = kx0; kx < kx1; ++kx)
            axpy(part + (ky * g.kw + kx) * C + c0, img + ((iy0 + ky) * g.w + ix0 + kx) * C + c0, d, cb);
      }
    }
    if (dw)
      for (int64_t t = 0; t < taps; ++t) {
        const bool u = used(t);
        if (!u && accumulate_dw) continue;
        const float* sum = part + t * C;
        for (int64_t c = c0; c < c1; ++c) dw[c * taps + t] = !u ? 0.0f : accumulate_dw ? dw[c * taps + t] + sum[c] : sum[c];
      }
    if (dbo)
      for (int64_t c = c0; c < c1; ++c) dbo[c] = (accumulate_db ? dbo[c] : 0.0f) + part[taps * C + c];
  });
}

// Backward data at stride 1: dx = dy correlated with the rotated kernel, padded by k - 1 - p, a
// forward geometry from dy's size to x's.
ConvGeometry backward_data_geometry(const ConvGeometry& g) {
  ConvGeometry t = g;
  t.h = g.out_h, t.w = g.out_w;
  t.ph = g.kh - 1 - g.ph, t.pw = g.kw - 1 - g.pw;
  t.out_h = g.h, t.out_w = g.w;
  return t;
}

}  // namespace

bool is_depthwise(const ConvGeometry& g) { return g.groups == g.c && g.out_c == g.c; }

int64_t depthwise_workspace_floats(const ConvGeometry& g) {
  return std::max(g.kh * g.kw * g.c, weight_chunks(g) * chunk_floats(g));
}

void depthwise_forward(const Parallel& par, const ConvGeometry& g, const float* x, const float* w,
                       const float* b, float* y, float* workspace, const ConvNormEpilogue* epilogue) {
  if (correlate_by_channels(g, epilogue != nullptr))
    return correlate_channels(par, g, x, w, /*rotate=*/false, workspace, b, /*accumulate=*/false, y);
  correlate(par, g, x, w, /*rotate=*/false, workspace, b, /*accumulate=*/false, y, epilogue);
}

bool depthwise_backward_data_streams(const ConvGeometry& g, const float* dx, bool accumulate) {
  return is_3x3_stride2(g) && use_streaming(dx, g.n * g.h * g.w * g.c, g.c, accumulate);
}

void depthwise_backward_data(const Parallel& par, const ConvGeometry& g, const float* dy,
                             const float* w, float* dx, bool accumulate, float* workspace) {
  if (g.sh == 1 && g.sw == 1) {
    const ConvGeometry t = backward_data_geometry(g);
    if (correlate_by_channels(t, /*has_epilogue=*/false))
      return correlate_channels(par, t, dy, w, /*rotate=*/true, workspace, nullptr, accumulate, dx);
    correlate(par, t, dy, w, /*rotate=*/true, workspace, nullptr, accumulate, dx, nullptr);
    return;
  }
  const bool per_thread = thread_weights(g);
  if (!per_thread) transpose_weights(g, w, workspace, /*rotate=*/false, /*used_only=*/false);
  const int64_t C = g.c;
  const bool k3s2 = is_3x3_stride2(g);
  const int64_t group = group_rows_for(g.w * C);
  const bool stream = depthwise_backward_data_streams(g, dx, accumulate);
  par.for_each(g.n * g.h, min_chunk_for(g.w * C * g.kh * g.kw), [&](int64_t r0, int64_t r1) {
    alignas(64) float wt_thread[kThreadWeightFloats];
    const float* wt = workspace;
    if (per_thread) {
      transpose_weights(g, w, wt_thread, /*rotate=*/false, /*used_only=*/false);
      wt = wt_thread;
    }
    for (int64_t g0 = r0; g0 < r1; g0 += group) {
      const int64_t g1 = std::min(r1, g0 + group);
      if (k3s2) {
        const int64_t tile = C > 32 ? 2 * kColumnTile : g.w;  // even: pixel pairs stay whole
        for (int64_t r = g0; r < g1; ++r)
          for (int64_t x0 = 0; x0 < g.w; x0 += tile)
            for_slice_pairs(C, [&]<class V, int NS>(int64_t c) {
              const int64_t x1 = std::min(g.w, x0 + tile);
              if (stream) gather_rows_3x3_s2<V, NS, true>(g, dy, wt, accumulate, r, r + 1, c, dx, x0, x1);
              else gather_rows_3x3_s2<V, NS, false>(g, dy, wt, accumulate, r, r + 1, c, dx, x0, x1);
            });
        continue;
      }
      for (int64_t r = g0; r < g1; ++r)
        for_slices(C, [&]<class V>(int64_t c) { gather_row<V>(g, dy, wt, accumulate, r / g.h, r % g.h, c, dx); });
    }
    if (stream) simd::stream_fence();
  });
}

namespace {

DepthwiseLoop correlation_loop(const ConvGeometry& g, bool has_epilogue) {
  if (correlate_by_channels(g, has_epilogue)) return DepthwiseLoop::kChannelUnits;
  if (pixel_path(g)) return DepthwiseLoop::kPixels;
  if (correlate_by_pixel(g)) return DepthwiseLoop::kPixelBlocks;
  if (column_tiled(g)) return DepthwiseLoop::kColumnTiles;
  return g.kh == 3 && g.kw == 3 ? DepthwiseLoop::kSlices3x3 : DepthwiseLoop::kSlicesAnyKernel;
}

}  // namespace

DepthwiseLoop depthwise_loop(const ConvGeometry& g, ConvDirection dir, bool has_epilogue, bool accumulate) {
  switch (dir) {
    case ConvDirection::kForward:
      return correlation_loop(g, has_epilogue);
    case ConvDirection::kBackwardData:
      if (g.sh == 1 && g.sw == 1) return correlation_loop(backward_data_geometry(g), false);
      if (!is_3x3_stride2(g)) return DepthwiseLoop::kGatherAny;
      // (The arena aligns every tensor to 64 bytes, as streaming asks.)
      return streaming_output(g.n * g.h * g.w * g.c, g.c, accumulate) ? DepthwiseLoop::kGather3x3Stride2Streaming
                                                                      : DepthwiseLoop::kGather3x3Stride2;
    case ConvDirection::kBackwardWeight:
      if (g.out_h == 1 && g.out_w == 1) return DepthwiseLoop::kOnePixelSums;
      if (pixel_path(g)) return DepthwiseLoop::kPixelSums;
      if (weight_direct_3x3_any(g)) return DepthwiseLoop::kChannelUnitSums;
      if (weight_by_pixel(g)) return DepthwiseLoop::kPixelBlockSums;
      return g.kh == 3 && g.kw == 3 ? DepthwiseLoop::kRowChunks3x3 : DepthwiseLoop::kRowChunksAnyKernel;
  }
  return DepthwiseLoop::kSlicesAnyKernel;
}

void depthwise_backward_weight(const Parallel& par, const ConvGeometry& g, const float* dy,
                               const float* x, float* dw, float* db, bool accumulate_dw,
                               bool accumulate_db, float* workspace) {
  if (dw == nullptr && db == nullptr) return;
  const int64_t C = g.c, taps = g.kh * g.kw, rows = g.n * g.out_h;
  if (g.out_h == 1 && g.out_w == 1) {
    par.for_each((C + 63) / 64, min_chunk_for(g.n * 64 * used_tap_count(g)), [&](int64_t b0, int64_t b1) {
      const int64_t c0 = b0 * 64, c1 = std::min(C, b1 * 64);
      for_slices(c1 - c0, [&]<class V>(int64_t c) {
        weight_grads_one_pixel<V>(g, dy, x, c0 + c, dw, db, accumulate_dw, accumulate_db);
      });
    });
    return;
  }
  if (pixel_path(g)) return weight_grads_pixels(par, g, dy, x, workspace, dw, db, accumulate_dw, accumulate_db);
  if (weight_direct_3x3_any(g)) {
    const int64_t units = (C + kChannelUnit - 1) / kChannelUnit;
    par.for_each(units, min_chunk_for(rows * g.out_w * kChannelUnit * 9), [&](int64_t u0, int64_t u1) {
      const int64_t c0 = u0 * kChannelUnit, c1 = std::min(C, u1 * kChannelUnit);
      for_slice_pairs(c1 - c0, [&]<class V, int NS>(int64_t c) {
        weight_grads_3x3_direct<V, NS>(g, dy, x, c0 + c, dw, db, accumulate_dw, accumulate_db);
      });
    });
    return;
  }
  if (weight_by_pixel(g)) return weight_grads_by_pixel(par, g, dy, x, workspace, dw, db, accumulate_dw, accumulate_db);
  const int64_t chunks = weight_chunks(g);
  // One task per chunk; within it, groups of rows small enough to stay in cache while every
  // channel slice sums over them.
  const int64_t group = group_rows_for(g.out_w * C / 4);
  const bool k3 = g.kh == 3 && g.kw == 3;
  const int64_t weight_tile = column_tiled(g) ? kWeightColumnTile : g.out_w;
  par.for_each(chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t chunk = k0; chunk < k1; ++chunk) {
      const int64_t r0 = chunk * rows / chunks, r1 = (chunk + 1) * rows / chunks;
      float* part = workspace + chunk * chunk_floats(g);
      for (int64_t g0 = r0; g0 < r1; g0 += group) {
        const int64_t g1 = std::min(r1, g0 + group);
        if (k3)
          for (int64_t x0 = 0; x0 < g.out_w; x0 += weight_tile)
            for_slice_pairs(C, [&]<class V, int NS>(int64_t c) {
              weight_sums_3x3<V, NS>(g, dy, x, g0, g1, c, part, g0 == r0 && x0 == 0, x0,
                                     std::min(g.out_w, x0 + weight_tile));
            });
        else
          for_slices(C, [&]<class V>(int64_t c) { weight_sums_any<V>(g, dy, x, g0, g1, c, part, g0 == r0); });
      }
    }
  });
  // Chunks added in order into chunk 0's sums (contiguous over channels), then dw transposed to
  // OHWI [C][tap] and db, both added to or overwritten.
  const int64_t per_chunk = chunk_floats(g);
  par.for_each(C, std::max<int64_t>(256, min_chunk_for((taps + 1) * chunks)), [&](int64_t c0, int64_t c1) {
    for (int64_t t = 0; t <= taps; ++t) {
      float* __restrict sum = workspace + t * C;
      for (int64_t k = 1; k < chunks; ++k) {
        const float* __restrict more = workspace + k * per_chunk + t * C;
        for (int64_t c = c0; c < c1; ++c) sum[c] += more[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      if (dw)
        for (int64_t t = 0; t < taps; ++t) dw[c * taps + t] = (accumulate_dw ? dw[c * taps + t] : 0.0f) + workspace[t * C + c];
      if (db) db[c] = (accumulate_db ? db[c] : 0.0f) + workspace[taps * C + c];
    }
  });
}

}  // namespace edgetrain
