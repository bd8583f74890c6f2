// Batch norm + ReLU/ReLU6 fusion (runtime/fusion.h): the fused kernel writes exactly what the
// two ops wrote (fast and reference, training and eval), every fusable pair of a real model is
// fused, what must stay apart stays apart, and compression still finds the post-ReLU tensors.
#include <gtest/gtest.h>

#include <algorithm>

#include "memory/compression.h"
#include "models/model_zoo.h"
#include "runtime/fusion.h"
#include "runtime/graph_builder.h"
#include "runtime/trainer.h"
#include "runtime/training_schedule.h"
#include "tests/support/model_factories.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::max_rel_error;
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
  packed.compression.recompute_norm_outputs = false;  // else nothing is left to pack
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  Result<TrainingSchedule> a = make_training_schedule(mobilenet(), 4, plain);
  Result<TrainingSchedule> b = make_training_schedule(mobilenet(), 4, packed);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(count(a->graph, OpKind::kRelu6), 0);
  EXPECT_GT(count(b->graph, OpKind::kPackSparse), 0);
  // Every ReLU6 backward of MobileNetV2 went into its norm's backward (fuse_activation_backwards),
  // so no 1-bit mask is needed ...
  EXPECT_EQ(count(b->graph, OpKind::kRelu6Backward), 0);
  EXPECT_EQ(count(b->graph, OpKind::kPackMask), 0);
  // ... while ResNet-18's ReLUs after residual adds still read masks.
  Result<TrainingSchedule> r = make_training_schedule(testing::model_factory(Architecture::kResNet18, 32), 2, packed);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(count(r->graph, OpKind::kPackMask), 8);
  EXPECT_EQ(count(r->graph, OpKind::kReluBackward), 0);
}

// --- Activation backward into the norm's backward (fuse_activation_backwards) ---------------

TEST(ActivationBackwardFusion, GatedNormBackwardEqualsActivationBackwardThenNormBackward) {
  const Shape x{3, 5, 4, 20}, c{20};
  for (bool training : {true, false})
    for (FusedActivation act : {FusedActivation::kRelu, FusedActivation::kRelu6})
      for (uint32_t mask : {0u, 7u})
        for (bool reference : {false, true}) {
          SCOPED_TRACE("training=" + std::to_string(training) + " relu6=" + std::to_string(act == FusedActivation::kRelu6) +
                       " accumulate=" + std::to_string(mask) + " reference=" + std::to_string(reference));
          Attrs fwd;
          fwd.norm.training = training;
          fwd.norm.update_running_stats = false;
          fwd.activation = act;
          // Values around 0 and 6 so that both clamps bite.
          const HostTensor xs = random_tensor(x, 1, -8.0f, 8.0f), gamma = random_tensor(c, 2, 0.5f, 3.0f),
                           beta = random_tensor(c, 3, -1.0f, 4.0f), rmean = random_tensor(c, 4),
                           rvar = random_tensor(c, 5, 0.5f, 2.0f);
          std::vector<HostTensor> outs = {HostTensor{x, {}}};
          if (training) outs = {HostTensor{x, {}}, HostTensor{c, {}}, HostTensor{c, {}}};
          // The forward the backward belongs to: the fast kernel, as in a schedule.
          auto y = run_op(OpKind::kBatchNorm, fwd, {xs, gamma, beta, rmean, rvar}, outs, false);
          const HostTensor mean = training ? y[1] : rmean, stat = training ? y[2] : rvar;
          const HostTensor dy_act = random_tensor(x, 6);
          Attrs plain_bwd;
          plain_bwd.norm = fwd.norm;
          plain_bwd.accumulate_mask = mask;
          const std::vector<HostTensor> grads = {random_tensor(x, 7), random_tensor(c, 8), random_tensor(c, 9)};
          const OpKind act_op = act == FusedActivation::kRelu ? OpKind::kReluBackward : OpKind::kRelu6Backward;
          auto dy = run_op(act_op, Attrs{}, {dy_act, y[0]}, {HostTensor{x, {}}}, false);
          auto separate = run_op(OpKind::kBatchNormBackward, plain_bwd, {dy[0], xs, gamma, mean, stat}, grads, false);
          Attrs fused_bwd = plain_bwd;
          fused_bwd.activation = act;
          auto fused = run_op(OpKind::kBatchNormBackward, fused_bwd, {dy_act, xs, gamma, mean, stat, beta}, grads, reference);
          for (size_t o = 0; o < 3; ++o) {
            if (reference) {
              EXPECT_LT(max_rel_error(fused[o].data, separate[o].data), 1e-5) << "output " << o;
            } else {
              EXPECT_TRUE(std::equal(fused[o].data.begin(), fused[o].data.end(), separate[o].data.begin())) << "output " << o;
            }
          }
          int gated = 0;
          for (float v : dy[0].data) gated += v == 0.0f;
          EXPECT_GT(gated, 0);
        }
}

TEST(ActivationBackwardFusion, EveryNormActivationBackwardFusesAndTheResidualReLUsKeepTheirs) {
  Result<TrainingSchedule> m = make_training_schedule(mobilenet(), 4, TrainConfig{});
  ASSERT_TRUE(m.is_ok());
  Result<Graph> forward = mobilenet()(4, true);
  ASSERT_TRUE(forward.is_ok());
  EXPECT_EQ(count(m->graph, OpKind::kRelu6Backward), 0);
  int gated = 0;
  for (const Node& n : m->graph.nodes) gated += n.op == OpKind::kBatchNormBackward && n.attrs.activation == FusedActivation::kRelu6;
  EXPECT_EQ(gated, count(*forward, OpKind::kRelu6));
  Result<TrainingSchedule> r = make_training_schedule(testing::model_factory(Architecture::kResNet18, 32), 2, TrainConfig{});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(count(r->graph, OpKind::kReluBackward), 8) << "the ReLUs after the residual adds";
}

// Training with the fused backward is the plain training bit for bit (the gate decides exactly
// as the activation's backward did), in an arena no larger.
TEST(ActivationBackwardFusion, TrainsBitForBitLikeTheSeparateBackwardInNoMoreMemory) {
  for (const GraphFactory& f : {mobilenet(), testing::model_factory(Architecture::kResNet18, 32)}) {
    std::vector<std::vector<float>> params(2);
    size_t arena[2] = {0, 0};
    for (int fuse = 0; fuse < 2; ++fuse) {
      set_activation_backward_fusion(fuse == 1);
      TrainerOptions o;
      o.batch = 4;
      o.config.optimizer.attrs.momentum = 0.9f;
      Result<std::unique_ptr<Trainer>> tr = Trainer::create(f, o);
      set_activation_backward_fusion(true);
      ASSERT_TRUE(tr.is_ok()) << tr.status().to_string();
      Trainer& t = **tr;
      arena[fuse] = t.memory().train_arena_bytes;
      for (int step = 0; step < 3; ++step) {
        Rng rng(40 + step);
        for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
        for (int64_t i = 0; i < o.batch; ++i) t.train_labels()[i] = static_cast<int32_t>(rng.below(10));
        ASSERT_TRUE(t.train_step(0.05f).is_ok());
      }
      for (int i = 0; i < t.params().size(); ++i)
        params[fuse].insert(params[fuse].end(), t.params().data(i), t.params().data(i) + t.params().spec(i).shape.numel());
    }
    ASSERT_EQ(params[0].size(), params[1].size());
    EXPECT_TRUE(std::equal(params[0].begin(), params[0].end(), params[1].begin()));
    EXPECT_LE(arena[1], arena[0]);
  }
}

}  // namespace
}  // namespace edgetrain
