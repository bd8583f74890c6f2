// The direct forward for convs with few input channels (ops/conv2d_direct.h): every output-channel
// blocking (64, 32, 16, and the tail), every run of pixels (8, 4, 2, 1), padding on every side, strides, with and without bias, on 1
// and 2 threads, against the naive reference through the op table; the weight gradient in blocks
// of rows; and which convs take it.
#include <gtest/gtest.h>

#include <vector>

#include "ops/conv2d.h"
#include "ops/conv2d_direct.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::max_rel_error;
using testing::random_tensor;
using testing::run_op;

struct StemCase {
  const char* name;
  int64_t n, h, w, c, out_c;
  int k, stride, pad;
};

const std::vector<StemCase> kCases = {
    {"mobilenet_stem_3x3_s2", 2, 32, 32, 3, 32, 3, 2, 1},
    {"resnet_stem_7x7_s2_p3", 2, 32, 32, 3, 64, 7, 2, 3},    // one block of 64
    {"resnet_stem_odd_input", 1, 33, 29, 3, 64, 7, 2, 3},
    {"blocks_64_16_tail_3", 2, 9, 11, 3, 83, 3, 1, 1},       // 64 + 16 + 3 channels
    {"one_channel_5x5_p2", 2, 9, 9, 1, 16, 5, 1, 2},
    {"four_channels_no_pad", 2, 8, 7, 4, 7, 3, 1, 0},         // tail only
    {"kernel_larger_than_input", 1, 3, 2, 2, 20, 5, 1, 2},     // every pixel clips taps
    // Runs of 8, 4, 2 and 1 pixels with the same valid taps along wide rows; 64 + 32 + 16 + 5
    // channels (runs of 8 take the 64-channel block 4 pixels at a time).
    {"runs_8_4_2_1_blocks_64_32_16_tail", 2, 5, 47, 2, 117, 3, 1, 1},
    {"runs_of_8_32_channels_stride_2", 1, 4, 61, 3, 32, 3, 2, 1},
    // A last block of fewer than 16 channels (zero-padded weights, partial stores): small_cnn's
    // 8-channel stem, MobileNetV2 width 0.75's 24 (16 + 8).
    {"small_cnn_stem_8_channels", 2, 12, 19, 3, 8, 3, 1, 1},
    {"block_16_then_8_stride_2", 1, 9, 33, 3, 24, 3, 2, 1},
};

Attrs attrs_of(const StemCase& k) {
  Attrs a;
  a.conv.kernel_h = a.conv.kernel_w = k.k;
  a.conv.stride_h = a.conv.stride_w = k.stride;
  a.conv.pad_h = a.conv.pad_w = k.pad;
  return a;
}

TEST(Conv2dDirect, ForwardMatchesTheNaiveReference) {
  for (const StemCase& k : kCases)
    for (bool bias : {false, true})
      for (int threads : {1, 2}) {
        const Attrs a = attrs_of(k);
        const Shape x{k.n, k.h, k.w, k.c}, w{k.out_c, k.k, k.k, k.c};
        Result<Shape> y = conv2d_output_shape(x, w, a.conv);
        ASSERT_TRUE(y.is_ok()) << k.name;
        std::vector<HostTensor> in = {random_tensor(x, 1), random_tensor(w, 2),
                                      bias ? random_tensor({k.out_c}, 3) : testing::absent({k.out_c})};
        auto fast = run_op(OpKind::kConv2d, a, in, {HostTensor{*y, {}}}, false, threads);
        auto ref = run_op(OpKind::kConv2d, a, in, {HostTensor{*y, {}}}, true, threads);
        EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), 1e-5)
            << k.name << " bias=" << bias << " threads=" << threads;
      }
}

// The weight gradient where a chunk's dy outgrows the L2 runs each chunk in blocks of rows (here
// 5 x 112 / 8 = 70 rows of 17.5 KiB, blocks of 14 rows): against the reference in double,
// overwriting and accumulating, and the same bits on 1 and 2 threads. 40 output channels: a
// pair of vectors, then an 8-wide tail. Each weight sums 62,720 products in float: measured
// 1.0e-4 of the largest weight off the double sums in blocks, 3.0e-4 with whole chunks (the
// float reference: 5e-4).
TEST(Conv2dDirect, BackwardWeightInBlocksOfRowsMatchesReferenceOnOneAndTwoThreads) {
  const StemCase k{"blocked_7x7_s2", 5, 224, 224, 1, 40, 7, 2, 3};
  Attrs a = attrs_of(k);
  const Shape x{k.n, k.h, k.w, k.c}, w{k.out_c, k.k, k.k, k.c};
  const Shape y = conv2d_output_shape(x, w, a.conv).value();
  const ConvGeometry g = conv2d_geometry(x, w, a.conv);
  EXPECT_EQ(conv2d_direct_backward_weight_block_rows(g), 14);
  const std::vector<HostTensor> in = {random_tensor(y, 1), random_tensor(x, 2)};
  const HostTensor start = random_tensor(w, 3);
  for (bool accumulate : {false, true}) {
    a.accumulate_mask = accumulate ? 1u : 0u;
    std::vector<double> dy(in[0].data.begin(), in[0].data.end()), xs(in[1].data.begin(), in[1].data.end());
    std::vector<double> expect(start.data.begin(), start.data.end());
    conv2d_backward_weight_naive<double>(g, dy.data(), xs.data(), expect.data(), nullptr, accumulate, false);
    const std::vector<HostTensor> outputs = {start, testing::absent({k.out_c})};
    auto one = run_op(OpKind::kConv2dBackwardWeight, a, in, outputs, false, 1);
    auto two = run_op(OpKind::kConv2dBackwardWeight, a, in, outputs, false, 2);
    EXPECT_LT(max_rel_error(two[0].data, std::vector<float>(expect.begin(), expect.end())), 2e-4)
        << "accumulate " << accumulate;
    EXPECT_EQ(one[0].data, two[0].data) << "1 vs 2 threads, accumulate " << accumulate;
  }
  // A 32x32 stem's chunks fit: not blocked.
  EXPECT_EQ(conv2d_direct_backward_weight_block_rows(conv2d_geometry(Shape{32, 32, 32, 3}, Shape{64, 7, 7, 3}, a.conv)),
            0);
}

TEST(Conv2dDirect, TakesDenseConvsWithAtMostFourInputChannels) {
  auto geometry = [](int64_t c, int64_t out_c, int groups) {
    ConvAttrs a;
    a.kernel_h = a.kernel_w = 3;
    a.pad_h = a.pad_w = 1;
    a.groups = groups;
    return conv2d_geometry(Shape{1, 8, 8, c}, Shape{out_c, 3, 3, c / groups}, a);
  };
  EXPECT_TRUE(conv2d_direct_forward_applies(geometry(3, 32, 1)));
  EXPECT_TRUE(conv2d_direct_forward_applies(geometry(4, 8, 1)));
  EXPECT_FALSE(conv2d_direct_forward_applies(geometry(5, 32, 1)));
  EXPECT_FALSE(conv2d_direct_forward_applies(geometry(4, 4, 4)));  // depthwise / grouped: not dense
  // The workspace is the reordered weights, declared through the op's workspace rule.
  Attrs a;
  a.conv.kernel_h = a.conv.kernel_w = 7;
  a.conv.stride_h = a.conv.stride_w = 2;
  a.conv.pad_h = a.conv.pad_w = 3;
  const Shape in[] = {Shape{2, 32, 32, 3}, Shape{64, 7, 7, 3}};
  const Shape out[] = {Shape{2, 16, 16, 64}};
  EXPECT_EQ(conv2d_forward_workspace(a, in, 2, out, 1), size_t{7 * 7 * 3 * 64 * 4});
}

}  // namespace
}  // namespace edgetrain
