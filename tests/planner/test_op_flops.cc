// node_work: FLOPs and bytes of schedule nodes against hand-computed values for small layers,
// the layer kinds of MobileNetV2's convolutions, ResNet-18's forward multiply-adds against the
// published count, and the backward's conv FLOPs against the forward's.
#include <gtest/gtest.h>

#include "models/model_zoo.h"
#include "planner/op_flops.h"
#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/graph_builder.h"

namespace edgetrain {
namespace {

Graph finish_or_die(GraphBuilder& b) {
  Result<Graph> g = b.finish();
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  return g.is_ok() ? std::move(g).value() : Graph{};
}

const Node& only_node(const Graph& g, OpKind op) {
  const Node* found = nullptr;
  for (const Node& n : g.nodes)
    if (n.op == op) {
      EXPECT_EQ(found, nullptr) << "more than one " << op_name(op);
      found = &n;
    }
  EXPECT_NE(found, nullptr) << "no " << op_name(op);
  return *found;
}

Graph training_graph(const Graph& forward, FreezeMode mode = FreezeMode::kNone) {
  TrainConfig config;
  config.optimizer.attrs.momentum = 0.9f;
  config.freeze.mode = mode;
  Result<std::vector<bool>> trainable = resolve_trainable(forward, config.freeze);
  EXPECT_TRUE(trainable.is_ok()) << trainable.status().to_string();
  Result<Graph> g = build_training_graph(forward, *trainable, config);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  return g.is_ok() ? std::move(g).value() : Graph{};
}

TEST(OpFlops, DenseConvWithBiasCountsTwoPerMultiplyAddPlusBias) {
  GraphBuilder b(2, 8, 8, 4, true);
  ValueId y = b.conv2d(b.input(), "conv", 6, /*kernel=*/3, /*stride=*/1, /*pad=*/1, 1, /*bias=*/true);
  b.softmax_cross_entropy(b.linear(b.flatten(y), "fc", 10));
  Graph g = finish_or_die(b);
  NodeWork w = node_work(g, only_node(g, OpKind::kConv2d));
  EXPECT_EQ(w.kind, LayerKind::kConvDense);
  EXPECT_EQ(w.pass, PassKind::kForward);
  // y [2,8,8,6]: 768 outputs x 3*3*4 = 36 multiply-adds each, plus one bias add per output.
  EXPECT_EQ(w.flops, 2 * 768 * 36 + 768);
  // x [2,8,8,4] + w [6,3,3,4] + b [6] + y [2,8,8,6], float32.
  EXPECT_EQ(w.bytes, (512 + 216 + 6 + 768) * 4);
  EXPECT_EQ(work_label(w), "conv_dense fwd");
}

TEST(OpFlops, ConvKindsFollowKernelAndGroups) {
  GraphBuilder b(1, 4, 4, 8, true);
  ValueId x = b.conv2d(b.input(), "dw", 8, 3, 1, 1, /*groups=*/8);
  x = b.conv2d(x, "grouped", 8, 3, 1, 1, /*groups=*/2);
  x = b.conv2d(x, "pw", 16, 1, /*stride=*/2, 0);
  b.softmax_cross_entropy(b.linear(b.flatten(x), "fc", 10));
  Graph g = finish_or_die(b);
  std::vector<NodeWork> convs;
  for (const Node& n : g.nodes)
    if (n.op == OpKind::kConv2d) convs.push_back(node_work(g, n));
  ASSERT_EQ(convs.size(), 3u);
  EXPECT_EQ(convs[0].kind, LayerKind::kConvDepthwise);
  EXPECT_EQ(convs[0].flops, 2 * (4 * 4 * 8) * 9 * 1);  // one input channel per output
  EXPECT_EQ(convs[1].kind, LayerKind::kConvGrouped);
  EXPECT_EQ(convs[1].flops, 2 * (4 * 4 * 8) * 9 * 4);  // 8 / 2 input channels per group
  EXPECT_EQ(convs[2].kind, LayerKind::kConv1x1);
  EXPECT_EQ(convs[2].flops, 2 * (2 * 2 * 16) * 8);     // stride 2: a 2x2 output
}

TEST(OpFlops, ConvBackwardCountsDataAndWeightLikeTheForward) {
  GraphBuilder b(2, 6, 6, 3, true);
  ValueId x = b.conv2d(b.input(), "c1", 4, 3, 1, 1, 1, /*bias=*/true);
  x = b.conv2d(x, "c2", 5, 3, 2, 1);  // y [2,3,3,5]
  b.softmax_cross_entropy(b.linear(b.flatten(x), "fc", 10));
  Graph g = training_graph(finish_or_die(b));
  int64_t c2_macs = 2 * 3 * 3 * 5 * 9 * 4;
  int64_t c1_macs = 2 * 6 * 6 * 4 * 9 * 3;
  int seen = 0;
  for (const Node& n : g.nodes) {
    NodeWork w = node_work(g, n);
    if (n.op == OpKind::kConv2dBackwardData) {
      ++seen;
      EXPECT_EQ(n.layer, "c2") << "the first conv's input needs no gradient";
      EXPECT_EQ(w.pass, PassKind::kBackwardData);
      EXPECT_EQ(w.flops, 2 * c2_macs);
    } else if (n.op == OpKind::kConv2dBackwardWeight) {
      ++seen;
      EXPECT_EQ(w.pass, PassKind::kBackwardWeight);
      EXPECT_EQ(w.kind, LayerKind::kConvDense);
      // c1 has a bias: one add per dy element for db.
      EXPECT_EQ(w.flops, n.layer == "c1" ? 2 * c1_macs + 2 * 6 * 6 * 4 : 2 * c2_macs) << n.layer;
    }
  }
  EXPECT_EQ(seen, 3);
}

TEST(OpFlops, LinearInAllThreeDirections) {
  GraphBuilder b(4, 1, 1, 16, true);
  b.softmax_cross_entropy(b.linear(b.flatten(b.input()), "fc", 10));
  Graph fwd = finish_or_die(b);
  NodeWork f = node_work(fwd, only_node(fwd, OpKind::kLinear));
  EXPECT_EQ(f.kind, LayerKind::kLinear);
  EXPECT_EQ(f.flops, 2 * 4 * 16 * 10 + 4 * 10);
  EXPECT_EQ(f.bytes, (4 * 16 + 10 * 16 + 10 + 4 * 10) * 4);
  Graph g = training_graph(fwd);
  NodeWork bw = node_work(g, only_node(g, OpKind::kLinearBackwardWeight));
  EXPECT_EQ(bw.pass, PassKind::kBackwardWeight);
  EXPECT_EQ(bw.flops, 2 * 4 * 16 * 10 + 4 * 10);
  // The input needs no gradient: no backward-data node.
  for (const Node& n : g.nodes) EXPECT_NE(n.op, OpKind::kLinearBackwardData);
  NodeWork loss = node_work(g, only_node(g, OpKind::kSoftmaxCrossEntropy));
  EXPECT_EQ(loss.kind, LayerKind::kLoss);
  EXPECT_EQ(loss.flops, 40 * 5);
}

TEST(OpFlops, SgdMomentumUpdateWritesParameterAndBufferBack) {
  GraphBuilder b(4, 1, 1, 16, true);
  b.softmax_cross_entropy(b.linear(b.flatten(b.input()), "fc", 10, /*bias=*/false));
  Graph g = training_graph(finish_or_die(b));
  NodeWork u = node_work(g, only_node(g, OpKind::kSgdUpdate));
  EXPECT_EQ(u.kind, LayerKind::kOptimizer);
  EXPECT_EQ(u.pass, PassKind::kUpdate);
  EXPECT_EQ(u.flops, 160 * 4);  // buf = 0.9 * buf + g; p -= lr * buf
  // Reads param, grad, momentum; writes param and momentum back: 5 x 160 floats.
  EXPECT_EQ(u.bytes, 5 * 160 * 4);
}

TEST(OpFlops, ElementwiseKindsCountPerElement) {
  GraphBuilder b(2, 4, 4, 3, true);
  ValueId x = b.batch_norm(b.input(), "bn");
  x = b.relu6(x);
  x = b.max_pool(x, 2, 2, 0);  // [2,2,2,3]
  b.softmax_cross_entropy(b.linear(b.global_avg_pool(x), "fc", 10));
  Graph g = finish_or_die(b);
  NodeWork bn = node_work(g, only_node(g, OpKind::kBatchNorm));
  EXPECT_EQ(bn.kind, LayerKind::kBatchNorm);
  EXPECT_EQ(bn.flops, 96 * 5);  // statistics 3 + apply 2 per element
  NodeWork act = node_work(g, only_node(g, OpKind::kRelu6));
  EXPECT_EQ(act.kind, LayerKind::kActivation);
  EXPECT_EQ(act.flops, 96 * 2);
  EXPECT_EQ(act.bytes, 2 * 96 * 4);
  NodeWork pool = node_work(g, only_node(g, OpKind::kMaxPool));
  EXPECT_EQ(pool.kind, LayerKind::kPooling);
  EXPECT_EQ(pool.flops, 24 * 4);
  NodeWork gap = node_work(g, only_node(g, OpKind::kGlobalAvgPool));
  EXPECT_EQ(gap.kind, LayerKind::kPooling);
  EXPECT_EQ(gap.flops, 24);
}

TEST(OpFlops, MobileNetV2ConvKinds) {
  ModelSpec s;
  s.arch = Architecture::kMobileNetV2;
  Result<Graph> g = build_model(s, 2, true);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  int counts[kLayerKindCount] = {};
  for (const Node& n : g->nodes)
    if (n.op == OpKind::kConv2d) ++counts[static_cast<int>(node_work(*g, n).kind)];
  // The stem is a dense 3x3 conv; 17 inverted residual blocks have one depthwise conv each, 16
  // of them an expansion 1x1 and all a projection 1x1; the last conv is 1x1 (320 -> 1280).
  EXPECT_EQ(counts[static_cast<int>(LayerKind::kConvDense)], 1);
  EXPECT_EQ(counts[static_cast<int>(LayerKind::kConvDepthwise)], 17);
  EXPECT_EQ(counts[static_cast<int>(LayerKind::kConv1x1)], 16 + 17 + 1);
  EXPECT_EQ(counts[static_cast<int>(LayerKind::kConvGrouped)], 0);
}

TEST(OpFlops, ResNet18ForwardMatchesThePublishedMultiplyAdds) {
  ModelSpec s;
  s.arch = Architecture::kResNet18;
  s.input_size = 224;
  Result<Graph> g = build_model(s, 1, true);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  int64_t conv = 0, linear = 0;
  for (const Node& n : g->nodes) {
    NodeWork w = node_work(*g, n);
    if (n.op == OpKind::kConv2d) conv += w.flops;
    if (n.op == OpKind::kLinear) linear += w.flops;
  }
  // By hand: conv1 112*112*64*147; layer1 4 x 56*56*64*576; layers 2-4 each a strided 3x3, three
  // 3x3 and a 1x1 downsample, 411,041,792 multiply-adds each (torchvision lists 1.81 GFLOPS).
  EXPECT_EQ(conv, 2 * (118013952LL + 462422016LL + 3 * 411041792LL));
  EXPECT_EQ(linear, 2 * 512 * 10 + 10);
}

TEST(OpFlops, ResNet18BackwardConvWorkIsTwiceTheForwardLessTheStemsData) {
  ModelSpec s;
  s.arch = Architecture::kResNet18;
  Result<Graph> fwd = build_model(s, 2, true);
  ASSERT_TRUE(fwd.is_ok()) << fwd.status().to_string();
  Graph g = training_graph(*fwd);
  int64_t per_pass[kPassKindCount] = {};
  int64_t stem = 0;
  for (const Node& n : g.nodes) {
    NodeWork w = node_work(g, n);
    if (n.op == OpKind::kConv2d || n.op == OpKind::kConv2dBackwardData || n.op == OpKind::kConv2dBackwardWeight)
      per_pass[static_cast<int>(w.pass)] += w.flops;
    if (n.op == OpKind::kConv2d && n.layer == "conv1") stem = w.flops;
  }
  int64_t forward = per_pass[static_cast<int>(PassKind::kForward)];
  EXPECT_GT(stem, 0);
  EXPECT_EQ(per_pass[static_cast<int>(PassKind::kBackwardWeight)], forward);
  EXPECT_EQ(per_pass[static_cast<int>(PassKind::kBackwardData)], forward - stem);
}

TEST(OpFlops, ClassifierOnlyScheduleHasNoConvBackward) {
  ModelSpec s;
  s.arch = Architecture::kMobileNetV2;
  Result<Graph> fwd = build_model(s, 2, true);
  ASSERT_TRUE(fwd.is_ok()) << fwd.status().to_string();
  Graph g = training_graph(*fwd, FreezeMode::kClassifierOnly);
  int updates = 0;
  for (const Node& n : g.nodes) {
    NodeWork w = node_work(g, n);
    if (w.kind != LayerKind::kLinear && w.kind != LayerKind::kLoss && w.kind != LayerKind::kOptimizer) {
      EXPECT_TRUE(w.pass == PassKind::kForward) << op_name(n.op) << " " << n.layer << " " << work_label(w);
    }
    updates += w.pass == PassKind::kUpdate;
  }
  EXPECT_EQ(updates, 2);  // classifier weight and bias
}

}  // namespace
}  // namespace edgetrain
