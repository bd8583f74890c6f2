// Winograd conv2d (ops/conv2d_winograd.h): both tiles, forward, backward data and backward
// weight, against the
// naive reference on awkward shapes (odd sizes, sizes not a multiple of the tile, padding 0..3,
// channels not a multiple of 16, several chunks of tiles, several weight blocks), with bias and
// accumulation; the dispatch from the conv2d op; and its rounding error against double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ops/conv2d.h"
#include "ops/conv2d_winograd.h"
#include "runtime/thread_pool.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::random_tensor;
using testing::run_op;

// The other fast-vs-reference conv tests bound max |a - b| / max(1, |b|) by 1e-4. With a few
// hundred channels the outputs reach tens and an output near 1 carries the absolute rounding of
// its large neighbours' sums (the float naive conv itself is off by ~1e-5 x RMS, Winograd alike),
// so these cases scale the error by the output's RMS instead of by each element.
constexpr double kTol = 1e-4;

double max_error_vs_scale(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0, sum_sq = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
    sum_sq += double(b[i]) * b[i];
  }
  return worst / std::max(1.0, std::sqrt(sum_sq / double(std::max<size_t>(1, b.size()))));
}

struct Case {
  const char* name;
  int64_t n, h, w, c, out_c;
  int pad;
};

const std::vector<Case> kCases = {
    {"odd_5x7_c3", 1, 5, 7, 3, 5, 1},
    {"9x6_c17_to_19", 2, 9, 6, 17, 19, 1},
    {"8x8_c16_to_32_p0", 2, 8, 8, 16, 32, 0},
    {"11x13_c20_to_33_p2", 1, 11, 13, 20, 33, 2},
    {"6x10_c32_to_16", 3, 6, 10, 32, 16, 1},
    {"3x3_out", 1, 3, 3, 4, 4, 1},
    {"4x4_p0_out2", 1, 4, 4, 8, 8, 0},
    {"5x5_p3", 1, 5, 5, 4, 6, 3},  // backward data pads by -1
    {"14x14_c48_to_40", 2, 14, 14, 48, 40, 1},
    {"blocks_c288_to_256", 1, 6, 6, 288, 256, 1},  // more than one block of output channels
    {"chunks_32x32_c64", 4, 32, 32, 64, 64, 1},   // several passes over each thread's tiles
    {"blocks_and_passes_c192", 17, 6, 6, 192, 192, 1},  // F(4x4): several blocks and passes
};

ConvGeometry geometry_of(const Case& k) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.pad_h = a.pad_w = k.pad;
  return conv2d_geometry({k.n, k.h, k.w, k.c}, {k.out_c, 3, 3, k.c}, a);
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  return random_tensor({n}, seed).data;
}

// Workspace guarded by a canary, so that writing past the planned size fails the test.
struct Workspace {
  explicit Workspace(size_t bytes) : floats(bytes / sizeof(float) + 64, kCanary), bytes(bytes) {}
  bool intact() const {
    return std::all_of(floats.begin() + static_cast<int64_t>(bytes / sizeof(float)), floats.end(),
                       [](float f) { return f == kCanary; });
  }
  static constexpr float kCanary = 12345.0f;
  std::vector<float> floats;
  size_t bytes;
};

std::vector<float> winograd_y(const ConvGeometry& g, int m, const std::vector<float>& x,
                              const std::vector<float>& w, const float* b, int threads) {
  ThreadPool pool(threads);
  Workspace ws(winograd_forward_workspace_bytes(g, m));
  std::vector<float> y(static_cast<size_t>(g.n * g.out_h * g.out_w * g.out_c), NAN);
  winograd_forward(pool.parallel(), g, m, x.data(), w.data(), b, y.data(), ws.floats.data(), ws.bytes);
  EXPECT_TRUE(ws.intact()) << "wrote past its workspace";
  return y;
}

std::vector<float> winograd_dx(const ConvGeometry& g, int m, const std::vector<float>& dy,
                               const std::vector<float>& w, std::vector<float> dx, bool accumulate,
                               int threads) {
  ThreadPool pool(threads);
  Workspace ws(winograd_backward_data_workspace_bytes(g, m));
  winograd_backward_data(pool.parallel(), g, m, dy.data(), w.data(), dx.data(), accumulate,
                         ws.floats.data(), ws.bytes);
  EXPECT_TRUE(ws.intact()) << "wrote past its workspace";
  return dx;
}

std::vector<float> winograd_dw(const ConvGeometry& g, int m, const std::vector<float>& dy,
                               const std::vector<float>& x, std::vector<float> dw, bool accumulate,
                               int threads) {
  ThreadPool pool(threads);
  Workspace ws(winograd_backward_weight_workspace_bytes(g, m));
  winograd_backward_weight(pool.parallel(), g, m, dy.data(), x.data(), dw.data(), accumulate,
                           ws.floats.data(), ws.bytes);
  EXPECT_TRUE(ws.intact()) << "wrote past its workspace";
  return dw;
}

void check_case(const Case& k, int m, int threads) {
  const ConvGeometry g = geometry_of(k);
  const std::string what = std::string(k.name) + " m=" + std::to_string(m) +
                           " threads=" + std::to_string(threads);
  const auto x = random_floats(g.n * g.h * g.w * g.c, 1);
  const auto w = random_floats(g.out_c * 9 * g.c, 2);
  const auto b = random_floats(g.out_c, 3);
  const auto dy = random_floats(g.n * g.out_h * g.out_w * g.out_c, 4);
  for (bool bias : {false, true}) {
    std::vector<float> ref(static_cast<size_t>(g.n * g.out_h * g.out_w * g.out_c));
    conv2d_forward_naive<float>(g, x.data(), w.data(), bias ? b.data() : nullptr, ref.data());
    EXPECT_LT(max_error_vs_scale(winograd_y(g, m, x, w, bias ? b.data() : nullptr, threads), ref), kTol)
        << what << " forward bias=" << bias;
  }
  for (bool accumulate : {false, true}) {
    // Not accumulating must ignore what dx held (NaN here); accumulating must add to it.
    std::vector<float> dx0 = accumulate ? random_floats(g.n * g.h * g.w * g.c, 5)
                                        : std::vector<float>(static_cast<size_t>(g.n * g.h * g.w * g.c), NAN);
    std::vector<float> ref = dx0;
    conv2d_backward_data_naive<float>(g, dy.data(), w.data(), ref.data(), accumulate);
    EXPECT_LT(max_error_vs_scale(winograd_dx(g, m, dy, w, dx0, accumulate, threads), ref), kTol)
        << what << " backward data accumulate=" << accumulate;
  }
  for (bool accumulate : {false, true}) {
    std::vector<float> dw0 = accumulate ? random_floats(g.out_c * 9 * g.c, 6)
                                        : std::vector<float>(static_cast<size_t>(g.out_c * 9 * g.c), NAN);
    std::vector<float> ref = dw0;
    conv2d_backward_weight_naive<float>(g, dy.data(), x.data(), ref.data(), nullptr, accumulate, false);
    EXPECT_LT(max_error_vs_scale(winograd_dw(g, m, dy, x, dw0, accumulate, threads), ref), kTol)
        << what << " backward weight accumulate=" << accumulate;
  }
}

TEST(Conv2dWinograd, F2MatchesReference) {
  for (const Case& k : kCases) check_case(k, 2, 2);
}

TEST(Conv2dWinograd, F4MatchesReference) {
  for (const Case& k : kCases) check_case(k, 4, 2);
}

// Big convs split their work (blocks of output channels, several passes over the tiles, both at
// once) where small ones need not: a small budget sends small convs down those routes.
TEST(Conv2dWinograd, MatchesReferenceWithBlocksAndPasses) {
  for (int64_t budget : {int64_t{20000}, int64_t{60000}, int64_t{150000}}) {
    set_winograd_budget_for_testing(budget);
    for (const char* name : {"9x6_c17_to_19", "14x14_c48_to_40", "chunks_32x32_c64", "blocks_c288_to_256"})
      for (const Case& k : kCases)
        if (k.name == std::string(name))
          for (int m : {2, 4}) check_case(k, m, 2);
  }
  set_winograd_budget_for_testing(0);
}

TEST(Conv2dWinograd, OneAndThreeThreadsMatchReference) {
  for (const char* name : {"9x6_c17_to_19", "blocks_c288_to_256", "chunks_32x32_c64"})
    for (const Case& k : kCases)
      if (k.name == std::string(name))
        for (int threads : {1, 3}) check_case(k, 4, threads);
}

// Whatever the workspace held before (a step's arena is reused by other nodes), the results are
// the same bit for bit, and they do not depend on the number of threads either.
TEST(Conv2dWinograd, ResultsDependOnNeitherWorkspaceContentsNorThreads) {
  for (int m : {2, 4})
    for (const Case& k : kCases) {
      const ConvGeometry g = geometry_of(k);
      const auto x = random_floats(g.n * g.h * g.w * g.c, 1), w = random_floats(g.out_c * 9 * g.c, 2);
      const auto b = random_floats(g.out_c, 3), dy = random_floats(g.n * g.out_h * g.out_w * g.out_c, 4);
      std::vector<float> y[3], dx[3], dw[3];
      for (int run = 0; run < 3; ++run) {
        ThreadPool pool(run == 2 ? 1 : 2);
        const float junk = run == 0 ? 0.0f : NAN;
        std::vector<float> wsf(winograd_forward_workspace_bytes(g, m) / sizeof(float), junk);
        y[run].assign(static_cast<size_t>(g.n * g.out_h * g.out_w * g.out_c), 0.0f);
        winograd_forward(pool.parallel(), g, m, x.data(), w.data(), b.data(), y[run].data(), wsf.data(),
                         wsf.size() * sizeof(float));
        std::vector<float> wsb(winograd_backward_data_workspace_bytes(g, m) / sizeof(float), junk);
        dx[run].assign(static_cast<size_t>(g.n * g.h * g.w * g.c), 0.0f);
        winograd_backward_data(pool.parallel(), g, m, dy.data(), w.data(), dx[run].data(), false, wsb.data(),
                               wsb.size() * sizeof(float));
        std::vector<float> wsw(winograd_backward_weight_workspace_bytes(g, m) / sizeof(float), junk);
        dw[run].assign(static_cast<size_t>(g.out_c * 9 * g.c), 0.0f);
        winograd_backward_weight(pool.parallel(), g, m, dy.data(), x.data(), dw[run].data(), false,
                                 wsw.data(), wsw.size() * sizeof(float));
      }
      for (int run = 1; run < 3; ++run) {
        EXPECT_EQ(std::memcmp(y[run].data(), y[0].data(), y[0].size() * sizeof(float)), 0) << k.name << " m=" << m << " run " << run;
        EXPECT_EQ(std::memcmp(dx[run].data(), dx[0].data(), dx[0].size() * sizeof(float)), 0) << k.name << " m=" << m << " run " << run;
        EXPECT_EQ(std::memcmp(dw[run].data(), dw[0].data(), dw[0].size() * sizeof(float)), 0) << k.name << " m=" << m << " run " << run;
      }
    }
}

// The chunk and block cases above must really exercise several chunks and blocks: the workspace
// of a case with one chunk and one block holds all tiles and all transformed weights.
TEST(Conv2dWinograd, WorkspaceIsBoundedByChunksAndBlocks) {
  for (int m : {2, 4}) {
    const int64_t a2 = (m + 2) * (m + 2);
    for (const char* name : {"blocks_c288_to_256", "chunks_32x32_c64"})
      for (const Case& k : kCases) {
        if (k.name != std::string(name)) continue;
        const ConvGeometry g = geometry_of(k);
        const int64_t tiles = g.n * ((g.out_h + m - 1) / m) * ((g.out_w + m - 1) / m);
        const int64_t whole = a2 * (g.c * g.out_c + tiles * (g.c + g.out_c));
        const int64_t transposed = 9 * g.c * g.out_c;  // forward's copy of the weights
        EXPECT_LT(winograd_forward_workspace_bytes(g, m), size_t(whole + transposed) * sizeof(float))
            << name << " m=" << m;
        EXPECT_LT(winograd_backward_data_workspace_bytes(g, m), size_t(whole) * sizeof(float)) << name << " m=" << m;
      }
  }
  // A ResNet-18 layer4 conv at 224x224, batch 64: bounded whatever the batch.
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.pad_h = a.pad_w = 1;
  const ConvGeometry g = conv2d_geometry({64, 7, 7, 512}, {512, 3, 3, 512}, a);
  EXPECT_LE(winograd_forward_workspace_bytes(g, 4), size_t{48} << 20);
  EXPECT_LE(winograd_backward_data_workspace_bytes(g, 4), size_t{48} << 20);
}

// ---------------------------------------------------------------------------------------------
// Dispatch: the conv2d op runs Winograd for dense 3x3 stride-1 convs on images that are not tiny.

TEST(Conv2dWinograd, ChoosesTileOnlyForDense3x3Stride1) {
  auto tile = [](Shape x, int64_t out_c, int k, int stride, int pad, int groups) {
    ConvAttrs a;
    a.kernel_h = a.kernel_w = k;
    a.stride_h = a.stride_w = stride;
    a.pad_h = a.pad_w = pad;
    a.groups = groups;
    return winograd_tile(conv2d_geometry(x, {out_c, k, k, x.c() / groups}, a));
  };
  EXPECT_NE(tile({8, 56, 56, 64}, 64, 3, 1, 1, 1), 0);
  EXPECT_NE(tile({16, 7, 7, 512}, 512, 3, 1, 1, 1), 0);
  EXPECT_EQ(tile({8, 56, 56, 64}, 64, 3, 2, 1, 1), 0);     // strided
  EXPECT_EQ(tile({8, 56, 56, 64}, 64, 3, 1, 1, 64), 0);    // depthwise
  EXPECT_EQ(tile({8, 56, 56, 64}, 64, 3, 1, 1, 2), 0);     // grouped
  EXPECT_EQ(tile({8, 56, 56, 64}, 64, 1, 1, 0, 1), 0);     // 1x1
  EXPECT_EQ(tile({8, 56, 56, 64}, 64, 5, 1, 2, 1), 0);     // 5x5
  EXPECT_EQ(tile({8, 1, 1, 512}, 512, 3, 1, 1, 1), 0);     // tiny images: im2col
  EXPECT_EQ(tile({8, 2, 2, 256}, 256, 3, 1, 1, 1), 0);
  EXPECT_EQ(tile({8, 28, 28, 1}, 8, 3, 1, 1, 1), 0);       // few channels: im2col
  EXPECT_EQ(tile({8, 28, 28, 64}, 8, 3, 1, 1, 1), 0);
}

// Forward and backward data take Winograd only where the batch's output pixels (weighted by the
// share of its tiles they fill) reach three quarters of the output channels; the weight gradient
// from fewer (winograd_weight_tile), as measured on ResNet-18's shapes at small batches.
TEST(Conv2dWinograd, FewPixelsPerOutputChannelTakeIm2colExceptForTheWeightGradient) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.stride_h = a.stride_w = 1;
  a.pad_h = a.pad_w = 1;
  a.groups = 1;
  auto geometry = [&](int64_t n, int64_t hw, int64_t c) { return conv2d_geometry({n, hw, hw, c}, {c, 3, 3, c}, a); };
  struct Want {
    int64_t n, hw, c;
    bool forward;  // winograd_tile != 0
  };
  for (const Want& w : {Want{1, 4, 512, false}, Want{16, 4, 512, false}, Want{8, 7, 512, false}, Want{16, 7, 512, true},
                        Want{2, 8, 256, false}, Want{4, 8, 256, true}, Want{8, 6, 256, false}, Want{16, 6, 256, true},
                        Want{16, 5, 512, false}, Want{1, 16, 128, true}, Want{1, 32, 64, true}}) {
    const ConvGeometry g = geometry(w.n, w.hw, w.c);
    EXPECT_EQ(winograd_tile(g) != 0, w.forward) << w.n << " x " << w.hw << "x" << w.hw << " x " << w.c;
    EXPECT_EQ(winograd_weight_tile(g), 4) << w.n << " x " << w.hw << "x" << w.hw << " x " << w.c;
    EXPECT_EQ(conv2d_kernel_path(g, ConvDirection::kForward) == ConvKernelPath::kWinogradF4, w.forward);
    EXPECT_NE(conv2d_kernel_path(g, ConvDirection::kBackwardWeight), ConvKernelPath::kIm2colPlain);
  }
  // A forced tile (benchmarks) is taken whatever the batch.
  set_winograd_policy(WinogradPolicy::kF4);
  EXPECT_EQ(winograd_tile(geometry(1, 4, 512)), 4);
  set_winograd_policy(WinogradPolicy::kAuto);
}

TEST(Conv2dWinograd, OpDispatchMatchesReference) {
  for (const Case& k : kCases) {
    const ConvGeometry g = geometry_of(k);
    if (winograd_tile(g) == 0) continue;
    Attrs a;
    a.conv.kernel_h = a.conv.kernel_w = 3;
    a.conv.pad_h = a.conv.pad_w = k.pad;
    const Shape xs{g.n, g.h, g.w, g.c}, ws{g.out_c, 3, 3, g.c}, ys{g.n, g.out_h, g.out_w, g.out_c};
    std::vector<HostTensor> in = {random_tensor(xs, 11), random_tensor(ws, 12), random_tensor({g.out_c}, 13)};
    auto fast = run_op(OpKind::kConv2d, a, in, {HostTensor{ys, {}}}, false);
    auto ref = run_op(OpKind::kConv2d, a, in, {HostTensor{ys, {}}}, true);
    EXPECT_LT(max_error_vs_scale(fast[0].data, ref[0].data), kTol) << k.name;
    a.accumulate_mask = 1;
    std::vector<HostTensor> bin = {random_tensor(ys, 21), random_tensor(ws, 22)};
    auto fast_dx = run_op(OpKind::kConv2dBackwardData, a, bin, {random_tensor(xs, 23)}, false);
    auto ref_dx = run_op(OpKind::kConv2dBackwardData, a, bin, {random_tensor(xs, 23)}, true);
    EXPECT_LT(max_error_vs_scale(fast_dx[0].data, ref_dx[0].data), kTol) << k.name;
  }
}

// With Winograd off the same convs take im2col, which must stay right: it still runs backward
// weight and tiny images, and benchmarks compare against it.
TEST(Conv2dWinograd, Im2colWithWinogradOffMatchesReference) {
  set_winograd_policy(WinogradPolicy::kOff);
  for (const Case& k : kCases) {
    const ConvGeometry g = geometry_of(k);
    Attrs a;
    a.conv.kernel_h = a.conv.kernel_w = 3;
    a.conv.pad_h = a.conv.pad_w = k.pad;
    const Shape xs{g.n, g.h, g.w, g.c}, ws{g.out_c, 3, 3, g.c}, ys{g.n, g.out_h, g.out_w, g.out_c};
    std::vector<HostTensor> in = {random_tensor(xs, 11), random_tensor(ws, 12), random_tensor({g.out_c}, 13)};
    auto fast = run_op(OpKind::kConv2d, a, in, {HostTensor{ys, {}}}, false);
    auto ref = run_op(OpKind::kConv2d, a, in, {HostTensor{ys, {}}}, true);
    EXPECT_LT(max_error_vs_scale(fast[0].data, ref[0].data), kTol) << k.name;
    std::vector<HostTensor> bin = {random_tensor(ys, 21), random_tensor(ws, 22)};
    auto fast_dx = run_op(OpKind::kConv2dBackwardData, a, bin, {HostTensor{xs, {}}}, false);
    auto ref_dx = run_op(OpKind::kConv2dBackwardData, a, bin, {HostTensor{xs, {}}}, true);
    EXPECT_LT(max_error_vs_scale(fast_dx[0].data, ref_dx[0].data), kTol) << k.name;
  }
  set_winograd_policy(WinogradPolicy::kAuto);
}

// ---------------------------------------------------------------------------------------------
// Rounding. Error of float results against the double naive conv, relative to the output's
// RMS, at ResNet-like shapes with inputs and weights uniform in [-1, 1]. Measured (C = 64 / 256):
// float naive 3.4e-6 / 7.0e-6, im2col (OpenBLAS) 1.9e-6 / 2.4e-6, F(2x2) 0.9e-6 / 3.0e-6,
// F(4x4) 5.2e-6 / 5.7e-6 (with Lavin's points 0, +-1, +-2 it was 1.1e-5 / 1.9e-5). The bound
// fails if a transform is wrong or rounds far worse than the plain float sum.

double error_vs_double(const ConvGeometry& g, const std::vector<float>& got,
                       const std::vector<float>& x, const std::vector<float>& w) {
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
  std::vector<double> ref(got.size());
  conv2d_forward_naive<double>(g, xd.data(), wd.data(), nullptr, ref.data());
  double worst = 0, sum_sq = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - ref[i]));
    sum_sq += ref[i] * ref[i];
  }
  return worst / std::sqrt(sum_sq / double(ref.size()));
}

TEST(Conv2dWinograd, RoundingErrorRelativeToOutputScale) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.pad_h = a.pad_w = 1;
  for (int64_t c : {64, 256}) {
    const ConvGeometry g = conv2d_geometry({1, 12, 12, c}, {c, 3, 3, c}, a);
    const auto x = random_floats(g.n * g.h * g.w * c, 31), w = random_floats(c * 9 * c, 32);
    std::vector<float> naive(static_cast<size_t>(g.n * g.out_h * g.out_w * c));
    conv2d_forward_naive<float>(g, x.data(), w.data(), nullptr, naive.data());
    const double e_naive = error_vs_double(g, naive, x, w);
    set_winograd_policy(WinogradPolicy::kOff);
    Attrs at;
    at.conv = a;
    const Shape xs{g.n, g.h, g.w, c}, ws{c, 3, 3, c}, ys{g.n, g.out_h, g.out_w, c};
    auto im2col = run_op(OpKind::kConv2d, at, {HostTensor{xs, x}, HostTensor{ws, w}, testing::absent({c})},
                         {HostTensor{ys, {}}}, false);
    set_winograd_policy(WinogradPolicy::kAuto);
    const double e_im2col = error_vs_double(g, im2col[0].data, x, w);
    const double e2 = error_vs_double(g, winograd_y(g, 2, x, w, nullptr, 2), x, w);
    const double e4 = error_vs_double(g, winograd_y(g, 4, x, w, nullptr, 2), x, w);
    std::printf("C=%lld max error / output RMS: naive float %.2e, im2col %.2e, F(2x2) %.2e, F(4x4) %.2e\n",
                static_cast<long long>(c), e_naive, e_im2col, e2, e4);
    EXPECT_LT(e2, 1e-5) << "C=" << c;
    EXPECT_LT(e4, 1e-5) << "C=" << c;
  }
}

// The weight gradient sums over every pixel of the batch: same measure, dw against the double
// naive gradient, relative to dw's RMS. Measured (C = 64, 4 images of 16 x 16): float naive
// 4.1e-6, im2col 1.7e-6, F(3x3, 4x4) 6.6e-6.
TEST(Conv2dWinograd, WeightGradientRoundingErrorRelativeToScale) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.pad_h = a.pad_w = 1;
  const ConvGeometry g = conv2d_geometry({4, 16, 16, 64}, {64, 3, 3, 64}, a);
  const auto x = random_floats(g.n * g.h * g.w * g.c, 41), dy = random_floats(g.n * g.out_h * g.out_w * g.out_c, 42);
  std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end()), ref(static_cast<size_t>(64 * 9 * 64));
  conv2d_backward_weight_naive<double>(g, dyd.data(), xd.data(), ref.data(), nullptr, false, false);
  auto error = [&](const std::vector<float>& got) {
    double worst = 0, sum_sq = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      worst = std::max(worst, std::fabs(got[i] - ref[i]));
      sum_sq += ref[i] * ref[i];
    }
    return worst / std::sqrt(sum_sq / double(ref.size()));
  };
  std::vector<float> naive(ref.size());
  conv2d_backward_weight_naive<float>(g, dy.data(), x.data(), naive.data(), nullptr, false, false);
  set_winograd_policy(WinogradPolicy::kOff);
  Attrs at;
  at.conv = a;
  const Shape xs{g.n, g.h, g.w, g.c}, ws{64, 3, 3, 64}, ys{g.n, g.out_h, g.out_w, 64};
  auto im2col = run_op(OpKind::kConv2dBackwardWeight, at, {HostTensor{ys, dy}, HostTensor{xs, x}},
                       {HostTensor{ws, {}}, testing::absent({64})}, false);
  set_winograd_policy(WinogradPolicy::kAuto);
  const double e4 = error(winograd_dw(g, 4, dy, x, std::vector<float>(ref.size()), false, 2));
  std::printf("dw max error / RMS: naive float %.2e, im2col %.2e, F(3x3, 4x4) %.2e\n", error(naive),
              error(im2col[0].data), e4);
  EXPECT_LT(e4, 1e-5);
}

}  // namespace
}  // namespace edgetrain
