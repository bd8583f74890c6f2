// Batch norm: shape rule, hand-computed forward and running-statistics update (torch semantics),
// eval mode, finite-difference gradient checks of the double reference in both modes, and the
// fast kernels against the reference (accumulate, null outputs, 100k rows, thread count).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops/batch_norm.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::absent;
using testing::HostTensor;
using testing::max_rel_error;
using testing::random_tensor;
using testing::run_op;

HostTensor tensor(const Shape& shape, std::vector<float> data) {
  HostTensor t;
  t.shape = shape;
  t.data = std::move(data);
  return t;
}

Attrs norm_attrs(bool training, bool update = true) {
  Attrs a;
  a.norm.training = training;
  a.norm.update_running_stats = update;
  return a;
}

// rows = 4, C = 2: channel 0 holds {1,2,3,4}, channel 1 holds {0,0,4,4}.
HostTensor small_x() { return tensor({2, 1, 2, 2}, {1, 0, 2, 0, 3, 4, 4, 4}); }
HostTensor small_gamma() { return tensor({2}, {2.0f, 0.5f}); }
HostTensor small_beta() { return tensor({2}, {1.0f, -1.0f}); }
HostTensor small_running_mean() { return tensor({2}, {0.5f, -1.0f}); }
HostTensor small_running_var() { return tensor({2}, {2.0f, 1.0f}); }

TEST(BatchNormShape, AcceptsNhwcWithMatchingParameters) {
  Result<Shape> s = batch_norm_output_shape({2, 3, 3, 8}, {8}, NormAttrs{});
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(*s, Shape({2, 3, 3, 8}));
}

TEST(BatchNormShape, RejectsBadShapesAndOptionsWithClearMessages) {
  NormAttrs a;
  Result<Shape> r = batch_norm_output_shape({8}, {8}, a);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("rank"), std::string::npos) << r.status().message();
  r = batch_norm_output_shape({2, 3, 3, 8}, {4}, a);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("[4]"), std::string::npos) << r.status().message();
  r = batch_norm_output_shape({1, 1, 1, 8}, {8}, a);  // one value per channel: torch refuses
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("more than 1 value"), std::string::npos) << r.status().message();
  NormAttrs eval = a;
  eval.training = false;
  EXPECT_TRUE(batch_norm_output_shape({1, 1, 1, 8}, {8}, eval).is_ok());
  NormAttrs bad_eps = a;
  bad_eps.eps = 0.0f;
  EXPECT_FALSE(batch_norm_output_shape({2, 3, 3, 8}, {8}, bad_eps).is_ok());
  NormAttrs bad_momentum = a;
  bad_momentum.momentum = 1.5f;
  EXPECT_FALSE(batch_norm_output_shape({2, 3, 3, 8}, {8}, bad_momentum).is_ok());
}

class BatchNormBothKernels : public ::testing::TestWithParam<bool> {};  // param: reference

TEST_P(BatchNormBothKernels, TrainingForwardMatchesHandComputedExample) {
  std::vector<HostTensor> after;
  auto out = run_op(OpKind::kBatchNorm, norm_attrs(true),
                    {small_x(), small_gamma(), small_beta(), small_running_mean(), small_running_var()},
                    {HostTensor{{2, 1, 2, 2}}, HostTensor{{2}}, HostTensor{{2}}}, GetParam(), 2, &after);
  // mean {2.5, 2}, biased var {1.25, 4}, eps 1e-5 (computed by hand with python's math module).
  const std::vector<double> y = {-1.6832708399378538, -1.4999993750011718, 0.105576386687382,
                                 -1.4999993750011718, 1.894423613312618,   -0.5000006249988281,
                                 3.6832708399378538,  -0.5000006249988281};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(out[0].data[i], y[i], 1e-6) << i;
  EXPECT_NEAR(out[1].data[0], 2.5, 1e-7);
  EXPECT_NEAR(out[1].data[1], 2.0, 1e-7);
  EXPECT_NEAR(out[2].data[0], 0.894423613312618, 1e-7);
  EXPECT_NEAR(out[2].data[1], 0.49999937500117186, 1e-7);
}

TEST_P(BatchNormBothKernels, RunningStatsUseMomentumAndUnbiasedVariance) {
  std::vector<HostTensor> after;
  run_op(OpKind::kBatchNorm, norm_attrs(true),
         {small_x(), small_gamma(), small_beta(), small_running_mean(), small_running_var()},
         {HostTensor{{2, 1, 2, 2}}, HostTensor{{2}}, HostTensor{{2}}}, GetParam(), 2, &after);
  // running = 0.9 * running + 0.1 * batch; unbiased var = biased * 4/3: {1.25*4/3, 4*4/3}.
  EXPECT_NEAR(after[3].data[0], 0.9 * 0.5 + 0.1 * 2.5, 1e-6);
  EXPECT_NEAR(after[3].data[1], 0.9 * -1.0 + 0.1 * 2.0, 1e-6);
  EXPECT_NEAR(after[4].data[0], 0.9 * 2.0 + 0.1 * (1.25 * 4.0 / 3.0), 1e-6);  // 1.9666667
  EXPECT_NEAR(after[4].data[1], 0.9 * 1.0 + 0.1 * (4.0 * 4.0 / 3.0), 1e-6);   // 1.4333333
  // The running variance is not the biased one: 0.9*2 + 0.1*1.25 = 1.925 would be wrong.
  EXPECT_GT(std::fabs(after[4].data[0] - 1.925f), 1e-3);
}

TEST_P(BatchNormBothKernels, RunningStatsUntouchedWhenUpdateIsOff) {
  std::vector<HostTensor> after;
  run_op(OpKind::kBatchNorm, norm_attrs(true, /*update=*/false),
         {small_x(), small_gamma(), small_beta(), small_running_mean(), small_running_var()},
         {HostTensor{{2, 1, 2, 2}}, HostTensor{{2}}, HostTensor{{2}}}, GetParam(), 2, &after);
  EXPECT_EQ(after[3].data, small_running_mean().data);
  EXPECT_EQ(after[4].data, small_running_var().data);
}

TEST_P(BatchNormBothKernels, EvalNormalisesWithRunningStatsAndLeavesThemAlone) {
  std::vector<HostTensor> after;
  auto out = run_op(OpKind::kBatchNorm, norm_attrs(false),
                    {small_x(), small_gamma(), small_beta(), small_running_mean(), small_running_var()},
                    {HostTensor{{2, 1, 2, 2}}}, GetParam(), 2, &after);
  // (x - running_mean) / sqrt(running_var + eps) * gamma + beta, by hand.
  const std::vector<double> y = {1.7071050134262236, -0.5000024999812501, 3.121315040278671,
                                 -0.5000024999812501, 4.535525067131118,  1.4999875000937495,
                                 5.949735093983565,  1.4999875000937495};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(out[0].data[i], y[i], 2e-6) << i;
  EXPECT_EQ(after[3].data, small_running_mean().data);
  EXPECT_EQ(after[4].data, small_running_var().data);
}

INSTANTIATE_TEST_SUITE_P(FastAndReference, BatchNormBothKernels, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Reference" : "Fast"; });

// --- gradient checks of the double reference -------------------------------------------------

constexpr int64_t kRows = 18, kC = 4;  // x [2,3,3,4]

double check_gradients(bool training) {
  NormAttrs a;
  a.training = training;
  a.update_running_stats = false;
  std::vector<double> running_mean = testing::random_doubles(kC, 11, -0.5, 0.5);
  std::vector<double> running_var = testing::random_doubles(kC, 12, 0.5, 2.0);
  std::vector<std::vector<double>> inputs = {testing::random_doubles(kRows * kC, 1, -2, 2),
                                             testing::random_doubles(kC, 2, 0.5, 1.5),
                                             testing::random_doubles(kC, 3, -1, 1)};
  auto forward = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(kRows * kC), mean(kC), invstd(kC);
    batch_norm_forward_naive<double>(kRows, kC, a, in[0].data(), in[1].data(), in[2].data(),
                                     running_mean.data(), running_var.data(), y.data(),
                                     training ? mean.data() : nullptr, training ? invstd.data() : nullptr);
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> y(kRows * kC), mean(kC), invstd(kC);
    batch_norm_forward_naive<double>(kRows, kC, a, in[0].data(), in[1].data(), in[2].data(),
                                     running_mean.data(), running_var.data(), y.data(), mean.data(),
                                     invstd.data());
    std::vector<double> dx(kRows * kC), dgamma(kC), dbeta(kC);
    batch_norm_backward_naive<double>(kRows, kC, a, dy.data(), in[0].data(), in[1].data(),
                                      training ? mean.data() : running_mean.data(),
                                      training ? invstd.data() : running_var.data(), dx.data(),
                                      dgamma.data(), dbeta.data(), 0);
    return std::vector<std::vector<double>>{dx, dgamma, dbeta};
  };
  return testing::gradient_check(inputs, {0, 1, 2}, forward, backward);
}

TEST(BatchNormGradient, TrainingModeMatchesFiniteDifferencesForXGammaBeta) {
  EXPECT_LT(check_gradients(true), 1e-7);
}

TEST(BatchNormGradient, EvalModeMatchesFiniteDifferencesForXGammaBeta) {
  EXPECT_LT(check_gradients(false), 1e-7);
}

// --- fast kernels against the reference -------------------------------------------------------

struct BnInputs {
  HostTensor x, gamma, beta, running_mean, running_var;
};

BnInputs bn_inputs(const Shape& x_shape, uint32_t seed, float x_offset = 0.0f) {
  const int64_t c = x_shape[x_shape.rank - 1];
  BnInputs in{random_tensor(x_shape, seed, -2.0f, 2.0f), random_tensor({c}, seed + 1, 0.5f, 1.5f),
              random_tensor({c}, seed + 2, -1.0f, 1.0f), random_tensor({c}, seed + 3, -0.5f, 0.5f),
              random_tensor({c}, seed + 4, 0.5f, 2.0f)};
  for (float& v : in.x.data) v += x_offset;
  return in;
}

void expect_forward_fast_matches_reference(const Shape& xs, bool training, float x_offset, double tol) {
  SCOPED_TRACE(xs.to_string() + (training ? " training" : " eval"));
  BnInputs in = bn_inputs(xs, 21, x_offset);
  const int64_t c = xs[xs.rank - 1];
  std::vector<HostTensor> outs = {HostTensor{xs}};
  if (training) outs.insert(outs.end(), {HostTensor{{c}}, HostTensor{{c}}});
  std::vector<HostTensor> after_fast, after_ref;
  Attrs a = norm_attrs(training);
  auto inputs = std::vector<HostTensor>{in.x, in.gamma, in.beta, in.running_mean, in.running_var};
  auto fast = run_op(OpKind::kBatchNorm, a, inputs, outs, false, 2, &after_fast);
  auto ref = run_op(OpKind::kBatchNorm, a, inputs, outs, true, 2, &after_ref);
  for (size_t i = 0; i < outs.size(); ++i)
    EXPECT_LT(max_rel_error(fast[i].data, ref[i].data), tol) << "output " << i;
  EXPECT_LT(max_rel_error(after_fast[3].data, after_ref[3].data), tol) << "running_mean";
  EXPECT_LT(max_rel_error(after_fast[4].data, after_ref[4].data), tol) << "running_var";
}

TEST(BatchNormFast, ForwardMatchesReferenceInBothModes) {
  for (bool training : {true, false}) {
    expect_forward_fast_matches_reference({4, 28, 28, 40}, training, 0.0f, 2e-6);  // 7 row blocks
    expect_forward_fast_matches_reference({3, 5, 7, 19}, training, 0.0f, 2e-6);    // odd channels
  }
}

TEST(BatchNormFast, ForwardStatisticsStayAccurateOver100kRowsWithLargeMean) {
  // 100352 rows with mean ~100 and std ~1: a naive float E[x^2]-E[x]^2 would lose all digits.
  expect_forward_fast_matches_reference({2, 224, 224, 3}, true, 100.0f, 1e-5);
}

TEST(BatchNormFast, ForwardAndBackwardAreBitIdenticalForOneAndTwoThreads) {
  // The sums' order depends on the row count only. Two threads split blocks of rows and, where
  // the blocks do not split evenly, groups of 16-channel slices (1 block of 392 rows; 3 blocks
  // and 8 channels past the last slice; 19 channels alone, too few to split).
  for (const Shape& xs : {Shape{4, 20, 20, 24}, Shape{2, 14, 14, 192}, Shape{3, 16, 32, 72}, Shape{2, 2, 2, 19}}) {
    SCOPED_TRACE(xs.to_string());
    const int64_t c = xs[xs.rank - 1];
    BnInputs in = bn_inputs(xs, 5);
    auto inputs = std::vector<HostTensor>{in.x, in.gamma, in.beta, in.running_mean, in.running_var};
    std::vector<HostTensor> outs = {HostTensor{xs}, HostTensor{{c}}, HostTensor{{c}}};
    auto one = run_op(OpKind::kBatchNorm, norm_attrs(true), inputs, outs, false, 1);
    auto two = run_op(OpKind::kBatchNorm, norm_attrs(true), inputs, outs, false, 2);
    for (size_t i = 0; i < outs.size(); ++i) EXPECT_EQ(one[i].data, two[i].data) << "forward output " << i;
    auto grads = std::vector<HostTensor>{random_tensor(xs, 6), in.x, in.gamma, one[1], one[2]};
    std::vector<HostTensor> grad_outs = {HostTensor{xs}, HostTensor{{c}}, HostTensor{{c}}};
    auto back_one = run_op(OpKind::kBatchNormBackward, norm_attrs(true), grads, grad_outs, false, 1);
    auto back_two = run_op(OpKind::kBatchNormBackward, norm_attrs(true), grads, grad_outs, false, 2);
    for (size_t i = 0; i < grad_outs.size(); ++i)
      EXPECT_EQ(back_one[i].data, back_two[i].data) << "backward output " << i;
  }
}

TEST(BatchNormFast, ApplyingSavedStatisticsGivesTheForwardsOutputToTheBit) {
  // memory/norm_recompute.h recomputes a training norm's output from its input and the
  // statistics its forward saved: equal to the forward's y on the fast kernel, for every fused
  // activation and odd channel counts; the reference kernel within rounding of it.
  for (const Shape& xs : {Shape{4, 20, 20, 24}, Shape{3, 5, 7, 19}})
    for (FusedActivation act : {FusedActivation::kNone, FusedActivation::kRelu, FusedActivation::kRelu6}) {
      SCOPED_TRACE(xs.to_string() + " activation " + std::to_string(static_cast<int>(act)));
      const int64_t c = xs[xs.rank - 1];
      BnInputs in = bn_inputs(xs, 9);
      Attrs a = norm_attrs(true);
      a.activation = act;
      auto fwd = run_op(OpKind::kBatchNorm, a, {in.x, in.gamma, in.beta, in.running_mean, in.running_var},
                        {HostTensor{xs}, HostTensor{{c}}, HostTensor{{c}}}, false, 2);
      Attrs apply = a;
      apply.norm.apply_saved = true;
      apply.norm.update_running_stats = false;
      std::vector<HostTensor> after;
      auto again = run_op(OpKind::kBatchNorm, apply, {in.x, in.gamma, in.beta, fwd[1], fwd[2]}, {HostTensor{xs}},
                          false, 2, &after);
      EXPECT_EQ(again[0].data, fwd[0].data);
      EXPECT_EQ(after[3].data, fwd[1].data);  // the saved statistics are only read
      EXPECT_EQ(after[4].data, fwd[2].data);
      auto ref = run_op(OpKind::kBatchNorm, apply, {in.x, in.gamma, in.beta, fwd[1], fwd[2]}, {HostTensor{xs}}, true, 1);
      EXPECT_LT(max_rel_error(ref[0].data, fwd[0].data), 1e-6);
    }
}

TEST(BatchNormFast, BackwardMatchesReferenceWithAccumulateAndNullOutputs) {
  const Shape xs = {4, 28, 28, 40};
  const int64_t c = 40;
  for (bool training : {true, false}) {
    BnInputs in = bn_inputs(xs, 31);
    HostTensor dy = random_tensor(xs, 32);
    HostTensor stat0 = training ? random_tensor({c}, 33, -0.3f, 0.3f) : in.running_mean;
    HostTensor stat1 = training ? random_tensor({c}, 34, 0.5f, 2.0f) : in.running_var;
    if (training) {  // the saved statistics of this very x, as the forward would give them
      auto fwd = run_op(OpKind::kBatchNorm, norm_attrs(true),
                        {in.x, in.gamma, in.beta, in.running_mean, in.running_var},
                        {HostTensor{xs}, HostTensor{{c}}, HostTensor{{c}}}, true);
      stat0 = fwd[1];
      stat1 = fwd[2];
    }
    for (uint32_t mask : {0u, 7u, 5u, 2u}) {
      // present: bit i set = output i is requested.
      for (uint32_t present : {7u, 1u, 6u, 4u}) {
        SCOPED_TRACE(std::string(training ? "training" : "eval") + " mask " + std::to_string(mask) +
                     " present " + std::to_string(present));
        Attrs a = norm_attrs(training);
        a.accumulate_mask = mask;
        std::vector<HostTensor> outs = {random_tensor(xs, 41), random_tensor({c}, 42),
                                        random_tensor({c}, 43)};
        for (int i = 0; i < 3; ++i)
          if (!((present >> i) & 1u)) outs[i] = absent(outs[i].shape);
        auto inputs = std::vector<HostTensor>{dy, in.x, in.gamma, stat0, stat1};
        auto fast = run_op(OpKind::kBatchNormBackward, a, inputs, outs, false);
        auto ref = run_op(OpKind::kBatchNormBackward, a, inputs, outs, true);
        for (int i = 0; i < 3; ++i) {
          if (!((present >> i) & 1u)) continue;
          // dgamma and dbeta are sums over 3136 rows: compare relative to their size.
          EXPECT_LT(max_rel_error(fast[i].data, ref[i].data), i == 0 ? 2e-6 : 1e-5) << "output " << i;
        }
      }
    }
  }
}

TEST(BatchNormFast, BackwardAccumulateAddsExactlyTheGradient) {
  // fast(accumulate into g0) - g0 == fast(overwrite): checks bits 0, 1, 2 are each honoured.
  const Shape xs = {2, 6, 6, 16};
  BnInputs in = bn_inputs(xs, 51);
  auto fwd = run_op(OpKind::kBatchNorm, norm_attrs(true),
                    {in.x, in.gamma, in.beta, in.running_mean, in.running_var},
                    {HostTensor{xs}, HostTensor{{16}}, HostTensor{{16}}}, true);
  auto inputs = std::vector<HostTensor>{random_tensor(xs, 52), in.x, in.gamma, fwd[1], fwd[2]};
  std::vector<HostTensor> init = {random_tensor(xs, 53), random_tensor({16}, 54), random_tensor({16}, 55)};
  Attrs overwrite = norm_attrs(true);
  auto plain = run_op(OpKind::kBatchNormBackward, overwrite, inputs, init, false);
  for (int bit = 0; bit < 3; ++bit) {
    Attrs acc = norm_attrs(true);
    acc.accumulate_mask = 1u << bit;
    auto got = run_op(OpKind::kBatchNormBackward, acc, inputs, init, false);
    for (int i = 0; i < 3; ++i) {
      for (size_t k = 0; k < got[i].data.size(); ++k) {
        const float expected = i == bit ? init[i].data[k] + plain[i].data[k] : plain[i].data[k];
        ASSERT_NEAR(got[i].data[k], expected, 1e-5) << "bit " << bit << " output " << i << " elem " << k;
      }
    }
  }
}

}  // namespace
}  // namespace edgetrain
