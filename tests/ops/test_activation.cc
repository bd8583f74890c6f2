// ReLU / ReLU6: values at the edges, finite-difference checks of the naive backward in double,
// and the fast (vectorised, parallel) kernels against the reference on tensors big enough to be
// split over the thread pool.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ops/activation.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::run_op;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

HostTensor tensor(std::vector<float> v) {
  HostTensor t;
  t.shape = Shape{static_cast<int64_t>(v.size())};
  t.data = std::move(v);
  return t;
}

TEST(Activation, ForwardClampsAtZeroAndSixAndPropagatesNan) {
  const HostTensor x = tensor({-2.0f, -0.0f, 0.5f, 5.999f, 6.0f, 7.5f, kNaN});
  for (bool reference : {false, true}) {
    auto relu = run_op(OpKind::kRelu, Attrs{}, {x}, {HostTensor{x.shape, {}}}, reference);
    auto relu6 = run_op(OpKind::kRelu6, Attrs{}, {x}, {HostTensor{x.shape, {}}}, reference);
    const std::vector<float> want_relu = {0, 0, 0.5f, 5.999f, 6.0f, 7.5f};
    const std::vector<float> want_relu6 = {0, 0, 0.5f, 5.999f, 6.0f, 6.0f};
    for (size_t i = 0; i < want_relu.size(); ++i) {
      EXPECT_EQ(relu[0].data[i], want_relu[i]) << "relu element " << i << " reference=" << reference;
      EXPECT_EQ(relu6[0].data[i], want_relu6[i]) << "relu6 element " << i << " reference=" << reference;
    }
    EXPECT_TRUE(std::isnan(relu[0].data[6]));
    EXPECT_TRUE(std::isnan(relu6[0].data[6]));
  }
}

TEST(Activation, BackwardPassesGradientOnlyWhereOutputIsStrictlyInsideTheActiveRange) {
  const HostTensor y = tensor({0.0f, 0.25f, 3.0f, 6.0f, 5.9f});
  const HostTensor dy = tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f});
  for (bool reference : {false, true}) {
    auto relu = run_op(OpKind::kReluBackward, Attrs{}, {dy, y}, {HostTensor{y.shape, {}}}, reference);
    auto relu6 = run_op(OpKind::kRelu6Backward, Attrs{}, {dy, y}, {HostTensor{y.shape, {}}}, reference);
    EXPECT_EQ(relu[0].data, (std::vector<float>{0, 2, 3, 4, 5})) << "reference=" << reference;
    EXPECT_EQ(relu6[0].data, (std::vector<float>{0, 2, 3, 0, 5})) << "reference=" << reference;
  }
}

TEST(Activation, BackwardAccumulatesIntoExistingGradientWhenAsked) {
  const HostTensor y = tensor({0.0f, 1.0f, 6.0f});
  const HostTensor dy = tensor({1.0f, 2.0f, 3.0f});
  Attrs acc;
  acc.accumulate_mask = 1;
  for (bool reference : {false, true}) {
    auto out = run_op(OpKind::kRelu6Backward, acc, {dy, y}, {tensor({10, 20, 30})}, reference);
    EXPECT_EQ(out[0].data, (std::vector<float>{10, 22, 30})) << "reference=" << reference;
  }
}

// x in [-8, 8] but at least 0.05 away from the kinks at 0 and 6, where the derivative jumps.
std::vector<double> inputs_away_from_kinks(size_t n, uint32_t seed) {
  std::vector<double> x = testing::random_doubles(n, seed, -8.0, 8.0);
  for (double& v : x) {
    if (std::fabs(v) < 0.05) v += v < 0 ? -0.05 : 0.05;
    if (std::fabs(v - 6.0) < 0.05) v += v < 6.0 ? -0.05 : 0.05;
  }
  return x;
}

double relu_gradient_error(float cap) {
  const std::vector<double> x = inputs_away_from_kinks(200, 11);
  auto forward = [cap](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(in[0].size());
    relu_forward_naive<double>(static_cast<int64_t>(y.size()), cap, in[0].data(), y.data());
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> y = forward(in);
    std::vector<double> dx(y.size(), 0.0);
    relu_backward_naive<double>(static_cast<int64_t>(y.size()), cap, dy.data(), y.data(), dx.data(), false);
    return std::vector<std::vector<double>>{dx};
  };
  return testing::gradient_check({x}, {0}, forward, backward);
}

TEST(Activation, ReluBackwardMatchesFiniteDifferences) { EXPECT_LT(relu_gradient_error(0.0f), 1e-8); }
TEST(Activation, Relu6BackwardMatchesFiniteDifferences) { EXPECT_LT(relu_gradient_error(6.0f), 1e-8); }

// 3 * 2^15 + 17 elements: split into chunks on 2 threads, with a ragged tail for the vector loop.
TEST(Activation, FastKernelsMatchReferenceOnLargeTensorsWithAndWithoutAccumulation) {
  const HostTensor x = testing::random_tensor(Shape{3 * (1 << 15) + 17}, 1, -8.0f, 8.0f);
  const HostTensor dy = testing::random_tensor(x.shape, 2);
  const HostTensor init = testing::random_tensor(x.shape, 3);
  for (OpKind fwd : {OpKind::kRelu, OpKind::kRelu6}) {
    const OpKind bwd = fwd == OpKind::kRelu ? OpKind::kReluBackward : OpKind::kRelu6Backward;
    auto y_fast = run_op(fwd, Attrs{}, {x}, {HostTensor{x.shape, {}}}, false, 2);
    auto y_ref = run_op(fwd, Attrs{}, {x}, {HostTensor{x.shape, {}}}, true);
    ASSERT_EQ(y_fast[0].data, y_ref[0].data) << op_name(fwd);
    for (uint32_t mask : {0u, 1u}) {
      Attrs a;
      a.accumulate_mask = mask;
      for (int threads : {1, 2}) {
        auto dx_fast = run_op(bwd, a, {dy, y_ref[0]}, {init}, false, threads);
        auto dx_ref = run_op(bwd, a, {dy, y_ref[0]}, {init}, true);
        EXPECT_EQ(dx_fast[0].data, dx_ref[0].data)
            << op_name(bwd) << " accumulate=" << mask << " threads=" << threads;
      }
    }
  }
}

}  // namespace
}  // namespace edgetrain
