// Conv features follow the kernel path: hand-made convs with known multiply counts for each path
// the fast kernels take (Winograd F(4x4) forward and backward data, im2col with the global and
// the classes tap-pruning plans, the direct stem kernels, depthwise valid taps, pointwise, a
// fused eval-mode batch norm; fused activations as the norms' variant), and
// the configurations the profiler samples contain every conv class.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "ops/conv2d.h"
#include "ops/conv2d_im2col.h"
#include "ops/conv2d_winograd.h"
#include "planner/features.h"
#include "planner/step_config.h"
#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/fusion.h"
#include "runtime/graph_builder.h"
#include "runtime/parameter_store.h"

namespace edgetrain {
namespace {

// A training graph of input [n, h, w, c] -> one conv -> loss, with gradients for the input
// too (a first layer's input gets none: a leading 1x1 conv makes the conv under test the second).
struct OneConv {
  Graph g;
  const Node* fwd = nullptr;
  const Node* data = nullptr;
  const Node* weight = nullptr;
};

OneConv one_conv(int64_t n, int64_t h, int64_t w, int64_t c, int64_t out_c, int kernel, int stride, int pad,
                 int groups = 1, bool first_layer = false) {
  OneConv r;
  GraphBuilder b(n, h, w, c, true);
  ValueId x = b.input();
  if (!first_layer) x = b.conv2d(x, "pre", c, 1, 1, 0);
  x = b.conv2d(x, "conv", out_c, kernel, stride, pad, groups);
  b.softmax_cross_entropy(b.linear(b.flatten(x), "fc", 10));
  Result<Graph> forward = b.finish();
  EXPECT_TRUE(forward.is_ok()) << forward.status().to_string();
  if (!forward.is_ok()) return r;
  TrainConfig config;
  Result<std::vector<bool>> trainable = resolve_trainable(*forward, config.freeze);
  EXPECT_TRUE(trainable.is_ok());
  Result<Graph> g = build_training_graph(*forward, *trainable, config);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  if (!g.is_ok()) return r;
  r.g = std::move(*g);
  for (const Node& node : r.g.nodes) {
    if (node.layer != "conv") continue;
    if (node.op == OpKind::kConv2d) r.fwd = &node;
    if (node.op == OpKind::kConv2dBackwardData) r.data = &node;
    if (node.op == OpKind::kConv2dBackwardWeight) r.weight = &node;
  }
  return r;
}

double log1(double v) { return std::log(v + 1); }

// Approximate transform costs per tile and channel of F(4x4, 3x3), as planner/features.cc counts
// them: input (B^T d B), output (A^T m A), filter (G g G^T).
constexpr double kF4Input = 2 * 6 * 16, kF4Output = (6 + 4) * 14, kF4Filter = (3 + 6) * 14;

TEST(ConvFeatures, WinogradForwardAndBackwardDataCountTileProductsAndTransforms) {
  // 10x10 -> 8x8 (3x3, no padding), 16 -> 32 channels, batch 2: F(4x4) in both directions.
  OneConv c = one_conv(2, 10, 10, 16, 32, 3, 1, 0);
  ASSERT_NE(c.fwd, nullptr);
  ASSERT_NE(c.data, nullptr);
  ASSERT_NE(c.weight, nullptr);
  NodeFeatures f = node_features(c.g, *c.fwd);
  EXPECT_EQ(f.op_class, OpClass::kConvWinograd);
  // Forward tiles the 8x8 output: 2 x 2 tiles per image, 36 products of 16 x 32 per tile.
  const double fwd_tiles = 2 * 2 * 2;
  EXPECT_DOUBLE_EQ(f.row.flops, 2 * fwd_tiles * 36 * 16 * 32 + fwd_tiles * (16 * kF4Input + 32 * kF4Output) +
                                    16 * 32 * kF4Filter);
  EXPECT_DOUBLE_EQ(f.row.z[0], log1(f.row.flops));
  EXPECT_DOUBLE_EQ(f.row.z[8], log1(fwd_tiles * 16 * 32));
  EXPECT_DOUBLE_EQ(f.row.z[9], 4);
  // Backward data tiles the 10x10 input gradient (3 x 3 tiles), reading 32 channels of dy.
  NodeFeatures d = node_features(c.g, *c.data);
  EXPECT_EQ(d.op_class, OpClass::kConvWinogradBackwardData);
  const double data_tiles = 2 * 3 * 3;
  EXPECT_DOUBLE_EQ(d.row.flops, 2 * data_tiles * 36 * 32 * 16 +
                                    data_tiles * (32 * kF4Input + 16 * kF4Output) + 16 * 32 * kF4Filter);
  NodeFeatures w = node_features(c.g, *c.weight);
  EXPECT_EQ(w.op_class, OpClass::kConvWinogradBackwardWeight);
  const ConvGeometry geo = conv2d_geometry(Shape{2, 10, 10, 16}, Shape{32, 3, 3, 16}, c.fwd->attrs.conv);
  EXPECT_EQ(w.row.z[9], winograd_backward_weight_tile(geo, 4));
  // Far fewer multiplies than the dense count 2 * (2*8*8*32) * 9*16.
  EXPECT_LT(f.row.flops, 0.5 * 2 * (2 * 8 * 8 * 32) * 9 * 16);
}

TEST(ConvFeatures, TheWinogradWeightGradientCountsTransformsPerBlockAndSumsPerChunk) {
  // ResNet-18's layer4 conv at batch 25 on 6x6 maps: the products' sums split into blocks of
  // output channels and the tiles into chunks, so every block transforms the tiles again and
  // every chunk loads and stores the sums; at batch 2 one chunk, transformed once.
  for (int64_t batch : {25, 2}) {
    OneConv c = one_conv(batch, 6, 6, 512, 512, 3, 1, 1);
    ASSERT_NE(c.weight, nullptr);
    const ConvGeometry geo = conv2d_geometry(Shape{batch, 6, 6, 512}, Shape{512, 3, 3, 512}, c.fwd->attrs.conv);
    const WinogradWeightSplit split = winograd_backward_weight_split(geo, 4);
    ASSERT_EQ(split.m, 4);
    if (batch == 25) {
      ASSERT_GT(split.blocks, 1);
      ASSERT_GT(split.chunks, 1);
    } else {
      ASSERT_EQ(split.chunks, 1);
    }
    NodeFeatures w = node_features(c.g, *c.weight);
    ASSERT_EQ(w.op_class, OpClass::kConvWinogradBackwardWeight);
    const double tiles = static_cast<double>(batch) * 2 * 2;  // 6x6 in tiles of 4x4
    const double transforms = split.chunks > 1 ? static_cast<double>(split.blocks) : 1.0;
    // dy tiles through G' (kF4Filter's count), input patches through B^T, dW through A'^T.
    EXPECT_DOUBLE_EQ(w.row.flops, 2 * tiles * 36 * 512 * 512 +
                                      transforms * tiles * (512 * kF4Input + 512 * kF4Filter) +
                                      512 * 512 * kF4Output);
    // Inputs dy and x, the output dw, and the sums loaded and stored once per chunk.
    const double tensors = 4.0 * (2 * batch * 6 * 6 * 512 + 512 * 9 * 512);
    EXPECT_DOUBLE_EQ(w.row.bytes, tensors + 2.0 * static_cast<double>(split.chunks) * 36 * 512 * 512 * 4)
        << "batch " << batch;
  }
}

TEST(ConvFeatures, OneByOneMapsKeepOnlyTheCentreTap) {
  // 3x3 pad 1 on 1x1 maps (ResNet-18 layer4 at 32x32): too small for Winograd, and the global
  // plan keeps the centre tap only: 1/9 of the dense multiply-adds.
  OneConv c = one_conv(4, 1, 1, 32, 64, 3, 1, 1);
  ASSERT_NE(c.fwd, nullptr);
  ASSERT_NE(c.data, nullptr);
  for (const Node* n : {c.fwd, c.data, c.weight}) {
    NodeFeatures f = node_features(c.g, *n);
    EXPECT_DOUBLE_EQ(f.row.flops, 2.0 * 4 * 32 * 64) << op_name(n->op);
    EXPECT_DOUBLE_EQ(f.row.z[9], 1) << "global plan";
    EXPECT_DOUBLE_EQ(f.row.z[8], log1(32 * 64)) << "one image's GEMM";
  }
  EXPECT_EQ(node_features(c.g, *c.fwd).op_class, OpClass::kConvGemm);
  EXPECT_EQ(node_features(c.g, *c.data).op_class, OpClass::kConvGemmBackwardData);
  EXPECT_EQ(node_features(c.g, *c.weight).op_class, OpClass::kConvGemmBackwardWeight);
}

TEST(ConvFeatures, TwoByTwoMapsWithLargeBatchesUseTheClassesPlan) {
  // 3x3 pad 1 on 2x2 maps: each output pixel reads 4 of the 9 taps (16 pixel-taps per image
  // instead of 36); batch 64 x 256 channels makes every class GEMM large enough for the plan.
  OneConv c = one_conv(64, 2, 2, 256, 256, 3, 1, 1);
  ASSERT_NE(c.fwd, nullptr);
  NodeFeatures f = node_features(c.g, *c.fwd);
  EXPECT_EQ(f.op_class, OpClass::kConvGemm);
  EXPECT_DOUBLE_EQ(f.row.z[9], 2);
  EXPECT_DOUBLE_EQ(f.row.flops, 2.0 * 64 * 16 * 256 * 256);
  // With batch 2 the corner GEMMs would be tiny: the plan is a global one, which on a 2x2 map
  // keeps every tap (plain).
  OneConv small = one_conv(2, 2, 2, 256, 256, 3, 1, 1);
  ASSERT_NE(small.fwd, nullptr);
  NodeFeatures s = node_features(small.g, *small.fwd);
  EXPECT_DOUBLE_EQ(s.row.z[9], 0);
  EXPECT_DOUBLE_EQ(s.row.flops, 2.0 * 2 * 4 * 9 * 256 * 256);
}

TEST(ConvFeatures, StemConvsTakeTheDirectKernelAndCountValidTapsOnly) {
  // 3 input channels, 3x3 pad 1 on 8x8, batch 2: the direct forward. Per axis the 8 outputs
  // see 2 + 6*3 + 2 = 22 valid taps, so 22 * 22 pixel-taps per image instead of 64 * 9.
  OneConv c = one_conv(2, 8, 8, 3, 16, 3, 1, 1, 1, /*first_layer=*/true);
  ASSERT_NE(c.fwd, nullptr);
  EXPECT_EQ(c.data, nullptr) << "the input needs no gradient";
  ASSERT_NE(c.weight, nullptr);
  NodeFeatures f = node_features(c.g, *c.fwd);
  EXPECT_EQ(f.op_class, OpClass::kConvDirectForward);
  EXPECT_DOUBLE_EQ(f.row.flops, 2.0 * 2 * 22 * 22 * 3 * 16);
  EXPECT_DOUBLE_EQ(f.row.z[8], 0) << "no GEMM call";
  // Its weight gradient is direct too, over the same valid taps.
  NodeFeatures w = node_features(c.g, *c.weight);
  EXPECT_EQ(w.op_class, OpClass::kConvDirectBackwardWeight);
  EXPECT_DOUBLE_EQ(w.row.flops, 2.0 * 2 * 22 * 22 * 3 * 16);
  EXPECT_DOUBLE_EQ(w.row.z[8], 0);
}

TEST(ConvFeatures, DepthwiseCountsValidTapsAndPointwiseEveryProduct) {
  // Depthwise 3x3 pad 1 on 4x4, 8 channels: 2 + 3 + 3 + 2 = 10 valid taps per axis.
  OneConv dw = one_conv(1, 4, 4, 8, 8, 3, 1, 1, /*groups=*/8);
  ASSERT_NE(dw.fwd, nullptr);
  ASSERT_NE(dw.data, nullptr);
  for (const Node* n : {dw.fwd, dw.data, dw.weight}) {
    NodeFeatures f = node_features(dw.g, *n);
    EXPECT_DOUBLE_EQ(f.row.flops, 2.0 * 10 * 10 * 8) << op_name(n->op);
  }
  EXPECT_EQ(node_features(dw.g, *dw.fwd).op_class, OpClass::kConvDepthwise);
  EXPECT_EQ(node_features(dw.g, *dw.weight).op_class, OpClass::kConvDepthwiseBackwardWeight);
  // Pointwise: every pixel times every channel pair.
  OneConv pw = one_conv(2, 5, 5, 8, 12, 1, 1, 0);
  ASSERT_NE(pw.fwd, nullptr);
  NodeFeatures f = node_features(pw.g, *pw.fwd);
  EXPECT_EQ(f.op_class, OpClass::kConvPointwise);
  EXPECT_DOUBLE_EQ(f.row.flops, 2.0 * 2 * 25 * 8 * 12);
}

TEST(ConvFeatures, AFusedEvalNormKeepsTheConvsFlopsAndAddsTheBytesItMoves) {
  // The norm runs in the conv's epilogue: counting its FLOPs put fused convs off the plain convs'
  // fixed FLOPs-to-multiply-adds ratio, which log-linear models extrapolated wildly. Winograd
  // applies it in its output transform, in cache: only the norm's four parameter vectors are
  // read. The GEMM paths (a 1x1 conv) normalise the finished output in a pass of its own: it is
  // read and written once more (2 x 8x8 pixels x 16 channels x 2 images).
  for (int kernel : {3, 1}) {
    GraphBuilder b(2, 8, 8, 16, /*training=*/false);
    ValueId y = b.relu(b.batch_norm(b.conv2d(b.input(), "conv", 16, kernel, 1, kernel / 2), "bn"));
    b.softmax_cross_entropy(b.linear(b.flatten(y), "fc", 10));
    Result<Graph> built = b.finish();
    ASSERT_TRUE(built.is_ok()) << built.status().to_string();
    Graph g = std::move(*built);
    auto conv_node = [&]() -> const Node& {
      for (const Node& n : g.nodes)
        if (n.op == OpKind::kConv2d) return n;
      ADD_FAILURE() << "no conv";
      return g.nodes[0];
    };
    const NodeFeatures plain = node_features(g, conv_node());
    fuse_activations(g);
    ASSERT_EQ(fuse_conv_norms(g), 1);
    ASSERT_TRUE(conv_node().attrs.conv_norm);
    const NodeFeatures fused = node_features(g, conv_node());
    EXPECT_EQ(fused.op_class, plain.op_class);
    EXPECT_EQ(fused.op_class, kernel == 3 ? OpClass::kConvWinograd : OpClass::kConvPointwise);
    EXPECT_DOUBLE_EQ(fused.row.flops, plain.row.flops);
    const double pass = kernel == 1 ? 2.0 * 2 * 8 * 8 * 16 * sizeof(float) : 0.0;
    EXPECT_DOUBLE_EQ(fused.row.bytes, plain.row.bytes + 4.0 * 16 * sizeof(float) + pass) << "kernel " << kernel;
    for (size_t k = 0; k < fused.row.z.size(); ++k) {
      if (k != 1) {
        EXPECT_DOUBLE_EQ(fused.row.z[k], plain.row.z[k]) << "feature " << k << ", kernel " << kernel;
      }
    }
  }
}

TEST(Features, FusedActivationsAreTheNormsVariant) {
  // A training graph of conv -> batch norm -> ReLU -> conv: fusion puts the ReLU into the norm
  // and its backward into the norm's backward; both norm nodes then carry variant 1.
  GraphBuilder b(2, 8, 8, 8, true);
  ValueId x = b.conv2d(b.input(), "pre", 8, 1, 1, 0);
  x = b.relu(b.batch_norm(b.conv2d(x, "conv", 8, 3, 1, 1), "bn"));
  x = b.conv2d(x, "post", 8, 1, 1, 0);
  b.softmax_cross_entropy(b.linear(b.flatten(x), "fc", 10));
  Result<Graph> forward = b.finish();
  ASSERT_TRUE(forward.is_ok()) << forward.status().to_string();
  TrainConfig config;
  Result<std::vector<bool>> trainable = resolve_trainable(*forward, config.freeze);
  ASSERT_TRUE(trainable.is_ok());
  Result<Graph> g = build_training_graph(*forward, *trainable, config);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  auto variants = [&](OpKind op) {
    std::vector<double> v;
    for (const Node& n : g->nodes)
      if (n.op == op) v.push_back(node_features(*g, n).row.z[9]);
    return v;
  };
  EXPECT_EQ(variants(OpKind::kBatchNorm), std::vector<double>{0});
  EXPECT_EQ(variants(OpKind::kBatchNormBackward), std::vector<double>{0});
  fuse_activations(*g);
  const int fused_backwards = fuse_activation_backwards(*g);
  EXPECT_EQ(variants(OpKind::kBatchNorm), std::vector<double>{1});
  EXPECT_EQ(variants(OpKind::kBatchNormBackward), std::vector<double>{fused_backwards == 1 ? 1.0 : 0.0});
  EXPECT_EQ(fused_backwards, 1);
}

TEST(ConvFeatures, ClassesAgreeWithTheKernelsPathQuery) {
  // Whatever the shape, the class is the path ops/conv2d.cc reports for that direction.
  Rng rng(3);
  for (int i = 0; i < 40; ++i) {
    const int64_t c = 1 + static_cast<int64_t>(rng.below(40)), o = 1 + static_cast<int64_t>(rng.below(40));
    const int64_t hw = 1 + static_cast<int64_t>(rng.below(12));
    const int kernel = rng.uniform() < 0.5 ? 3 : 1, stride = rng.uniform() < 0.7 ? 1 : 2;
    OneConv conv = one_conv(1 + static_cast<int64_t>(rng.below(4)), hw, hw, c, o, kernel, stride, kernel / 2);
    ASSERT_NE(conv.fwd, nullptr);
    const ConvGeometry geo =
        conv2d_geometry(Shape{conv.g.value(conv.fwd->inputs[0]).shape}, conv.g.value(conv.fwd->inputs[1]).shape,
                        conv.fwd->attrs.conv);
    const std::pair<const Node*, ConvDirection> nodes[] = {{conv.fwd, ConvDirection::kForward},
                                                          {conv.data, ConvDirection::kBackwardData},
                                                          {conv.weight, ConvDirection::kBackwardWeight}};
    for (const auto& [node, dir] : nodes) {
      ASSERT_NE(node, nullptr);
      const OpClass cls = node_features(conv.g, *node).op_class;
      const std::string name = op_class_name(cls);
      switch (conv2d_kernel_path(geo, dir)) {
        case ConvKernelPath::kDepthwise: EXPECT_EQ(name.rfind("conv.depthwise", 0), 0u) << name; break;
        case ConvKernelPath::kPointwise: EXPECT_EQ(name.rfind("conv.pointwise", 0), 0u) << name; break;
        case ConvKernelPath::kDirect:
          EXPECT_EQ(cls, dir == ConvDirection::kForward ? OpClass::kConvDirectForward
                                                         : OpClass::kConvDirectBackwardWeight);
          break;
        case ConvKernelPath::kWinogradF2:
        case ConvKernelPath::kWinogradF4: EXPECT_EQ(name.rfind("conv.winograd", 0), 0u) << name; break;
        default: EXPECT_EQ(name.rfind("conv.gemm", 0), 0u) << name; break;
      }
    }
  }
}

TEST(ConvFeatures, PathQueryFollowsTheKernelsDecisions) {
  // Spot checks of conv2d_kernel_path against the deciding functions it combines.
  const ConvAttrs a3{3, 3, 1, 1, 1, 1, 1};
  const ConvGeometry wino = conv2d_geometry(Shape{1, 8, 8, 16}, Shape{16, 3, 3, 16}, a3);
  ASSERT_EQ(winograd_tile(wino), 4);
  EXPECT_EQ(conv2d_kernel_path(wino, ConvDirection::kForward), ConvKernelPath::kWinogradF4);
  EXPECT_EQ(conv2d_kernel_path(wino, ConvDirection::kBackwardData), ConvKernelPath::kWinogradF4);
  // Backward weight at 14x14x256, batch 8: F(3x3, 4x4)'s products would need blocks, F2's not.
  const ConvGeometry big = conv2d_geometry(Shape{8, 14, 14, 256}, Shape{256, 3, 3, 256}, a3);
  EXPECT_EQ(conv2d_kernel_path(big, ConvDirection::kBackwardWeight),
            winograd_backward_weight_tile(big, 4) == 2 ? ConvKernelPath::kWinogradF2 : ConvKernelPath::kWinogradF4);
  EXPECT_EQ(conv2d_kernel_path(big, ConvDirection::kForward), ConvKernelPath::kWinogradF4);
  // A 1x1 conv with 3 input channels: direct forward (before pointwise), pointwise backward.
  const ConvAttrs a1{1, 1, 1, 1, 0, 0, 1};
  const ConvGeometry stem1 = conv2d_geometry(Shape{1, 4, 4, 3}, Shape{8, 1, 1, 3}, a1);
  EXPECT_EQ(conv2d_kernel_path(stem1, ConvDirection::kForward), ConvKernelPath::kDirect);
  EXPECT_EQ(conv2d_kernel_path(stem1, ConvDirection::kBackwardData), ConvKernelPath::kPointwise);
  EXPECT_EQ(conv2d_kernel_path(stem1, ConvDirection::kBackwardWeight), ConvKernelPath::kDirect);
  // Stride 2: im2col.
  const ConvAttrs s2{3, 3, 2, 2, 1, 1, 1};
  const ConvGeometry down = conv2d_geometry(Shape{2, 16, 16, 32}, Shape{64, 3, 3, 32}, s2);
  const ConvKernelPath p = conv2d_kernel_path(down, ConvDirection::kForward);
  EXPECT_TRUE(p == ConvKernelPath::kIm2colPlain || p == ConvKernelPath::kIm2colGlobal ||
              p == ConvKernelPath::kIm2colClasses);
  EXPECT_EQ(static_cast<int>(p) - static_cast<int>(ConvKernelPath::kIm2colPlain),
            static_cast<int>(im2col_plan(down)) - static_cast<int>(TapPruning::kNone));
}

TEST(ConvFeatures, TheProfilersConfigurationsCoverEveryConvClass) {
  // Grid configurations of the profiler's sampling space (planner/profiler.cc) between them
  // have nodes of every conv class and every variant of the new paths.
  std::set<std::string> seen;
  auto add = [&](Architecture arch, float width, int input, int64_t batch) {
    StepConfig c;
    c.model.arch = arch;
    c.model.width_mult = width;
    c.model.input_size = input;
    c.model.num_classes = 10;
    c.batch = batch;
    Result<Graph> g = build_step_graph(c);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    for (const Node& n : g->nodes) {
      NodeFeatures f = node_features(*g, n);
      const std::string name = op_class_name(f.op_class);
      if (name.rfind("conv", 0) != 0) continue;
      seen.insert(name);
      seen.insert(name + "/" + std::to_string(static_cast<int>(f.row.z[9])));
    }
  };
  add(Architecture::kResNet18, 1.0f, 32, 64);
  add(Architecture::kResNet18, 1.0f, 64, 8);
  add(Architecture::kMobileNetV2, 0.5f, 32, 8);
  for (const char* want :
       {"conv.depthwise.fwd", "conv.depthwise.bwd_data", "conv.depthwise.bwd_weight", "conv.pointwise.fwd",
        "conv.pointwise.bwd_data", "conv.pointwise.bwd_weight", "conv.gemm.fwd", "conv.gemm.bwd_data",
        "conv.gemm.bwd_weight", "conv.winograd.fwd", "conv.winograd.bwd_data", "conv.winograd.bwd_weight",
        "conv.direct.fwd", "conv.direct.bwd_weight", "conv.gemm.fwd/0", "conv.gemm.fwd/1", "conv.gemm.fwd/2", "conv.winograd.fwd/4",
        "conv.winograd.bwd_weight/2", "conv.winograd.bwd_weight/4"})
    EXPECT_TRUE(seen.count(want)) << want;
  // Depthwise convs' variant is their loop (ops/conv2d_depthwise.h depthwise_loop): MobileNetV2's
  // maps from 16x16 to 1x1 take several in each direction.
  for (const char* dir : {"fwd", "bwd_data", "bwd_weight"}) {
    int loops = 0;
    for (const std::string& s : seen) loops += s.rfind(std::string("conv.depthwise.") + dir + "/", 0) == 0;
    EXPECT_GE(loops, 2) << dir;
  }
}

}  // namespace
}  // namespace edgetrain
