#include "runtime/gradients.h"

#include "runtime/status.h"

namespace edgetrain {
namespace {

// Sets bit `index` of the node's accumulate mask when that output already holds a gradient.
void mark(Attrs& a, int index, bool accumulate) {
  if (accumulate) a.accumulate_mask |= 1u << index;
}

// y = op(x): one backward node (inputs given) writing dx.
void unary(GradContext& c, const Node& f, OpKind op, std::vector<ValueId> inputs, const Attrs& attrs) {
  bool acc = false;
  ValueId dx = c.grad_output(f.inputs[0], &acc);
  if (dx == kNoValue) return;
  Attrs a = attrs;
  mark(a, 0, acc);
  c.emit(op, a, std::move(inputs), {dx}, f);
}

// conv2d and linear share the shape of their gradient: weight/bias from (dy, x), data from (dy, w).
void weighted(GradContext& c, const Node& f, OpKind backward_weight, OpKind backward_data) {
  ValueId x = f.inputs[0], w = f.inputs[1], b = f.inputs.size() > 2 ? f.inputs[2] : kNoValue;
  ValueId dy = c.grad(f.outputs[0]);
  if (dy == kNoValue) return;
  bool acc_w = false, acc_b = false;
  ValueId dw = c.grad_output(w, &acc_w);
  ValueId db = b == kNoValue ? kNoValue : c.grad_output(b, &acc_b);
  if (dw != kNoValue || db != kNoValue) {
    Attrs a = f.attrs;
    a.accumulate_mask = 0;
    mark(a, 0, acc_w);
    mark(a, 1, acc_b);
    c.emit(backward_weight, a, {dy, x}, {dw, db}, f);
  }
  bool acc_x = false;
  ValueId dx = c.grad_output(x, &acc_x);
  if (dx != kNoValue) {
    Attrs a = f.attrs;
    a.accumulate_mask = 0;
    mark(a, 0, acc_x);
    c.emit(backward_data, a, {dy, w}, {dx}, f);
  }
}

void conv2d_grad(GradContext& c, const Node& f) {
  weighted(c, f, OpKind::kConv2dBackwardWeight, OpKind::kConv2dBackwardData);
}

void linear_grad(GradContext& c, const Node& f) {
  weighted(c, f, OpKind::kLinearBackwardWeight, OpKind::kLinearBackwardData);
}

void batch_norm_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy == kNoValue) return;
  bool acc_x = false, acc_g = false, acc_b = false;
  ValueId dx = c.grad_output(f.inputs[0], &acc_x);
  ValueId dgamma = c.grad_output(f.inputs[1], &acc_g);
  ValueId dbeta = c.grad_output(f.inputs[2], &acc_b);
  if (dx == kNoValue && dgamma == kNoValue && dbeta == kNoValue) return;
  Attrs a = f.attrs;
  a.accumulate_mask = 0;
  mark(a, 0, acc_x);
  mark(a, 1, acc_g);
  mark(a, 2, acc_b);
  // Training mode differentiates through the batch statistics saved by the forward node; eval
  // mode through the running statistics.
  std::vector<ValueId> in = a.norm.training
                                ? std::vector<ValueId>{dy, f.inputs[0], f.inputs[1], f.outputs[1], f.outputs[2]}
                                : std::vector<ValueId>{dy, f.inputs[0], f.inputs[1], f.inputs[3], f.inputs[4]};
  c.emit(OpKind::kBatchNormBackward, a, std::move(in), {dx, dgamma, dbeta}, f);
}

void relu_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kReluBackward, {dy, f.outputs[0]}, f.attrs);
}

void relu6_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kRelu6Backward, {dy, f.outputs[0]}, f.attrs);
}

void add_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy == kNoValue) return;
  for (int i = 0; i < 2; ++i) {
    bool acc = false;
    ValueId dx = c.grad_output(f.inputs[static_cast<size_t>(i)], &acc);
    if (dx == kNoValue) continue;
    Attrs a;
    mark(a, 0, acc);
    c.emit(OpKind::kGradCopy, a, {dy}, {dx}, f);
  }
}

void flatten_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kGradCopy, {dy}, Attrs{});
}

void max_pool_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy == kNoValue) return;
  // GraphBuilder gives a training graph's max pools their argmax output (runtime/graph_builder.cc).
  ET_CHECK(f.outputs.size() >= 2 && f.outputs[1] != kNoValue);
  unary(c, f, OpKind::kMaxPoolBackward, {dy, f.outputs[1]}, f.attrs);
}

void avg_pool_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kAvgPoolBackward, {dy}, f.attrs);
}

void global_avg_pool_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kGlobalAvgPoolBackward, {dy}, f.attrs);
}

// The loss is where backward starts: its gradient is the seed, d(loss)/d(loss) = 1.
void softmax_cross_entropy_grad(GradContext& c, const Node& f) {
  unary(c, f, OpKind::kSoftmaxCrossEntropyBackward, {f.outputs[1], f.inputs[1]}, f.attrs);
}

void dropout_grad(GradContext& c, const Node& f) {
  ValueId dy = c.grad(f.outputs[0]);
  if (dy != kNoValue) unary(c, f, OpKind::kDropoutBackward, {dy, f.outputs[1]}, f.attrs);
}

// Indexed by OpKind; null for backward and update ops.
constexpr GradRule kRules[] = {
    conv2d_grad,                 // kConv2d
    nullptr,                     // kConv2dBackwardData
    nullptr,                     // kConv2dBackwardWeight
    batch_norm_grad,             // kBatchNorm
    nullptr,                     // kBatchNormBackward
    relu_grad,                   // kRelu
    nullptr,                     // kReluBackward
    relu6_grad,                  // kRelu6
    nullptr,                     // kRelu6Backward
    add_grad,                    // kAdd
    nullptr,                     // kGradCopy
    flatten_grad,                // kFlatten
    max_pool_grad,               // kMaxPool
    nullptr,                     // kMaxPoolBackward
    avg_pool_grad,               // kAvgPool
    nullptr,                     // kAvgPoolBackward
    global_avg_pool_grad,        // kGlobalAvgPool
    nullptr,                     // kGlobalAvgPoolBackward
    linear_grad,                 // kLinear
    nullptr,                     // kLinearBackwardData
    nullptr,                     // kLinearBackwardWeight
    softmax_cross_entropy_grad,  // kSoftmaxCrossEntropy
    nullptr,                     // kSoftmaxCrossEntropyBackward
    nullptr,                     // kSgdUpdate
    nullptr,                     // kAdamWUpdate
    nullptr,                     // kPackSparse
    nullptr,                     // kUnpackSparse
    nullptr,                     // kPackMask
    nullptr,                     // kReluBackwardMask
    dropout_grad,                // kDropout
    nullptr,                     // kDropoutBackward
    nullptr,                     // kSgdMomentumDecay
    nullptr,                     // kSgdApplyMomentum
};
static_assert(sizeof(kRules) / sizeof(kRules[0]) == kOpCount, "every OpKind needs a gradient-rule row");

}  // namespace

GradRule grad_rule(OpKind kind) { return kRules[static_cast<int>(kind)]; }

}  // namespace edgetrain
