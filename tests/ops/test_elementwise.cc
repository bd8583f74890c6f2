// Residual add, gradient copy and flatten: shape rules, exact results, and the parallel fast
// kernels against the reference on tensors big enough to be split.
#include <gtest/gtest.h>

#include <limits>

#include "ops/elementwise.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::run_op;

// 2^17 + 3 elements as NHWC: split over 2 threads, with a ragged tail for the vector loops.
const Shape kBig{1, 1, 5, 26215};

TEST(Elementwise, AddShapeRuleRejectsDifferentShapesAndNamesBoth) {
  auto ok = add_output_shape(Shape{2, 4, 4, 8}, Shape{2, 4, 4, 8});
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(*ok, (Shape{2, 4, 4, 8}));
  auto bad = add_output_shape(Shape{2, 4, 4, 8}, Shape{2, 4, 4, 16});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("[2, 4, 4, 8]"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("[2, 4, 4, 16]"), std::string::npos) << bad.status().message();
}

TEST(Elementwise, FlattenShapeRuleKeepsBatchAndMultipliesTheRest) {
  EXPECT_EQ(*flatten_output_shape(Shape{8, 7, 7, 32}), (Shape{8, 7 * 7 * 32}));
  EXPECT_EQ(*flatten_output_shape(Shape{8, 10}), (Shape{8, 10}));
  EXPECT_FALSE(flatten_output_shape(Shape{}).is_ok());
}

TEST(Elementwise, AddSumsOperandsElementwiseFastAndReference) {
  const HostTensor a = testing::random_tensor(kBig, 1);
  const HostTensor b = testing::random_tensor(kBig, 2);
  for (bool reference : {false, true}) {
    auto y = run_op(OpKind::kAdd, Attrs{}, {a, b}, {HostTensor{kBig, {}}}, reference);
    for (size_t i = 0; i < a.data.size(); ++i)
      ASSERT_EQ(y[0].data[i], a.data[i] + b.data[i]) << "element " << i << " reference=" << reference;
  }
}

TEST(Elementwise, GradCopyOverwritesOrAccumulatesPerMaskBit) {
  const HostTensor dy = testing::random_tensor(kBig, 3);
  HostTensor init = testing::random_tensor(kBig, 4);
  for (bool reference : {false, true}) {
    Attrs overwrite;
    HostTensor nan_init = init;
    for (float& v : nan_init.data) v = std::numeric_limits<float>::quiet_NaN();
    auto copied = run_op(OpKind::kGradCopy, overwrite, {dy}, {nan_init}, reference);
    EXPECT_EQ(copied[0].data, dy.data) << "reference=" << reference;

    Attrs acc;
    acc.accumulate_mask = 1;
    auto summed = run_op(OpKind::kGradCopy, acc, {dy}, {init}, reference);
    for (size_t i = 0; i < dy.data.size(); ++i)
      ASSERT_EQ(summed[0].data[i], init.data[i] + dy.data[i]) << "element " << i << " reference=" << reference;
  }
}

TEST(Elementwise, FlattenCopiesTheBytesUnchanged) {
  const HostTensor x = testing::random_tensor(kBig, 5);
  const Shape flat{1, kBig.numel()};
  auto y = run_op(OpKind::kFlatten, Attrs{}, {x}, {HostTensor{flat, {}}}, false);
  EXPECT_EQ(y[0].data, x.data);
}

}  // namespace
}  // namespace edgetrain
