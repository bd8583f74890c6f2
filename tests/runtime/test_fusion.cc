// Batch norm + ReLU/ReLU6 fusion (runtime/fusion.h): the fused kernel writes exactly what the
// two ops wrote (fast and reference, training and eval), every fusable pair of a real model is
// fused, what must stay apart stays apart, and compression still finds the post-ReLU tensors.
#include <gtest/gtest.h>

#include <algorithm>

#include "memory/compression.h"
#include "models/model_zoo.h"
#include "runtime/fusion.h"
#include "runtime/graph_builder.h"
#include "runtime/training_schedule.h"
#include "tests/support/model_factories.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::random_tensor;
using testing::run_op;

TEST(NormActivationFusion, FusedKernelEqualsNormThenActivationBitForBit) {
  const Shape x{4, 5, 3, 24}, c{24};
  for (bool training : {true, false})
    for (FusedActivation act : {FusedActivation::kRelu, FusedActivation::kRelu6})
      for (bool reference : {false, true}) {
        Attrs plain;
        plain.norm.training = training;
        plain.norm.update_running_stats = false;
        Attrs fused = plain;
        fused.activation = act;
        // Values around 0 and 6 so that both clamps bite.
        std::vector<HostTensor> in = {random_tensor(x, 1, -8.0f, 8.0f), random_tensor(c, 2, 0.5f, 3.0f),
                                      random_tensor(c, 3, -1.0f, 4.0f), random_tensor(c, 4), random_tensor(c, 5, 0.5f, 2.0f)};
        std::vector<HostTensor> outs = {HostTensor{x, {}}};
        if (training) outs = {HostTensor{x, {}}, HostTensor{c, {}}, HostTensor{c, {}}};
        auto norm = run_op(OpKind::kBatchNorm, plain, in, outs, reference);
        auto both = run_op(OpKind::kBatchNorm, fused, in, outs, reference);
        const OpKind act_op = act == FusedActivation::kRelu ? OpKind::kRelu : OpKind::kRelu6;
        auto activated = run_op(act_op, Attrs{}, {norm[0]}, {HostTensor{x, {}}}, reference);
        ASSERT_EQ(both[0].data.size(), activated[0].data.size());
        EXPECT_TRUE(std::equal(both[0].data.begin(), both[0].data.end(), activated[0].data.begin()))
            << "training=" << training << " relu6=" << (act == FusedActivation::kRelu6) << " reference=" << reference;
        int clamped = 0;
        for (float v : both[0].data) clamped += v == 0.0f || v == 6.0f;
        EXPECT_GT(clamped, 0);
      }
}

TEST(NormActivationFusion, FusedAddEqualsAddThenActivationBitForBit) {
  const Shape x{3, 4, 4, 20};
  for (FusedActivation act : {FusedActivation::kRelu, FusedActivation::kRelu6})
    for (bool reference : {false, true}) {
      Attrs fused;
      fused.activation = act;
      std::vector<HostTensor> in = {random_tensor(x, 6, -5.0f, 5.0f), random_tensor(x, 7, -5.0f, 5.0f)};
      auto sum = run_op(OpKind::kAdd, Attrs{}, in, {HostTensor{x, {}}}, reference);
      auto both = run_op(OpKind::kAdd, fused, in, {HostTensor{x, {}}}, reference);
      const OpKind act_op = act == FusedActivation::kRelu ? OpKind::kRelu : OpKind::kRelu6;
      auto activated = run_op(act_op, Attrs{}, {sum[0]}, {HostTensor{x, {}}}, reference);
      EXPECT_TRUE(std::equal(both[0].data.begin(), both[0].data.end(), activated[0].data.begin()))
          << "relu6=" << (act == FusedActivation::kRelu6) << " reference=" << reference;
    }
}

GraphFactory mobilenet() { return testing::model_factory(Architecture::kMobileNetV2, 32, 0.35f); }

int count(const Graph& g, OpKind op) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.op == op; }));
}

TEST(NormActivationFusion, FusesEveryNormActivationPairOfMobileNetV2InTrainingAndEval) {
  for (bool training : {true, false}) {
    Result<Graph> g = mobilenet()(4, training);
    ASSERT_TRUE(g.is_ok());
    const int relu6 = count(*g, OpKind::kRelu6);
    ASSERT_GT(relu6, 0);
    EXPECT_EQ(fuse_activations(*g), relu6) << "every ReLU6 of MobileNetV2 follows a batch norm";
    EXPECT_EQ(count(*g, OpKind::kRelu6), 0);
    int fused = 0;
    for (const Node& n : g->nodes) fused += n.op == OpKind::kBatchNorm && n.attrs.activation == FusedActivation::kRelu6;
    EXPECT_EQ(fused, relu6);
    EXPECT_EQ(fuse_activations(*g), 0) << "fusing twice changes nothing";
  }
}

TEST(NormActivationFusion, FusesEveryReluOfResNet18IntoItsNormOrResidualAdd) {
  Result<Graph> g = build_model(ModelSpec{Architecture::kResNet18}, 2, true);
  ASSERT_TRUE(g.is_ok());
  const int relus = count(*g, OpKind::kRelu);
  EXPECT_EQ(fuse_activations(*g), relus);
  int adds = 0;
  for (const Node& n : g->nodes) adds += n.op == OpKind::kAdd && n.attrs.activation == FusedActivation::kRelu;
  EXPECT_EQ(adds, 8) << "one per basic block";
}

TEST(NormActivationFusion, LeavesANormWhoseOutputHasOtherReadersAlone) {
  GraphBuilder b(2, 4, 4, 8, /*training=*/true);
  ValueId y = b.batch_norm(b.input(), "bn");
  ValueId z = b.relu(y);
  ValueId s = b.add(y, z);  // y read twice: the fused node could not provide it
  b.softmax_cross_entropy(b.linear(b.flatten(s), "fc", 3));
  Result<Graph> g = b.finish();
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  EXPECT_EQ(fuse_activations(*g), 0);
  EXPECT_EQ(count(*g, OpKind::kRelu), 1);
}

TEST(NormActivationFusion, CompressionStillPacksTheFusedNormsOutputs) {
  TrainConfig plain, packed;
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  Result<TrainingSchedule> a = make_training_schedule(mobilenet(), 4, plain);
  Result<TrainingSchedule> b = make_training_schedule(mobilenet(), 4, packed);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(count(a->graph, OpKind::kRelu6), 0);
  EXPECT_GT(count(b->graph, OpKind::kPackMask), 0);
  EXPECT_GT(count(b->graph, OpKind::kPackSparse), 0);
  EXPECT_EQ(count(b->graph, OpKind::kRelu6Backward), 0) << "every ReLU6 backward reads a mask";
}

}  // namespace
}  // namespace edgetrain
