// Dropout: the mask rate, the backward against finite differences with the mask fixed, fast
// kernels against the reference, and no dropout node in evaluation graphs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "models/model_zoo.h"
#include "ops/dropout.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;

TEST(Dropout, KeepsAboutOneMinusPAndScalesTheRest) {
  const int64_t n = 100000;
  std::vector<float> x(n, 1.0f), y(n);
  std::vector<uint64_t> mask((n + 63) / 64);
  dropout_forward_naive<float>(n, 0.2f, 7, 3, x.data(), y.data(), mask.data());
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool bit = (mask[i / 64] >> (i % 64)) & 1u;
    kept += bit;
    EXPECT_FLOAT_EQ(y[i], bit ? 1.25f : 0.0f);
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.8, 0.01);
  // Another salt or seed gives another mask.
  std::vector<float> y2(n);
  std::vector<uint64_t> mask2(mask.size());
  dropout_forward_naive<float>(n, 0.2f, 7, 4, x.data(), y2.data(), mask2.data());
  EXPECT_NE(mask, mask2);
}

TEST(Dropout, BackwardMatchesFiniteDifferences) {
  const int64_t n = 300;
  std::vector<uint64_t> mask((n + 63) / 64);
  auto fwd = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(n);
    dropout_forward_naive<double>(n, 0.3f, 11, 1, in[0].data(), y.data(), mask.data());
    return y;
  };
  auto bwd = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> y(n), dx(n);
    dropout_forward_naive<double>(n, 0.3f, 11, 1, in[0].data(), y.data(), mask.data());
    dropout_backward_naive<double>(n, 0.3f, dy.data(), mask.data(), dx.data(), false);
    return std::vector<std::vector<double>>{dx};
  };
  EXPECT_LT(testing::gradient_check({testing::random_doubles(n, 3)}, {0}, fwd, bwd), 1e-7);
}

// Whole 64-element words take the eight-lane path, the last partial word the one-element loop:
// both must give the reference's mask bits and outputs exactly, for any p.
TEST(Dropout, FastForwardEqualsTheReferenceForAnyP) {
  for (float p : {0.0f, 0.1f, 0.5f, 0.9f, 1.0f / 3.0f}) {
    Attrs a;
    a.dropout.p = p;
    a.dropout.salt = 9;
    StepScalars step;
    step.seed = 7;
    HostTensor x = testing::random_tensor(Shape{3, 700}, 4);
    const int64_t words = (2100 + 63) / 64;
    auto out = [&] { return std::vector<HostTensor>{HostTensor{Shape{3, 700}, {}}, HostTensor{Shape{words * 2}, {}}}; };
    auto fast = testing::run_op(OpKind::kDropout, a, {x}, out(), false, 2, nullptr, step);
    auto ref = testing::run_op(OpKind::kDropout, a, {x}, out(), true, 2, nullptr, step);
    EXPECT_EQ(fast[0].data, ref[0].data) << "p " << p;
    EXPECT_EQ(std::memcmp(fast[1].data.data(), ref[1].data.data(), fast[1].data.size() * sizeof(float)), 0) << "p " << p;
  }
}

TEST(Dropout, FastKernelsEqualTheReference) {
  Attrs a;
  a.dropout.p = 0.2f;
  a.dropout.salt = 5;
  StepScalars step;
  step.seed = 42;
  HostTensor x = testing::random_tensor(Shape{4, 1000}, 1);
  int64_t words = (4000 + 63) / 64;
  auto out = [&] { return std::vector<HostTensor>{HostTensor{Shape{4, 1000}, {}}, HostTensor{Shape{words * 2}, {}}}; };
  auto fast = testing::run_op(OpKind::kDropout, a, {x}, out(), false, 2, nullptr, step);
  auto ref = testing::run_op(OpKind::kDropout, a, {x}, out(), true, 2, nullptr, step);
  EXPECT_EQ(fast[0].data, ref[0].data);
  // The mask words hold bit patterns (some look like NaN as floats): compare bytes.
  ASSERT_EQ(fast[1].data.size(), ref[1].data.size());
  EXPECT_EQ(std::memcmp(fast[1].data.data(), ref[1].data.data(), fast[1].data.size() * sizeof(float)), 0);
  HostTensor dy = testing::random_tensor(Shape{4, 1000}, 2);
  for (uint32_t acc : {0u, 1u}) {
    a.accumulate_mask = acc;
    HostTensor init = testing::random_tensor(Shape{4, 1000}, 3);
    auto bf = testing::run_op(OpKind::kDropoutBackward, a, {dy, fast[1]}, {init}, false);
    auto br = testing::run_op(OpKind::kDropoutBackward, a, {dy, fast[1]}, {init}, true);
    EXPECT_LT(testing::max_rel_error(bf[0].data, br[0].data), 1e-6);
  }
}

TEST(Dropout, OnlyTrainingGraphsHaveIt) {
  ModelSpec s;
  s.arch = Architecture::kMobileNetV2;
  s.width_mult = 0.35f;
  auto count = [&](bool training) {
    Result<Graph> g = build_model(s, 2, training);
    EXPECT_TRUE(g.is_ok());
    int n = 0;
    for (const Node& node : g->nodes) n += node.op == OpKind::kDropout;
    return n;
  };
  EXPECT_EQ(count(true), 1);
  EXPECT_EQ(count(false), 0);
  s.dropout = 0.0f;
  EXPECT_EQ(count(true), 0);
}

}  // namespace
}  // namespace edgetrain
