// The depthwise kernels' own paths (ops/conv2d_depthwise.h) against the naive reference: border
// pixels of stride 1 and 2 on odd and tiny maps (the taps in the padding skipped with the
// weights in registers), pairs of 16-channel slices with 8-wide and single-channel tails
// (C = 16, 24, 44, 512), accumulate on and off, the stride-2 backward data's non-temporal
// stores (taken only for large, aligned, whole-vector, overwritten dx), a backward weight
// that is bit-identical on 1 and 2 threads, the weight gradient with dw or db alone on the tiny
// maps' paths, the channels-innermost paths of mid-size maps, and weights prepared per thread or
// once in the workspace.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "ops/conv2d.h"
#include "ops/conv2d_depthwise.h"
#include "ops/simd.h"
#include "runtime/thread_pool.h"

namespace edgetrain {
namespace {

// 64-byte aligned floats (the arena's alignment), with `offset` floats of shift available.
class Buffer {
 public:
  explicit Buffer(int64_t n, int64_t offset = 0) : offset_(offset), size_(n) {
    data_ = static_cast<float*>(::operator new((n + offset) * sizeof(float), std::align_val_t{64}));
  }
  ~Buffer() { ::operator delete(data_, std::align_val_t{64}); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* data() { return data_ + offset_; }
  std::vector<float> vec() { return {data(), data() + size_}; }
  void fill_random(uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t i = 0; i < size_; ++i) data()[i] = dist(rng);
  }
  void set(const std::vector<float>& v) { std::copy(v.begin(), v.end(), data()); }

 private:
  float* data_;
  int64_t offset_, size_;
};

ConvGeometry depthwise(int64_t n, int64_t h, int64_t w, int64_t c, int64_t stride, int64_t pad = 1, int64_t k = 3) {
  ConvGeometry g{n, h, w, c, c, k, k, stride, stride, pad, pad, c, 0, 0};
  g.out_h = (h + 2 * pad - k) / stride + 1, g.out_w = (w + 2 * pad - k) / stride + 1;
  return g;
}

// Largest |a - b| over the largest |b| (at least 1).
double max_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, scale = 1.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return err / scale;
}

constexpr double kTolerance = 1e-5;

// Every direction of g on `threads` threads against the naive reference, with and without
// accumulation; `offset` shifts every buffer off the 64-byte alignment.
void check_all_directions(const ConvGeometry& g, int threads, int64_t offset = 0) {
  SCOPED_TRACE(testing::Message() << g.n << "x" << g.h << "x" << g.w << "x" << g.c << " s" << g.sh << " p" << g.ph
                                  << " threads " << threads << " offset " << offset);
  ThreadPool pool(threads);
  const Parallel par = pool.parallel();
  const int64_t xs = g.n * g.h * g.w * g.c, ys = g.n * g.out_h * g.out_w * g.c, ws = g.c * g.kh * g.kw;
  Buffer x(xs, offset), y(ys, offset), dy(ys, offset), dx(xs, offset), w(ws, offset), b(g.c, offset),
      dw(ws, offset), db(g.c, offset), workspace(depthwise_workspace_floats(g), offset);
  x.fill_random(1), dy.fill_random(2), w.fill_random(3), b.fill_random(4);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    // Forward (bias on the overwrite round only; forward never accumulates).
    if (!accumulate) {
      std::vector<float> expect(ys);
      conv2d_forward_naive<float>(g, x.data(), w.data(), b.data(), expect.data());
      y.fill_random(5);
      depthwise_forward(par, g, x.data(), w.data(), b.data(), y.data(), workspace.data(), nullptr);
      EXPECT_LT(max_error(y.vec(), expect), kTolerance) << "forward";
    }
    // Backward data.
    dx.fill_random(6);
    std::vector<float> expect_dx = dx.vec();
    conv2d_backward_data_naive<float>(g, dy.data(), w.data(), expect_dx.data(), accumulate);
    depthwise_backward_data(par, g, dy.data(), w.data(), dx.data(), accumulate, workspace.data());
    EXPECT_LT(max_error(dx.vec(), expect_dx), kTolerance) << "backward data";
    // Backward weight.
    dw.fill_random(7), db.fill_random(8);
    std::vector<float> expect_dw = dw.vec(), expect_db = db.vec();
    conv2d_backward_weight_naive<float>(g, dy.data(), x.data(), expect_dw.data(), expect_db.data(), accumulate,
                                        accumulate);
    depthwise_backward_weight(par, g, dy.data(), x.data(), dw.data(), db.data(), accumulate, accumulate,
                              workspace.data());
    EXPECT_LT(max_error(dw.vec(), expect_dw), kTolerance) << "backward weight dw";
    EXPECT_LT(max_error(db.vec(), expect_db), kTolerance) << "backward weight db";
  }
}

TEST(Conv2dDepthwise, BorderPixelsOnOddAndTinyMapsMatchReference) {
  // 1x1 (the per-pixel path), 2x2 .. 4x4 (slices, every pixel a border pixel), odd sizes where
  // stride 2's last column or row has a tap in the padding or none.
  for (int64_t stride : {1, 2})
    for (int64_t size : {1, 2, 3, 4, 5, 7, 9})
      for (int64_t c : {16, 24, 44, 512}) check_all_directions(depthwise(2, size, size + (size > 2 ? 2 : 0), c, stride), 2);
}

TEST(Conv2dDepthwise, LayerSizedMapsMatchReference) {
  check_all_directions(depthwise(2, 14, 14, 96, 1), 2);   // 3 slice pairs
  check_all_directions(depthwise(2, 15, 13, 144, 2), 2);  // 4 pairs and one 16-slice
  check_all_directions(depthwise(1, 28, 28, 40, 1), 1);   // a pair and an 8-wide tail
  check_all_directions(depthwise(2, 9, 11, 48, 1, 2, 5), 2);  // 5x5: the any-kernel paths
}

TEST(Conv2dDepthwise, Stride2ColumnTilesMatchReference) {
  // Stride 2 with more than 32 channels runs rows in column tiles (forward and weight gradient:
  // 8 output pixels, backward data: 16 dx pixels): rows that end in a part tile (19 outputs, 37 and 36 dx
  // pixels), one tile exactly (16 dx pixels), and padding 0 (no pixel pairs).
  check_all_directions(depthwise(2, 9, 37, 72, 2), 2);
  check_all_directions(depthwise(1, 7, 36, 40, 2), 1);
  check_all_directions(depthwise(2, 5, 16, 48, 2), 2);
  check_all_directions(depthwise(2, 9, 37, 72, 2, 0), 2);
  check_all_directions(depthwise(8, 14, 14, 576, 2), 2);  // 18 slice pairs per tile
}

TEST(Conv2dDepthwise, WeightsPreparedPerThreadOrOnceShared) {
  // Each thread prepares the weights on its stack up to 9 x 1024 floats; beyond, once in the
  // workspace: 3x3 at 1024 channels (per thread) and 1040 (shared), stride 1 and 2; 5x5 at 368
  // channels (per thread) and 384 (shared).
  for (int64_t stride : {1, 2})
    for (int64_t c : {1024, 1040}) check_all_directions(depthwise(2, 6, 7, c, stride), 2);
  for (int64_t c : {368, 384}) check_all_directions(depthwise(2, 9, 8, c, 1, 2, 5), 2);
}

TEST(Conv2dDepthwise, StreamsOnlyLargeAlignedWholeVectorOverwrittenDx) {
  alignas(64) static float aligned[16];
  const ConvGeometry big = depthwise(2, 112, 112, 96, 2);  // dx 9.2 MiB
  EXPECT_EQ(depthwise_backward_data_streams(big, aligned, false), simd::kCanStream);
  EXPECT_FALSE(depthwise_backward_data_streams(big, aligned, true));      // accumulating
  EXPECT_FALSE(depthwise_backward_data_streams(big, aligned + 4, false));  // not 64-byte aligned
  EXPECT_FALSE(depthwise_backward_data_streams(depthwise(2, 112, 112, 88, 2), aligned, false));  // C % 16
  EXPECT_FALSE(depthwise_backward_data_streams(depthwise(1, 112, 112, 96, 2), aligned, false));  // 4.6 MiB
  EXPECT_FALSE(depthwise_backward_data_streams(depthwise(2, 112, 112, 96, 1), aligned, false));  // stride 1
}

TEST(Conv2dDepthwise, TheLoopEachDirectionRunsIsNamedAsTheKernelsDecide) {
  // The cost model's variant feature (planner/features.cc): one shape per loop.
  using L = DepthwiseLoop;
  const ConvDirection fwd = ConvDirection::kForward, data = ConvDirection::kBackwardData,
                      weight = ConvDirection::kBackwardWeight;
  const ConvGeometry tiny = depthwise(8, 2, 2, 384, 1);    // 2x2 map
  EXPECT_EQ(depthwise_loop(tiny, fwd, false, false), L::kChannelUnits);
  EXPECT_EQ(depthwise_loop(tiny, fwd, /*has_epilogue=*/true, false), L::kPixelBlocks);
  EXPECT_EQ(depthwise_loop(tiny, data, false, false), L::kChannelUnits);
  EXPECT_EQ(depthwise_loop(tiny, weight, false, false), L::kChannelUnitSums);
  const ConvGeometry one = depthwise(8, 1, 1, 384, 1);     // one pixel
  EXPECT_EQ(depthwise_loop(one, fwd, false, false), L::kPixels);
  EXPECT_EQ(depthwise_loop(one, weight, false, false), L::kOnePixelSums);
  const ConvGeometry five = depthwise(2, 4, 4, 64, 1, 2, 5);  // 5x5 kernel on a 4x4 map
  EXPECT_EQ(depthwise_loop(five, fwd, false, false), L::kPixels);
  EXPECT_EQ(depthwise_loop(five, weight, false, false), L::kPixelSums);
  const ConvGeometry mid = depthwise(4, 28, 28, 192, 1);
  EXPECT_EQ(depthwise_loop(mid, fwd, false, false), L::kPixelBlocks);
  EXPECT_EQ(depthwise_loop(mid, data, false, false), L::kPixelBlocks);
  EXPECT_EQ(depthwise_loop(mid, weight, false, false), L::kPixelBlockSums);
  EXPECT_EQ(depthwise_loop(depthwise(4, 28, 28, 32, 1), fwd, false, false), L::kSlices3x3);
  EXPECT_EQ(depthwise_loop(depthwise(4, 28, 28, 32, 1), weight, false, false), L::kRowChunks3x3);
  EXPECT_EQ(depthwise_loop(depthwise(4, 28, 28, 64, 1, 2, 5), fwd, false, false), L::kSlicesAnyKernel);
  EXPECT_EQ(depthwise_loop(depthwise(4, 28, 28, 64, 1, 2, 5), weight, false, false), L::kRowChunksAnyKernel);
  EXPECT_EQ(depthwise_loop(depthwise(4, 14, 14, 576, 2), fwd, false, false), L::kColumnTiles);  // 7 outputs a row
  EXPECT_EQ(depthwise_loop(depthwise(4, 14, 14, 576, 2), data, false, false), L::kGather3x3Stride2);
  EXPECT_EQ(depthwise_loop(depthwise(2, 9, 8, 64, 2, 2, 5), data, false, false), L::kGatherAny);
  // Streaming exactly where depthwise_backward_data_streams says so for an aligned dx.
  alignas(64) static float aligned[16];
  for (const ConvGeometry& g : {depthwise(2, 112, 112, 96, 2), depthwise(1, 112, 112, 96, 2),
                                depthwise(2, 112, 112, 88, 2)})
    for (bool accumulate : {false, true})
      EXPECT_EQ(depthwise_loop(g, data, false, accumulate) == L::kGather3x3Stride2Streaming,
                depthwise_backward_data_streams(g, aligned, accumulate))
          << g.c << " channels, batch " << g.n << ", accumulate " << accumulate;
}

TEST(Conv2dDepthwise, StreamedAndUnstreamedBackwardDataMatchReference) {
  // Streamed (aligned), and the same sizes that must not stream: shifted off alignment, and C
  // not a multiple of 16 (88 = 5 x 16 + 8).
  check_all_directions(depthwise(2, 112, 112, 96, 2), 2);
  check_all_directions(depthwise(2, 112, 112, 96, 2), 2, /*offset=*/4);
  check_all_directions(depthwise(2, 112, 112, 88, 2), 2);
}

TEST(Conv2dDepthwise, BackwardWeightIsIdenticalOnOneAndTwoThreads) {
  // (40x40 stride 2, 72 channels: the weight gradient's column tiles of 8, 8 and 4 outputs.)
  for (const ConvGeometry& g : {depthwise(4, 56, 56, 144, 1), depthwise(8, 14, 14, 44, 2), depthwise(4, 40, 40, 72, 2),
                                depthwise(32, 2, 2, 384, 1),
                                depthwise(8, 7, 7, 960, 1), depthwise(32, 1, 1, 960, 1), depthwise(32, 2, 2, 200, 1)}) {
    std::vector<float> result[2];
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      const int64_t xs = g.n * g.h * g.w * g.c, ys = g.n * g.out_h * g.out_w * g.c;
      Buffer x(xs), dy(ys), dw(g.c * 9), db(g.c), workspace(depthwise_workspace_floats(g));
      x.fill_random(1), dy.fill_random(2);
      depthwise_backward_weight(pool.parallel(), g, dy.data(), x.data(), dw.data(), db.data(), false, false,
                                workspace.data());
      result[threads - 1] = dw.vec();
      const std::vector<float> dbv = db.vec();
      result[threads - 1].insert(result[threads - 1].end(), dbv.begin(), dbv.end());
    }
    ASSERT_EQ(result[0].size(), result[1].size());
    EXPECT_EQ(0, std::memcmp(result[0].data(), result[1].data(), result[0].size() * sizeof(float)))
        << g.n << "x" << g.h << "x" << g.w << "x" << g.c;
  }
}

// The weight gradient of g with dw or db alone (the other null and left untouched) and both,
// accumulating or not, against the reference; 1 and 2 threads bit-identical.
void check_weight_gradient_outputs(const ConvGeometry& g) {
  for (int outputs : {1, 2, 3})  // dw, db, both
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(testing::Message() << g.n << "x" << g.h << "x" << g.w << "x" << g.c << " k" << g.kh << " s" << g.sh
                                      << " p" << g.ph << " outputs " << outputs << (accumulate ? " accumulate" : ""));
      const int64_t xs = g.n * g.h * g.w * g.c, ys = g.n * g.out_h * g.out_w * g.c, ws = g.c * g.kh * g.kw;
      Buffer x(xs), dy(ys);
      x.fill_random(1), dy.fill_random(2);
      std::vector<float> expect_dw(ws), expect_db(g.c);
      {
        Buffer dw0(ws), db0(g.c);
        dw0.fill_random(7), db0.fill_random(8);
        expect_dw = dw0.vec(), expect_db = db0.vec();
      }
      const std::vector<float> start_dw = expect_dw, start_db = expect_db;
      conv2d_backward_weight_naive<float>(g, dy.data(), x.data(), expect_dw.data(), expect_db.data(), accumulate,
                                          accumulate);
      std::vector<float> got[2];
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        Buffer dw(ws), db(g.c), workspace(depthwise_workspace_floats(g));
        dw.fill_random(7), db.fill_random(8), workspace.fill_random(9);
        depthwise_backward_weight(pool.parallel(), g, dy.data(), x.data(), (outputs & 1) ? dw.data() : nullptr,
                                  (outputs & 2) ? db.data() : nullptr, accumulate, accumulate, workspace.data());
        if (outputs & 1) EXPECT_LT(max_error(dw.vec(), expect_dw), kTolerance) << "dw, threads " << threads;
        else EXPECT_EQ(dw.vec(), start_dw) << "dw written though null, threads " << threads;
        if (outputs & 2) EXPECT_LT(max_error(db.vec(), expect_db), kTolerance) << "db, threads " << threads;
        else EXPECT_EQ(db.vec(), start_db) << "db written though null, threads " << threads;
        got[threads - 1] = dw.vec();
        const std::vector<float> dbv = db.vec();
        got[threads - 1].insert(got[threads - 1].end(), dbv.begin(), dbv.end());
      }
      EXPECT_EQ(0, std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float))) << "1 vs 2 threads";
    }
}

// The weight gradient on tiny maps (the 1x1 map's per-channel sums straight into dw's read taps,
// the channel units of 2x2 .. 7x7 maps written straight to dw).
TEST(Conv2dDepthwise, TinyMapWeightGradientWithEitherOutputAlone) {
  for (const ConvGeometry& g : {depthwise(32, 1, 1, 960, 1), depthwise(5, 1, 1, 44, 1), depthwise(6, 2, 2, 384, 1),
                                depthwise(3, 2, 2, 40, 1), depthwise(7, 2, 2, 9, 2), depthwise(4, 3, 3, 52, 1, 2, 5),
                                depthwise(3, 2, 3, 24, 1, 2, 5), depthwise(32, 4, 4, 72, 1),
                                depthwise(2, 7, 7, 264, 1), depthwise(2, 14, 13, 280, 2), depthwise(2, 5, 7, 256, 1)})
    check_weight_gradient_outputs(g);
}

// The channels-innermost paths (3x3, C > 32 and a multiple of 16: the weight gradient at stride
// 1 or 2, the backward data at stride 1, the forward at stride 1 and at stride 2 with at least
// 16 outputs a row): interior pixels in blocks of 4, then 2,
// then 1 (rows of 4 .. 7 interior pixels), the border pixels with padding 1, none (padding 0)
// and two on each side (padding 2), several chunks of rows, 48 .. 160 channels (3 .. 10 tiles
// of 16); the weight gradient with dw or db alone.
TEST(Conv2dDepthwise, ChannelsInnermostPathsMatchReference) {
  std::vector<ConvGeometry> shapes;
  for (int64_t w : {6, 7, 8, 9}) shapes.push_back(depthwise(2, 5, w, 48, 1));
  for (const ConvGeometry& g : {depthwise(3, 11, 13, 64, 2), depthwise(2, 12, 18, 48, 2), depthwise(2, 9, 10, 160, 1, 0),
                                depthwise(2, 9, 11, 80, 1, 2), depthwise(2, 10, 15, 96, 2, 0),
                                depthwise(4, 28, 28, 144, 1),
                                // Stride 2, 16 .. 18 outputs a row (the forward by pixel too).
                                depthwise(2, 6, 35, 48, 2), depthwise(2, 5, 32, 64, 2), depthwise(2, 7, 36, 80, 2, 0),
                                // Tall, narrow maps: one interior pixel, or none (borders only).
                                depthwise(2, 20, 3, 48, 1), depthwise(2, 20, 2, 64, 1), depthwise(2, 20, 5, 48, 2)})
    shapes.push_back(g);
  for (const ConvGeometry& g : shapes) {
    check_all_directions(g, 2);
    check_weight_gradient_outputs(g);
  }
}

}  // namespace
}  // namespace edgetrain
