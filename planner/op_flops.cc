#include "planner/op_flops.h"

namespace edgetrain {

namespace {

// Operations per element for the element-wise kinds. Coarse on purpose: they make GFLOP/s
// comparable between runs, not between libraries.
constexpr int64_t kBnStatsPerElement = 3;       // sum x, sum x^2 (an add, a multiply, an add)
constexpr int64_t kBnApplyPerElement = 2;       // y = x * scale + shift (per-channel scale, shift)
constexpr int64_t kBnReducePerElement = 5;      // xhat = (x - mean) * invstd; sum dy; sum dy * xhat
constexpr int64_t kBnDxTrainingPerElement = 6;  // dx = k * (dy - mean(dy) - xhat * mean(dy * xhat))
constexpr int64_t kBnDxEvalPerElement = 1;      // dx = dy * (gamma * invstd), a per-channel factor
constexpr int64_t kSoftmaxPerLogit = 5;         // max, subtract, exp, sum, normalise
constexpr int64_t kSoftmaxBackwardPerLogit = 2; // scale * (p - onehot)
constexpr int64_t kSgdPerElement = 2;           // p -= lr * g
constexpr int64_t kMomentumPerElement = 2;      // buf = momentum * buf + g
constexpr int64_t kNesterovPerElement = 2;      // g + momentum * buf
constexpr int64_t kWeightDecayPerElement = 2;   // g + wd * p (SGD) or p *= 1 - lr * wd (AdamW)
constexpr int64_t kAdamPerElement = 12;         // two moment updates, bias corrections, sqrt, divide

int64_t numel(const Graph& g, ValueId v) { return v == kNoValue ? 0 : g.value(v).shape.numel(); }
int64_t bytes_of(const Graph& g, ValueId v) { return v == kNoValue ? 0 : static_cast<int64_t>(g.value(v).bytes()); }
bool has(const std::vector<ValueId>& ids, size_t i) { return i < ids.size() && ids[i] != kNoValue; }
ValueId at(const std::vector<ValueId>& ids, size_t i) { return has(ids, i) ? ids[i] : kNoValue; }

LayerKind conv_kind(const ConvAttrs& c, int64_t in_channels_per_group) {
  if (c.groups == 1) return c.kernel_h == 1 && c.kernel_w == 1 ? LayerKind::kConv1x1 : LayerKind::kConvDense;
  return in_channels_per_group == 1 ? LayerKind::kConvDepthwise : LayerKind::kConvGrouped;
}

// Multiply-adds of a convolution whose output (or output gradient) has shape y = [N,Ho,Wo,O]
// and whose input has in_channels channels.
int64_t conv_macs(const ConvAttrs& c, const Shape& y, int64_t in_channels) {
  return y.numel() * c.kernel_h * c.kernel_w * (in_channels / c.groups);
}

void count_conv(const Graph& g, const Node& n, NodeWork& w) {
  const ConvAttrs& c = n.attrs.conv;
  switch (n.op) {
    case OpKind::kConv2d: {  // in {x, w, b?} out {y}
      const Shape& x = g.value(n.inputs[0]).shape;
      const Shape& y = g.value(n.outputs[0]).shape;
      w.kind = conv_kind(c, x.c() / c.groups);
      w.flops = 2 * conv_macs(c, y, x.c()) + (has(n.inputs, 2) ? y.numel() : 0);
      break;
    }
    case OpKind::kConv2dBackwardData: {  // in {dy, w[O,kh,kw,C/g]} out {dx}
      const Shape& dy = g.value(n.inputs[0]).shape;
      const Shape& wt = g.value(n.inputs[1]).shape;
      w.kind = conv_kind(c, wt[3]);
      w.flops = 2 * conv_macs(c, dy, wt[3] * c.groups);
      break;
    }
    default: {  // kConv2dBackwardWeight: in {dy, x} out {dw?, db?}
      const Shape& dy = g.value(n.inputs[0]).shape;
      const Shape& x = g.value(n.inputs[1]).shape;
      w.kind = conv_kind(c, x.c() / c.groups);
      w.flops = (has(n.outputs, 0) ? 2 * conv_macs(c, dy, x.c()) : 0) + (has(n.outputs, 1) ? dy.numel() : 0);
      break;
    }
  }
}

void count_linear(const Graph& g, const Node& n, NodeWork& w) {
  w.kind = LayerKind::kLinear;
  const Shape& a = g.value(n.inputs[0]).shape;  // x [N,I] (forward) or dy [N,O] (backward)
  switch (n.op) {
    case OpKind::kLinear: {  // in {x[N,I], w[O,I], b?}
      const Shape& wt = g.value(n.inputs[1]).shape;
      w.flops = 2 * a[0] * wt[0] * wt[1] + (has(n.inputs, 2) ? a[0] * wt[0] : 0);
      break;
    }
    case OpKind::kLinearBackwardData: {  // in {dy[N,O], w[O,I]}
      const Shape& wt = g.value(n.inputs[1]).shape;
      w.flops = 2 * a[0] * wt[0] * wt[1];
      break;
    }
    default: {  // kLinearBackwardWeight: in {dy[N,O], x[N,I]} out {dw?, db?}
      const Shape& x = g.value(n.inputs[1]).shape;
      w.flops = (has(n.outputs, 0) ? 2 * a[0] * a[1] * x[1] : 0) + (has(n.outputs, 1) ? a.numel() : 0);
      break;
    }
  }
}

void count_batch_norm(const Graph& g, const Node& n, NodeWork& w) {
  w.kind = LayerKind::kBatchNorm;
  int64_t e = numel(g, n.inputs[0]);
  if (n.op == OpKind::kBatchNorm) {
    w.flops = e * (kBnApplyPerElement + (n.attrs.norm.training && !n.attrs.norm.apply_saved ? kBnStatsPerElement : 0));
    return;
  }
  // Backward: the reductions serve dgamma, dbeta and (in training mode) dx.
  bool dx = has(n.outputs, 0), dparams = has(n.outputs, 1) || has(n.outputs, 2);
  bool training = n.attrs.norm.training;
  if (dparams || (dx && training)) w.flops += e * kBnReducePerElement;
  if (dx) w.flops += e * (training ? kBnDxTrainingPerElement : kBnDxEvalPerElement);
}

void count_pooling(const Graph& g, const Node& n, NodeWork& w) {
  w.kind = LayerKind::kPooling;
  int64_t window = static_cast<int64_t>(n.attrs.pool.kernel) * n.attrs.pool.kernel;
  switch (n.op) {
    case OpKind::kMaxPool:
    case OpKind::kAvgPool:  // a compare or an add per window element
      w.flops = numel(g, n.outputs[0]) * window;
      break;
    case OpKind::kMaxPoolBackward:  // one add at the saved argmax (and dx cleared)
      w.flops = numel(g, n.inputs[0]);
      break;
    case OpKind::kAvgPoolBackward:  // scale once, add into every window element
      w.flops = numel(g, n.inputs[0]) * (window + 1);
      break;
    case OpKind::kGlobalAvgPool:  // an add per input element
      w.flops = numel(g, n.inputs[0]);
      break;
    default:  // kGlobalAvgPoolBackward: one scaled write per input element
      w.flops = numel(g, n.outputs[0]);
      break;
  }
}

void count_update(const Graph& g, const Node& n, NodeWork& w) {
  w.kind = LayerKind::kOptimizer;
  w.pass = PassKind::kUpdate;
  const OptimAttrs& o = n.attrs.optim;
  int64_t e = numel(g, n.inputs[0]);
  int64_t per = 0;
  if (n.op == OpKind::kSgdApplyMomentum) {
    per = kSgdPerElement + kMomentumPerElement;  // and the next step's decay (update_kernels.h)
  } else if (n.op == OpKind::kSgdMomentumDecay) {
    // Work on the first step only (the applies decay for later steps): a step from the second
    // on, the one a training run repeats, does nothing here.
    w.kind = LayerKind::kOptimizer;
    return;
  } else if (n.op == OpKind::kSgdUpdate) {
    per = kSgdPerElement;
    if (has(n.inputs, 2) && o.momentum != 0.0f) per += kMomentumPerElement + (o.nesterov ? kNesterovPerElement : 0);
  } else {
    per = kAdamPerElement;
  }
  if (o.weight_decay != 0.0f) per += kWeightDecayPerElement;
  w.flops = e * per;
  // In place: the parameter and every state tensor (all inputs but the gradient) are written back.
  // (The fused momentum kinds have no gradient input: {param, buffer}, one of them written.)
  const bool fused = n.op == OpKind::kSgdMomentumDecay || n.op == OpKind::kSgdApplyMomentum;
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (fused || i != 1) w.bytes += bytes_of(g, at(n.inputs, i));
}

PassKind pass_of(const Node& n) {
  switch (n.op) {
    case OpKind::kConv2dBackwardWeight:
    case OpKind::kLinearBackwardWeight:
      return PassKind::kBackwardWeight;
    case OpKind::kSgdUpdate:
    case OpKind::kAdamWUpdate:
    case OpKind::kSgdMomentumDecay:
    case OpKind::kSgdApplyMomentum:
      return PassKind::kUpdate;
    default:
      break;
  }
  if (op_info(n.op).is_forward) return n.phase == Phase::kRecompute ? PassKind::kRecompute : PassKind::kForward;
  return PassKind::kBackwardData;
}

}  // namespace

const char* layer_kind_name(LayerKind kind) {
  static constexpr const char* kNames[] = {"conv1x1", "conv_dense", "conv_depthwise", "conv_grouped",
                                           "batch_norm", "activation", "pooling", "linear",
                                           "loss", "optimizer", "other"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kLayerKindCount, "a LayerKind lacks its name");
  int i = static_cast<int>(kind);
  return i >= 0 && i < kLayerKindCount ? kNames[i] : "?";
}

const char* pass_kind_name(PassKind pass) {
  static constexpr const char* kNames[] = {"fwd", "recompute", "bwd_data", "bwd_weight", "update"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kPassKindCount, "a PassKind lacks its name");
  int i = static_cast<int>(pass);
  return i >= 0 && i < kPassKindCount ? kNames[i] : "?";
}

NodeWork node_work(const Graph& g, const Node& n) {
  NodeWork w;
  w.pass = pass_of(n);
  for (ValueId v : n.inputs) w.bytes += bytes_of(g, v);
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    int64_t b = bytes_of(g, n.outputs[i]);
    w.bytes += n.attrs.accumulates(static_cast<int>(i)) ? 2 * b : b;  // read, add, write back
  }
  switch (n.op) {
    case OpKind::kConv2d:
    case OpKind::kConv2dBackwardData:
    case OpKind::kConv2dBackwardWeight:
      count_conv(g, n, w);
      break;
    case OpKind::kLinear:
    case OpKind::kLinearBackwardData:
    case OpKind::kLinearBackwardWeight:
      count_linear(g, n, w);
      break;
    case OpKind::kBatchNorm:
    case OpKind::kBatchNormBackward:
      count_batch_norm(g, n, w);
      break;
    case OpKind::kRelu:
    case OpKind::kReluBackward:  // a max, or a select on y > 0
      w.kind = LayerKind::kActivation;
      w.flops = numel(g, n.outputs[0]);
      break;
    case OpKind::kRelu6:
    case OpKind::kRelu6Backward:  // two compares
      w.kind = LayerKind::kActivation;
      w.flops = 2 * numel(g, n.outputs[0]);
      break;
    case OpKind::kMaxPool:
    case OpKind::kMaxPoolBackward:
    case OpKind::kAvgPool:
    case OpKind::kAvgPoolBackward:
    case OpKind::kGlobalAvgPool:
    case OpKind::kGlobalAvgPoolBackward:
      count_pooling(g, n, w);
      break;
    case OpKind::kSoftmaxCrossEntropy:
      w.kind = LayerKind::kLoss;
      w.flops = numel(g, n.inputs[0]) * kSoftmaxPerLogit;
      break;
    case OpKind::kSoftmaxCrossEntropyBackward:
      w.kind = LayerKind::kLoss;
      w.flops = numel(g, n.inputs[0]) * kSoftmaxBackwardPerLogit;
      break;
    case OpKind::kSgdUpdate:
    case OpKind::kAdamWUpdate:
    case OpKind::kSgdMomentumDecay:
    case OpKind::kSgdApplyMomentum:
      count_update(g, n, w);
      break;
    case OpKind::kAdd:  // one add per output element (an accumulating add reads its output too)
      w.kind = LayerKind::kOther;
      w.flops = numel(g, n.outputs[0]);
      break;
    default:  // kGradCopy, kFlatten: copies
      w.kind = LayerKind::kOther;
      break;
  }
  return w;
}

std::string work_label(const NodeWork& w) {
  return std::string(layer_kind_name(w.kind)) + " " + pass_kind_name(w.pass);
}

}  // namespace edgetrain
