#include "ops/conv2d_direct.h"

#include <algorithm>

#include "ops/simd.h"

namespace edgetrain {

bool conv2d_direct_forward_applies(const ConvGeometry& g) {
  return g.groups == 1 && g.c <= kDirectConvMaxInputChannels;
}

namespace {

// The reordered weights' row length: output channels padded with zeros to whole vectors, so that
// the last block of fewer than 16 channels runs the vector kernel too.
int64_t weight_stride(const ConvGeometry& g) { return (g.out_c + simd::kLanes - 1) / simd::kLanes * simd::kLanes; }

}  // namespace

int64_t conv2d_direct_forward_workspace_floats(const ConvGeometry& g) { return g.kh * g.kw * g.c * weight_stride(g); }

namespace {

// kPixels adjacent output pixels of one row, output channels [co0, co0 + 16 NV): the
// accumulators stay in registers (kPixels * NV vectors) and every weight vector loaded serves all
// kPixels pixels (one broadcast of x per pixel and input channel). All pixels must share the
// valid taps [ky0, ky1) x [kx0, kx1). With kPartial (NV 1) only the `valid` < 16 channels from co0
// exist: the padded weights give the others zero, and only the valid ones are stored.
template <int NV, int kPixels, bool kPartial = false>
inline void pixels_block(const ConvGeometry& g, const float* __restrict x_img, const float* __restrict wt,
                         const float* __restrict b, int64_t oy, int64_t ox, int64_t ky0, int64_t ky1, int64_t kx0,
                         int64_t kx1, int64_t co0, float* __restrict out, int64_t valid = 0) {
  using simd::V16;
  using simd::kLanes;
  static_assert(!kPartial || NV == 1);
  const int64_t ldw = weight_stride(g);
  V16 acc[kPixels][NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    V16 init{};
    if (b && kPartial) {
      alignas(64) float bias[kLanes] = {};
      for (int64_t c = 0; c < valid; ++c) bias[c] = b[co0 + c];
      init = simd::load<V16>(bias);
    } else if (b) {
      init = simd::load<V16>(b + co0 + j * kLanes);
    }
#pragma GCC unroll 8
    for (int p = 0; p < kPixels; ++p) acc[p][j] = init;
  }
  const int64_t iy0 = oy * g.sh - g.ph, ix0 = ox * g.sw - g.pw;
  const int64_t pixel_step = g.sw * g.c;  // input distance between adjacent output pixels
  // Within a kernel row the valid taps' (kx, ci) entries are contiguous both in the input row
  // and in the reordered weights: one loop of (kx1 - kx0) * C steps (21 for a 7x7 stem).
  const int64_t run = (kx1 - kx0) * g.c;
  for (int64_t ky = ky0; ky < ky1; ++ky) {
    const float* __restrict xp = x_img + ((iy0 + ky) * g.w + (ix0 + kx0)) * g.c;
    const float* __restrict wp = wt + (ky * g.kw + kx0) * g.c * ldw + co0;
    for (int64_t q = 0; q < run; ++q) {
      V16 wv[NV];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        V16 t = simd::load<V16>(wp + q * ldw + j * kLanes);
        simd::keep_in_register(t);  // else GCC folds the load into every pixel's FMA
        wv[j] = t;
      }
#pragma GCC unroll 8
      for (int p = 0; p < kPixels; ++p) {
        const V16 xv = xp[p * pixel_step + q] - V16{};  // broadcast (x - 0 folds to x)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[p][j] += xv * wv[j];
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < kPixels; ++p) {
    if constexpr (kPartial) {
      alignas(64) float t[kLanes];
      simd::store(t, acc[p][0]);
      for (int64_t c = 0; c < valid; ++c) out[p * g.out_c + co0 + c] = t[c];
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) simd::store(out + p * g.out_c + co0 + j * kLanes, acc[p][j]);
    }
  }
}

// kPixels pixels' channels in blocks of 64, 32 and 16, then a last partial block. (The last
// channels ran one at a time in scalar loops until session 13: small_cnn's 3 -> 8 stem at 44x44,
// batch 48, took 17 ms on one thread, 2.2 GFLOP/s, 70% of its training step.)
template <int kPixels>
inline void pixels_all_channels(const ConvGeometry& g, const float* x_img, const float* wt, const float* b,
                                int64_t oy, int64_t ox, int64_t ky0, int64_t ky1, int64_t kx0, int64_t kx1,
                                float* out) {
  int64_t co = 0;
  // 64 channels of more than 4 pixels would not fit the registers: 4 pixels at a time.
  constexpr int kWide = kPixels < 4 ? kPixels : 4;
  for (; co + 64 <= g.out_c; co += 64)
    for (int p = 0; p < kPixels; p += kWide)
      pixels_block<4, kWide>(g, x_img, wt, b, oy, ox + p, ky0, ky1, kx0, kx1, co, out + p * g.out_c);
  for (; co + 32 <= g.out_c; co += 32)
    pixels_block<2, kPixels>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, co, out);
  for (; co + 16 <= g.out_c; co += 16)
    pixels_block<1, kPixels>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, co, out);
  if (co < g.out_c)
    pixels_block<1, kPixels, true>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, co, out, g.out_c - co);
}

}  // namespace

void conv2d_direct_forward(const Parallel& parallel, const ConvGeometry& g, const float* x, const float* w,
                           const float* b, float* y, float* wt, const ConvNormEpilogue* epilogue) {
  // OHWI -> [kh][kw][ci][Cout padded to whole vectors with zeros].
  const int64_t taps = g.kh * g.kw * g.c, ldw = weight_stride(g);
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t co = 0; co < g.out_c; ++co) wt[t * ldw + co] = w[co * taps + t];
    for (int64_t co = g.out_c; co < ldw; ++co) wt[t * ldw + co] = 0.0f;
  }

  const int64_t rows = g.n * g.out_h;
  const int64_t work_per_row = std::max<int64_t>(1, g.out_w * taps * g.out_c);
  parallel.for_each(rows, std::max<int64_t>(1, (int64_t{1} << 16) / work_per_row), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.out_h, oy = r % g.out_h;
      const float* x_img = x + n * g.h * g.w * g.c;
      // Valid kernel rows for this output row, valid kernel columns per output column: taps in
      // the padding are skipped, not multiplied by zero.
      const int64_t iy0 = oy * g.sh - g.ph;
      const int64_t ky0 = std::clamp<int64_t>(-iy0, 0, g.kh), ky1 = std::clamp<int64_t>(g.h - iy0, ky0, g.kh);
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        const int64_t ix0 = ox * g.sw - g.pw;
        const int64_t kx0 = std::clamp<int64_t>(-ix0, 0, g.kw), kx1 = std::clamp<int64_t>(g.w - ix0, kx0, g.kw);
        float* out = y + (r * g.out_w + ox) * g.out_c;
        // Up to eight pixels at once where the next ones have the same valid columns (the
        // interior): 4 pixels x 64 channels or 8 x 32 is 16 accumulators, one weight load per 4
        // or 8 FMAs.
        int same = 1;
        for (; same < 8 && ox + same < g.out_w; ++same) {
          const int64_t nx0 = ix0 + same * g.sw;
          const int64_t nkx0 = std::clamp<int64_t>(-nx0, 0, g.kw), nkx1 = std::clamp<int64_t>(g.w - nx0, nkx0, g.kw);
          if (nkx0 != kx0 || nkx1 != kx1) break;
        }
        if (same == 8) {  // 32 channels x 8 pixels: 16 accumulators (MobileNetV2's stem)
          pixels_all_channels<8>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, out);
          ox += 7;
        } else if (same >= 4) {
          pixels_all_channels<4>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, out);
          ox += 3;
        } else if (same >= 2) {
          pixels_all_channels<2>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, out);
          ++ox;
        } else {
          pixels_all_channels<1>(g, x_img, wt, b, oy, ox, ky0, ky1, kx0, kx1, out);
        }
      }
      if (epilogue) epilogue->apply_rows(y + r * g.out_w * g.out_c, g.out_w, g.out_c);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Backward weight.

bool conv2d_direct_backward_weight_applies(const ConvGeometry& g) { return conv2d_direct_forward_applies(g); }

namespace {

// Chunks of dy rows, by the shape alone: at most 8, each with at least ~1M multiply-adds.
int64_t weight_chunks(const ConvGeometry& g) {
  const int64_t work = g.n * g.out_h * g.out_w * g.out_c * g.kh * g.kw * g.c;
  return std::clamp<int64_t>(std::min<int64_t>(8, work >> 20), 1, std::max<int64_t>(1, g.n * g.out_h));
}

// (kx, ci) entries of one kernel row a task sums: with two vectors of output channels, 24
// accumulators.
constexpr int kEntries = 12;

// Chunks whose dy exceeds kBlockRowsAbove bytes run in blocks of rows of about kBlockBytes of dy.
// ResNet-18's stem at 224x224 batch 8 (1 / 2 threads' share of L2 per block: 128 KiB to 512 KiB
// measured the same): 19.3 -> 9.8 ms, 98 -> 192 GFLOP/s at 2 threads.
constexpr int64_t kBlockRowsAbove = int64_t{1} << 20;
constexpr int64_t kBlockBytes = int64_t{256} << 10;

// Adds, for output channels [co, co + NV widths of V) and the entries [e0, e0 + count) of kernel
// row ky (entry e = kx * C + ci), the products over dy rows [r0, r1) to part[k][co] ([K][out_c],
// k = ky * kw * C + e). A kernel row's entries are contiguous in the input row, so an interior
// pixel reads them at fixed offsets from one pointer; each dy vector loaded serves all entries
// and each broadcast input value NV vectors of channels. Sums run over the pixels in order, as
// the reference's loop does.
template <class V, int NV>
void weight_entries(const ConvGeometry& g, const float* dy, const float* x, int64_t r0, int64_t r1, int64_t co,
                    int64_t ky, int64_t e0, int count, float* part) {
  using simd::load;
  constexpr int64_t kWidth = sizeof(V) / sizeof(float);
  const int64_t C = g.c;
  int64_t kx[kEntries];
  for (int j = 0; j < count; ++j) kx[j] = (e0 + j) / C;
  V acc[kEntries][NV];
#pragma GCC unroll 12
  for (int j = 0; j < kEntries; ++j)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[j][v] = V{};
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.out_h, oy = r % g.out_h, iy = oy * g.sh - g.ph + ky;
    if (iy < 0 || iy >= g.h) continue;  // the kernel row lies in the padding
    const float* x_row = x + (n * g.h + iy) * g.w * C;
    const float* dy_row = dy + r * g.out_w * g.out_c + co;
    for (int64_t ox = 0; ox < g.out_w; ++ox) {
      const int64_t ix0 = ox * g.sw - g.pw;
      V d[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        V t = load<V>(dy_row + ox * g.out_c + v * kWidth);
        simd::keep_in_register(t);  // else GCC folds the load into every entry's FMA
        d[v] = t;
      }
      const float* window = x_row + ix0 * C + e0;  // may point outside: only valid entries read it
      if (ix0 >= 0 && ix0 + g.kw <= g.w) {
#pragma GCC unroll 12
        for (int j = 0; j < kEntries; ++j)
          if (j < count) {
            const V xv = window[j] - V{};  // broadcast (x - 0 folds to x)
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v) acc[j][v] += d[v] * xv;
          }
      } else {
#pragma GCC unroll 12
        for (int j = 0; j < kEntries; ++j) {
          if (j >= count) continue;
          const int64_t ix = ix0 + kx[j];
          if (ix < 0 || ix >= g.w) continue;
          const V xv = window[j] - V{};
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) acc[j][v] += d[v] * xv;
        }
      }
    }
  }
  for (int j = 0; j < count; ++j)
    for (int v = 0; v < NV; ++v) {
      float* p = part + (ky * g.kw * C + e0 + j) * g.out_c + co + v * kWidth;
      simd::store(p, load<V>(p) + acc[j][v]);
    }
}

}  // namespace

int64_t conv2d_direct_backward_weight_block_rows(const ConvGeometry& g) {
  const int64_t dy_row_bytes = g.out_w * g.out_c * static_cast<int64_t>(sizeof(float));
  if (g.n * g.out_h / weight_chunks(g) * dy_row_bytes <= kBlockRowsAbove) return 0;
  return std::max<int64_t>(1, kBlockBytes / dy_row_bytes);
}

int64_t conv2d_direct_backward_weight_workspace_floats(const ConvGeometry& g) {
  return weight_chunks(g) * g.kh * g.kw * g.c * g.out_c;
}

void conv2d_direct_backward_weight(const Parallel& parallel, const ConvGeometry& g, const float* dy,
                                   const float* x, float* dw, bool accumulate, float* workspace) {
  const int64_t K = g.kh * g.kw * g.c, rows = g.n * g.out_h, chunks = weight_chunks(g);
  const int64_t row_entries = g.kw * g.c, row_groups = (row_entries + kEntries - 1) / kEntries;
  const int64_t groups = g.kh * row_groups;
  std::fill(workspace, workspace + chunks * K * g.out_c, 0.0f);
  // Group g's sums over dy rows [r0, r1) into its chunk's part, every block of output channels:
  // pairs of 16-channel vectors, then single slices.
  auto sum_group = [&](int64_t group, int64_t r0, int64_t r1, float* part) {
    const int64_t ky = group / row_groups, e0 = group % row_groups * kEntries;
    const int count = static_cast<int>(std::min<int64_t>(kEntries, row_entries - e0));
    int64_t co = 0;
    for (; co + 2 * simd::kLanes <= g.out_c; co += 2 * simd::kLanes)
      weight_entries<simd::V16, 2>(g, dy, x, r0, r1, co, ky, e0, count, part);
    simd::for_slices(g.out_c - co, [&]<class V>(int64_t c) {
      weight_entries<V, 1>(g, dy, x, r0, r1, co + c, ky, e0, count, part);
    });
  };
  if (const int64_t block = conv2d_direct_backward_weight_block_rows(g); block > 0) {
    // A chunk's dy outgrows the L2, and every group reads all of it (ResNet's 7x7 stem: 14
    // groups): one task per chunk, which runs every group over a block of rows while the block
    // is in L2. Each group adds a block's sums to part, so a sum runs block by block (the blocks
    // fixed by the shape: still the same on any thread count).
    parallel.for_each(chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t chunk = k0; chunk < k1; ++chunk) {
        const int64_t r0 = chunk * rows / chunks, r1 = (chunk + 1) * rows / chunks;
        for (int64_t b0 = r0; b0 < r1; b0 += block)
          for (int64_t group = 0; group < groups; ++group)
            sum_group(group, b0, std::min(r1, b0 + block), workspace + chunk * K * g.out_c);
      }
    });
  } else {
    // One task per (chunk, kernel row, group of its entries).
    parallel.for_each(chunks * groups, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t chunk = t / groups;
        sum_group(t % groups, chunk * rows / chunks, (chunk + 1) * rows / chunks, workspace + chunk * K * g.out_c);
      }
    });
  }
  // Chunks in order, transposed to OHWI [out_c][K].
  parallel.for_each(g.out_c, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t k = 0; k < K; ++k) {
        float s = accumulate ? dw[co * K + k] : 0.0f;
        for (int64_t c = 0; c < chunks; ++c) s += workspace[(c * K + k) * g.out_c + co];
        dw[co * K + k] = s;
      }
  });
}

}  // namespace edgetrain
