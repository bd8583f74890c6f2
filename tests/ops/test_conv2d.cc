// conv2d: the naive backward against finite differences (double), every fast path against the
// naive reference (float) across accumulate / null-output combinations, and the shape rule's
// error messages.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ops/conv2d.h"
#include "ops/conv2d_im2col.h"
#include "ops/conv2d_winograd.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::absent;
using testing::HostTensor;
using testing::max_rel_error;
using testing::random_tensor;
using testing::run_op;

struct ConvCase {
  const char* name;
  int64_t n, h, w, c, out_c;
  int kh, kw, sh, sw, ph, pw, groups;
};

ConvAttrs attrs_of(const ConvCase& k) {
  ConvAttrs a;
  a.kernel_h = k.kh, a.kernel_w = k.kw, a.stride_h = k.sh, a.stride_w = k.sw;
  a.pad_h = k.ph, a.pad_w = k.pw, a.groups = k.groups;
  return a;
}
Shape x_shape(const ConvCase& k) { return {k.n, k.h, k.w, k.c}; }
Shape w_shape(const ConvCase& k) { return {k.out_c, k.kh, k.kw, k.c / k.groups}; }

// Small cases: every path (im2col, pointwise, depthwise, grouped) and odd geometry.
const std::vector<ConvCase> kSmall = {
    {"3x3_s1_p1", 2, 5, 6, 3, 4, 3, 3, 1, 1, 1, 1, 1},
    {"3x3_s2_p1", 2, 7, 5, 3, 5, 3, 3, 2, 2, 1, 1, 1},
    {"3x3_s2_p0_odd", 2, 7, 5, 4, 3, 3, 3, 2, 2, 0, 0, 1},
    {"1x1", 2, 4, 3, 5, 6, 1, 1, 1, 1, 0, 0, 1},
    {"1x1_s2", 2, 5, 5, 4, 3, 1, 1, 2, 2, 0, 0, 1},
    {"5x5_p2", 2, 6, 5, 3, 4, 5, 5, 1, 1, 2, 2, 1},
    {"3x1_s2x1_p1x0", 2, 7, 4, 3, 4, 3, 1, 2, 1, 1, 0, 1},
    {"groups2_3x3", 2, 5, 5, 4, 6, 3, 3, 1, 1, 1, 1, 2},
    {"groups2_1x1", 2, 4, 4, 6, 4, 1, 1, 1, 1, 0, 0, 2},
    {"depthwise_3x3_s1", 2, 5, 6, 5, 5, 3, 3, 1, 1, 1, 1, 5},
    {"depthwise_3x3_s2", 2, 7, 5, 6, 6, 3, 3, 2, 2, 1, 1, 6},
    {"depthwise_multiplier2", 2, 5, 5, 3, 6, 3, 3, 1, 1, 1, 1, 3},
};

// Real-sized cases for fast vs reference only.
const std::vector<ConvCase> kLarge = {
    {"3x3_c32", 2, 14, 14, 32, 32, 3, 3, 1, 1, 1, 1, 1},
    {"3x3_c64_to_16", 2, 16, 16, 64, 16, 3, 3, 1, 1, 1, 1, 1},  // col2im splits over 2 threads
    {"3x3_s2_c32_64", 2, 14, 14, 32, 64, 3, 3, 2, 2, 1, 1, 1},
    {"stem_3x3_s2", 2, 32, 32, 3, 32, 3, 3, 2, 2, 1, 1, 1},
    // Direct weight gradient: a kernel row's 21 (kx, ci) entries in tasks of 12 and 9, 16 + 8
    // output channels; and
    // several chunks of rows with a scalar channel tail.
    {"stem_7x7_s2_c24", 2, 20, 20, 3, 24, 7, 7, 2, 2, 3, 3, 1},
    {"stem_3x3_s2_chunks", 8, 32, 32, 3, 41, 3, 3, 2, 2, 1, 1, 1},
    // 4 input channels: a kernel row's 28 entries in tasks of 12, 12 and 4; 32 + 16 + 4 channels.
    {"stem_7x7_s2_c4_to_52", 2, 17, 19, 4, 52, 7, 7, 2, 2, 3, 3, 1},
    {"depthwise_c48_s2", 2, 14, 14, 48, 48, 3, 3, 2, 2, 1, 1, 48},
    {"depthwise_c48_s1", 2, 14, 14, 48, 48, 3, 3, 1, 1, 1, 1, 48},
    // Channel slices of 16, 8 and single channels; maps with no interior; odd strides/sizes;
    // the general path (5x5, no padding).
    {"depthwise_c24_s1", 3, 9, 11, 24, 24, 3, 3, 1, 1, 1, 1, 24},
    {"depthwise_c64_chunks", 4, 16, 16, 64, 64, 3, 3, 1, 1, 1, 1, 64},  // 4 chunks of 2 groups of rows
    {"depthwise_c44_s2_odd", 2, 9, 7, 44, 44, 3, 3, 2, 2, 1, 1, 44},
    {"depthwise_c20_2x2map", 4, 2, 2, 20, 20, 3, 3, 1, 1, 1, 1, 20},
    {"depthwise_c32_1x1map", 5, 1, 1, 32, 32, 3, 3, 1, 1, 1, 1, 32},
    {"depthwise_c16_5x5_p0", 2, 9, 8, 16, 16, 5, 5, 1, 1, 0, 0, 16},
    {"depthwise_c24_5x5_s2_p2", 2, 9, 9, 24, 24, 5, 5, 2, 2, 2, 2, 24},
    {"1x1_64_96", 2, 14, 14, 64, 96, 1, 1, 1, 1, 0, 0, 1},
    {"groups4_3x3", 2, 14, 14, 32, 32, 3, 3, 1, 1, 1, 1, 4},
};

// Small feature maps where many kernel taps read only padding (ResNet-18 on 32x32 images has
// 8x8, 4x4, 2x2 and 1x1 maps): every tap-pruning plan of the im2col path, every class of output
// pixel (corners, edges, interior, pixels that see only padding), views of the input instead of
// columns, several chunks of images, groups, odd channel counts.
const std::vector<ConvCase> kPadded = {
    {"1x1map_3x3_p1", 3, 1, 1, 20, 12, 3, 3, 1, 1, 1, 1, 1},
    {"2x2map_3x3_p1", 3, 2, 2, 20, 12, 3, 3, 1, 1, 1, 1, 1},
    {"3x3map_3x3_p1", 2, 3, 3, 20, 12, 3, 3, 1, 1, 1, 1, 1},
    {"4x4map_3x3_p1", 2, 4, 4, 20, 12, 3, 3, 1, 1, 1, 1, 1},
    {"8x8map_3x3_p1", 2, 8, 8, 5, 7, 3, 3, 1, 1, 1, 1, 1},
    {"4x4to2x2_s2", 3, 4, 4, 20, 24, 3, 3, 2, 2, 1, 1, 1},
    {"2x2to1x1_s2", 3, 2, 2, 20, 24, 3, 3, 2, 2, 1, 1, 1},
    {"8x8to4x4_s2", 2, 8, 8, 6, 9, 3, 3, 2, 2, 1, 1, 1},
    {"stem_7x7_s2_p3", 2, 12, 11, 3, 8, 7, 7, 2, 2, 3, 3, 1},
    {"7x7_p3_on_2x2", 2, 2, 2, 5, 6, 7, 7, 1, 1, 3, 3, 1},
    {"1x1_s2_on_2x2", 3, 2, 2, 20, 24, 1, 1, 2, 2, 0, 0, 1},
    {"1x1_p1_border_sees_padding", 2, 3, 3, 5, 6, 1, 1, 1, 1, 1, 1, 1},
    {"3x3_p2_on_1x1", 2, 1, 1, 4, 5, 3, 3, 1, 1, 2, 2, 1},
    {"batch1_2x2map", 1, 2, 2, 20, 12, 3, 3, 1, 1, 1, 1, 1},
    {"1x5map", 2, 1, 5, 6, 7, 3, 3, 1, 1, 1, 1, 1},
    {"5x1map_3x1_s2", 2, 5, 1, 6, 7, 3, 1, 2, 1, 1, 0, 1},
    {"3x5map_5x3_p2x1", 2, 3, 5, 4, 5, 5, 3, 1, 1, 2, 1, 1},
    {"groups2_2x2map", 3, 2, 2, 8, 6, 3, 3, 1, 1, 1, 1, 2},
    {"groups2_1x1map", 3, 1, 1, 8, 6, 3, 3, 1, 1, 1, 1, 2},
    {"groups2_4x4to2x2_s2", 2, 4, 4, 6, 4, 3, 3, 2, 2, 1, 1, 2},
    {"1x1map_300_images", 300, 1, 1, 4, 5, 3, 3, 1, 1, 1, 1, 1},  // several chunks
    {"2x2map_300_images", 300, 2, 2, 3, 4, 3, 3, 1, 1, 1, 1, 1},
    // Large enough that the GEMMs of a block are split between threads: along output channels
    // (few rows) and along rows (many rows).
    {"2x2map_split_channels", 32, 2, 2, 128, 160, 3, 3, 1, 1, 1, 1, 1},
    {"4x4map_split_rows", 32, 4, 4, 64, 48, 3, 3, 1, 1, 1, 1, 1},
    {"1x1map_split", 32, 1, 1, 512, 160, 3, 3, 1, 1, 1, 1, 1},
};

// Forces a tap-pruning plan for the lifetime of the guard.
struct ForcePruning {
  explicit ForcePruning(TapPruning mode) { set_tap_pruning_for_testing(mode); }
  ~ForcePruning() { set_tap_pruning_for_testing(TapPruning::kAuto); }
};

const char* pruning_name(TapPruning mode) {
  switch (mode) {
    case TapPruning::kAuto: return "auto";
    case TapPruning::kNone: return "none";
    case TapPruning::kGlobal: return "global";
    case TapPruning::kClasses: return "classes";
  }
  return "?";
}

const ConvCase& large_case(const std::string& name) {
  for (const ConvCase& k : kLarge)
    if (name == k.name) return k;
  ADD_FAILURE() << "no case " << name;
  return kLarge[0];
}

// ---------------------------------------------------------------------------------------------
// (a) Gradient checks of the double naive kernels.

double gradient_error(const ConvCase& k, bool with_bias) {
  const ConvGeometry g = conv2d_geometry(x_shape(k), w_shape(k), attrs_of(k));
  const size_t y_size = static_cast<size_t>(g.n * g.out_h * g.out_w * g.out_c);
  std::vector<std::vector<double>> inputs = {
      testing::random_doubles(static_cast<size_t>(x_shape(k).numel()), 1),
      testing::random_doubles(static_cast<size_t>(w_shape(k).numel()), 2),
      testing::random_doubles(static_cast<size_t>(k.out_c), 3)};
  auto forward = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(y_size);
    conv2d_forward_naive<double>(g, in[0].data(), in[1].data(), with_bias ? in[2].data() : nullptr,
                                 y.data());
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> dx(in[0].size()), dw(in[1].size()), db(in[2].size());
    conv2d_backward_data_naive<double>(g, dy.data(), in[1].data(), dx.data(), false);
    conv2d_backward_weight_naive<double>(g, dy.data(), in[0].data(), dw.data(),
                                         with_bias ? db.data() : nullptr, false, false);
    std::vector<std::vector<double>> grads = {dx, dw};
    if (with_bias) grads.push_back(db);
    return grads;
  };
  std::vector<int> wrt = {0, 1};
  if (with_bias) wrt.push_back(2);
  return testing::gradient_check(inputs, wrt, forward, backward);
}

TEST(Conv2dGradient, NaiveBackwardMatchesFiniteDifferencesWithoutBias) {
  for (const ConvCase& k : kSmall) EXPECT_LT(gradient_error(k, false), 1e-6) << k.name;
}

TEST(Conv2dGradient, NaiveBackwardMatchesFiniteDifferencesWithBias) {
  for (const ConvCase& k : kSmall) EXPECT_LT(gradient_error(k, true), 1e-6) << k.name;
}

TEST(Conv2dGradient, NaiveForwardMatchesHandComputedValue) {
  // 1 image 2x2x1, 2x2 kernel of ones, pad 0: the output is the sum of the input plus bias.
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 2;
  const ConvGeometry g = conv2d_geometry({1, 2, 2, 1}, {1, 2, 2, 1}, a);
  const double x[] = {1, 2, 3, 4}, w[] = {1, 1, 1, 1}, b[] = {0.5};
  double y = 0;
  conv2d_forward_naive<double>(g, x, w, b, &y);
  EXPECT_DOUBLE_EQ(y, 10.5);
}

// ---------------------------------------------------------------------------------------------
// (b) Fast kernels against the reference.

constexpr double kTol = 1e-4;

Attrs attrs_with(const ConvCase& k, uint32_t accumulate_mask = 0) {
  Attrs a;
  a.conv = attrs_of(k);
  a.accumulate_mask = accumulate_mask;
  return a;
}

Shape y_shape(const ConvCase& k) {
  return conv2d_output_shape(x_shape(k), w_shape(k), attrs_of(k)).value();
}

void check_forward(const ConvCase& k, bool with_bias, int threads = 2) {
  std::vector<HostTensor> in = {random_tensor(x_shape(k), 11), random_tensor(w_shape(k), 12),
                                with_bias ? random_tensor({k.out_c}, 13) : absent({k.out_c})};
  const Attrs a = attrs_with(k);
  auto fast = run_op(OpKind::kConv2d, a, in, {HostTensor{y_shape(k), {}}}, false, threads);
  auto ref = run_op(OpKind::kConv2d, a, in, {HostTensor{y_shape(k), {}}}, true);
  EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), kTol) << k.name << " bias=" << with_bias;
}

void check_backward_data(const ConvCase& k, bool accumulate, int threads = 2) {
  std::vector<HostTensor> in = {random_tensor(y_shape(k), 21), random_tensor(w_shape(k), 22)};
  HostTensor dx = accumulate ? random_tensor(x_shape(k), 23) : HostTensor{x_shape(k), {}};
  const Attrs a = attrs_with(k, accumulate ? 1u : 0u);
  auto fast = run_op(OpKind::kConv2dBackwardData, a, in, {dx}, false, threads);
  auto ref = run_op(OpKind::kConv2dBackwardData, a, in, {dx}, true);
  EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), kTol) << k.name << " accumulate=" << accumulate;
}

// want_dw / want_db: whether the output is present; mask: accumulate_mask.
void check_backward_weight(const ConvCase& k, bool want_dw, bool want_db, uint32_t mask,
                           int threads = 2) {
  std::vector<HostTensor> in = {random_tensor(y_shape(k), 31), random_tensor(x_shape(k), 32)};
  // Outputs start from random values: accumulation must add to them, overwriting ignore them.
  HostTensor dw = !want_dw ? absent(w_shape(k)) : random_tensor(w_shape(k), 33);
  HostTensor db = !want_db ? absent({k.out_c}) : random_tensor({k.out_c}, 34);
  const Attrs a = attrs_with(k, mask);
  auto fast = run_op(OpKind::kConv2dBackwardWeight, a, in, {dw, db}, false, threads);
  auto ref = run_op(OpKind::kConv2dBackwardWeight, a, in, {dw, db}, true);
  const std::string what = std::string(k.name) + " dw=" + std::to_string(want_dw) +
                           " db=" + std::to_string(want_db) + " mask=" + std::to_string(mask);
  if (want_dw) {
    EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), kTol) << what << " (dw)";
  }
  if (want_db) {
    EXPECT_LT(max_rel_error(fast[1].data, ref[1].data), kTol) << what << " (db)";
  }
}

void check_all_directions(const ConvCase& k) {
  for (bool bias : {false, true}) check_forward(k, bias);
  for (bool acc : {false, true}) check_backward_data(k, acc);
  for (uint32_t mask : {0u, 1u, 2u, 3u}) check_backward_weight(k, true, true, mask);
  for (uint32_t mask : {0u, 2u}) check_backward_weight(k, false, true, mask);  // frozen weight
  for (uint32_t mask : {0u, 1u}) check_backward_weight(k, true, false, mask);  // no bias
}

TEST(Conv2dFast, MatchesReferenceOnSmallCases) {
  for (const ConvCase& k : kSmall) check_all_directions(k);
}

TEST(Conv2dFast, MatchesReferenceOnLayerSizedCases) {
  for (const ConvCase& k : kLarge) check_all_directions(k);
}

TEST(Conv2dFast, EveryTapPruningPlanMatchesReferenceOnPaddedSmallMaps) {
  for (TapPruning mode : {TapPruning::kAuto, TapPruning::kNone, TapPruning::kGlobal, TapPruning::kClasses}) {
    ForcePruning force(mode);
    SCOPED_TRACE(pruning_name(mode));
    for (const ConvCase& k : kPadded) check_all_directions(k);
  }
}

TEST(Conv2dFast, EveryTapPruningPlanMatchesReferenceOnSmallAndLayerSizedCases) {
  for (TapPruning mode : {TapPruning::kNone, TapPruning::kGlobal, TapPruning::kClasses}) {
    ForcePruning force(mode);
    SCOPED_TRACE(pruning_name(mode));
    for (const ConvCase& k : kSmall) check_all_directions(k);
    for (const ConvCase& k : kLarge) check_all_directions(k);
  }
}

TEST(Conv2dFast, TapPruningPlansMatchReferenceWithOneAndThreeThreads) {
  for (TapPruning mode : {TapPruning::kGlobal, TapPruning::kClasses}) {
    ForcePruning force(mode);
    SCOPED_TRACE(pruning_name(mode));
    for (const char* name : {"2x2map_split_channels", "4x4map_split_rows", "stem_7x7_s2_p3"}) {
      const ConvCase* k = nullptr;
      for (const ConvCase& c : kPadded)
        if (std::string(c.name) == name) k = &c;
      ASSERT_NE(k, nullptr) << name;
      for (int threads : {1, 3}) {
        SCOPED_TRACE(threads);
        check_forward(*k, true, threads);
        check_backward_data(*k, false, threads);
        check_backward_weight(*k, true, true, 0u, threads);
        check_backward_weight(*k, true, false, 1u, threads);
      }
    }
  }
}

TEST(Conv2dFast, AutoTapPruningPlansOfResNet18) {
  // (input side, channels in, channels out, kernel, stride, pad) -> plan at batch 32.
  struct Layer {
    int64_t side, c, out_c;
    int k, s, p;
    TapPruning plan;
  };
  const Layer layers[] = {
      {32, 3, 64, 7, 2, 3, TapPruning::kNone},        // stem: 10% padding taps, not worth it
      {8, 64, 64, 3, 1, 1, TapPruning::kNone},        // 8x8: 16%
      {8, 64, 128, 3, 2, 1, TapPruning::kNone},       // 8x8 -> 4x4: 16%
      {4, 128, 128, 3, 1, 1, TapPruning::kClasses},   // 4x4: 31%
      {4, 128, 256, 3, 2, 1, TapPruning::kClasses},   // 4x4 -> 2x2: 31%
      {2, 256, 256, 3, 1, 1, TapPruning::kClasses},   // 2x2: 56%
      {2, 256, 512, 3, 2, 1, TapPruning::kGlobal},    // 2x2 -> 1x1: the inner 2x2 taps
      {1, 512, 512, 3, 1, 1, TapPruning::kGlobal},    // 1x1: the centre tap
      {56, 64, 64, 3, 1, 1, TapPruning::kNone},       // 224x224 inputs: little padding
      {14, 256, 512, 3, 2, 1, TapPruning::kNone},
      {7, 512, 512, 3, 1, 1, TapPruning::kNone},
  };
  for (const Layer& l : layers) {
    ConvCase k{"resnet", 32, l.side, l.side, l.c, l.out_c, l.k, l.k, l.s, l.s, l.p, l.p, 1};
    const ConvGeometry g = conv2d_geometry(x_shape(k), w_shape(k), attrs_of(k));
    EXPECT_EQ(pruning_name(im2col_plan(g)), std::string(pruning_name(l.plan)))
        << l.side << "x" << l.side << " " << l.c << "->" << l.out_c << " k" << l.k << " s" << l.s;
  }
}

TEST(Conv2dFast, ReferenceBackwardWeightOverwritesWhenNotAccumulating) {
  // Guards the reference itself: the fast kernels are only as good as what they are compared to.
  const ConvCase k = kSmall[0];
  std::vector<HostTensor> in = {random_tensor(y_shape(k), 41), random_tensor(x_shape(k), 42)};
  HostTensor zeros_w{w_shape(k), std::vector<float>(w_shape(k).numel(), 0.0f)};
  HostTensor zeros_b{{k.out_c}, std::vector<float>(k.out_c, 0.0f)};
  HostTensor junk_w = random_tensor(w_shape(k), 43, 100.0f, 200.0f);
  HostTensor junk_b = random_tensor({k.out_c}, 44, 100.0f, 200.0f);
  auto from_zero = run_op(OpKind::kConv2dBackwardWeight, attrs_with(k, 3u), in, {zeros_w, zeros_b}, true);
  auto over_junk = run_op(OpKind::kConv2dBackwardWeight, attrs_with(k, 0u), in, {junk_w, junk_b}, true);
  EXPECT_EQ(max_rel_error(over_junk[0].data, from_zero[0].data), 0.0);
  EXPECT_EQ(max_rel_error(over_junk[1].data, from_zero[1].data), 0.0);
}

TEST(Conv2dFast, SingleThreadMatchesReference) {
  // The parallel splits (channel blocks, rows) must not change results with one thread either.
  const ConvCase k = large_case("depthwise_c48_s2");
  std::vector<HostTensor> in = {random_tensor(y_shape(k), 51), random_tensor(x_shape(k), 52)};
  HostTensor dw{w_shape(k), {}}, db{{k.out_c}, {}};
  auto fast = run_op(OpKind::kConv2dBackwardWeight, attrs_with(k), in, {dw, db}, false, 1);
  auto ref = run_op(OpKind::kConv2dBackwardWeight, attrs_with(k), in, {dw, db}, true, 1);
  EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), kTol);
  EXPECT_LT(max_rel_error(fast[1].data, ref[1].data), kTol);
}

// im2col columns cover a chunk of images with at least 256 output rows (or the whole batch):
// the batch of 2 below fits in one chunk at 14x14 and 7x7 outputs.
TEST(Conv2dWorkspace, PointwiseNeedsNoneIm2colNeedsOneChunksColumnsDepthwiseChunkSums) {
  auto forward_ws = [](const ConvCase& k) {
    const Attrs a = attrs_with(k);
    const Shape in[] = {x_shape(k), w_shape(k)};
    const Shape out[] = {y_shape(k)};
    return conv2d_forward_workspace(a, in, 2, out, 1);
  };
  EXPECT_EQ(forward_ws(large_case("1x1_64_96")), 0u);
  const ConvCase& c32 = large_case("3x3_c32");  // dense 3x3 stride 1: Winograd's workspace
  const ConvGeometry g32 = conv2d_geometry(x_shape(c32), w_shape(c32), attrs_of(c32));
  EXPECT_EQ(forward_ws(c32), winograd_forward_workspace_bytes(g32, winograd_tile(g32)));
  EXPECT_EQ(forward_ws(large_case("groups4_3x3")), size_t{2 * 14 * 14 * 9 * 8 * 4});  // one group
  // Depthwise: the weight gradient's sums of its chunks of rows (one on this small map), 9 taps
  // and the bias each (more than the forward's transposed weights).
  EXPECT_EQ(forward_ws(large_case("depthwise_c48_s2")), size_t{(9 + 1) * 48 * 4});
  const ConvCase k = large_case("3x3_s2_c32_64");
  const Shape bd_in[] = {y_shape(k), w_shape(k)};
  const Shape bd_out[] = {x_shape(k)};
  EXPECT_EQ(conv2d_backward_data_workspace(attrs_with(k), bd_in, 2, bd_out, 1),
            size_t{2 * 7 * 7 * 9 * 32 * 4});
  const Shape bw_in[] = {y_shape(k), x_shape(k)};
  const Shape bw_out[] = {w_shape(k), Shape{k.out_c}};
  EXPECT_EQ(conv2d_backward_weight_workspace(attrs_with(k), bw_in, 2, bw_out, 2),
            size_t{2 * 7 * 7 * 9 * 32 * 4});
}

// ---------------------------------------------------------------------------------------------
// (c) Shape rule.

TEST(Conv2dShape, OutputShapeOfStridedPaddedConv) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  a.stride_h = a.stride_w = 2;
  auto y = conv2d_output_shape({2, 7, 5, 4}, {3, 3, 3, 4}, a);
  ASSERT_TRUE(y.is_ok()) << y.status().to_string();
  EXPECT_EQ(*y, (Shape{2, 3, 2, 3}));
  a.pad_h = a.pad_w = 1;
  EXPECT_EQ(conv2d_output_shape({2, 7, 5, 4}, {3, 3, 3, 4}, a).value(), (Shape{2, 4, 3, 3}));
}

// Expects an invalid-argument error whose message contains every one of `words`.
void expect_error(const Shape& x, const Shape& w, const ConvAttrs& a,
                  const std::vector<std::string>& words) {
  auto y = conv2d_output_shape(x, w, a);
  ASSERT_FALSE(y.is_ok()) << "accepted input " << x.to_string() << " weight " << w.to_string();
  EXPECT_EQ(y.status().code(), StatusCode::kInvalidArgument);
  for (const std::string& word : words)
    EXPECT_NE(y.status().message().find(word), std::string::npos)
        << "message '" << y.status().message() << "' lacks '" << word << "'";
}

TEST(Conv2dShape, RejectsWrongRank) {
  ConvAttrs a;
  expect_error({2, 5, 5}, {4, 1, 1, 5}, a, {"input must be rank 4", "[2, 5, 5]"});
  expect_error({2, 5, 5, 5}, {4, 5}, a, {"weight must be rank 4", "[4, 5]"});
}

TEST(Conv2dShape, RejectsChannelMismatch) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  expect_error({2, 8, 8, 16}, {32, 3, 3, 8}, a, {"channel mismatch", "[32, 3, 3, 8]", "16"});
}

TEST(Conv2dShape, RejectsGroupsNotDividingChannels) {
  ConvAttrs a;
  a.groups = 4;
  expect_error({1, 4, 4, 6}, {8, 1, 1, 1}, a, {"groups 4", "input channels 6"});
  a.groups = 3;
  expect_error({1, 4, 4, 6}, {8, 1, 1, 2}, a, {"groups 3", "output channels 8"});
  a.groups = 0;
  expect_error({1, 4, 4, 6}, {8, 1, 1, 6}, a, {"groups 0"});
}

TEST(Conv2dShape, RejectsKernelLargerThanPaddedInput) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 5;
  a.pad_h = a.pad_w = 1;
  expect_error({1, 2, 8, 3}, {4, 5, 5, 3}, a, {"kernel 5x5 larger than padded input 4x10"});
}

TEST(Conv2dShape, RejectsNonPositiveStrideAndNegativePadding) {
  ConvAttrs a;
  a.stride_w = 0;
  expect_error({1, 4, 4, 3}, {4, 1, 1, 3}, a, {"stride 1x0"});
  a.stride_w = 1;
  a.pad_h = -1;
  expect_error({1, 4, 4, 3}, {4, 1, 1, 3}, a, {"padding -1x0"});
}

TEST(Conv2dShape, RejectsWeightKernelDifferentFromAttributes) {
  ConvAttrs a;
  a.kernel_h = a.kernel_w = 3;
  expect_error({1, 8, 8, 3}, {4, 5, 5, 3}, a, {"weight kernel 5x5", "3x3"});
}

}  // namespace
}  // namespace edgetrain
