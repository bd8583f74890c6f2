#include "planner/features.h"

#include <cmath>
#include <string>

#include "planner/op_flops.h"

namespace edgetrain {
namespace {

constexpr const char* kClassNames[] = {
    "conv.depthwise.fwd",     "conv.depthwise.bwd_data", "conv.depthwise.bwd_weight",
    "conv.pointwise.fwd",     "conv.pointwise.bwd_data", "conv.pointwise.bwd_weight",
    "conv.gemm.fwd",          "conv.gemm.bwd_data",      "conv.gemm.bwd_weight",
    "conv.bwd_bias",
    "batch_norm.train",       "batch_norm.eval",         "batch_norm.bwd_train",
    "batch_norm.bwd_eval",
    "relu",                   "relu.bwd",                "relu6",
    "relu6.bwd",              "add",                     "grad_copy",
    "flatten",                "max_pool",                "max_pool.bwd",
    "avg_pool",               "avg_pool.bwd",            "global_avg_pool",
    "global_avg_pool.bwd",    "linear.fwd",              "linear.bwd_data",
    "linear.bwd_weight",      "linear.bwd_bias",         "softmax_xent",
    "softmax_xent.bwd",       "update.sgd",              "update.sgd_momentum",
    "update.adamw",           "pack_sparse",             "unpack_sparse",
    "pack_mask",              "relu.bwd_mask",           "dropout",
    "dropout.bwd",            "update.sgd_momentum_decay", "update.sgd_apply_momentum",
};
static_assert(sizeof(kClassNames) / sizeof(kClassNames[0]) == kOpClassCount,
              "every OpClass needs a name");

// The shapes a kernel's speed depends on, in the units of FeatureRow::z (before the log).
struct Dims {
  double n = 1, spatial = 1, c_in = 1, c_out = 1, taps = 1, stride = 1;
  // Multiply-adds of one GEMM call (M*N*K): decides OpenBLAS's blocking and whether ops/gemm.cc
  // takes its own small-matrix loop (<= 100^3) instead. 0: the op makes no GEMM call.
  double gemm_macs = 0;
};

const Shape* shape_of(const Graph& g, const std::vector<ValueId>& ids, size_t i) {
  if (i >= ids.size() || ids[i] == kNoValue) return nullptr;
  return &g.value(ids[i]).shape;
}
double numel_of(const Shape* s) { return s ? static_cast<double>(s->numel()) : 0.0; }

// Elementwise-like dims of a tensor: batch, elements per image and channel, channels.
Dims tensor_dims(const Shape* s) {
  Dims d;
  if (s == nullptr || s->rank == 0) return d;
  d.n = static_cast<double>(s->dims[0]);
  d.c_in = d.c_out = static_cast<double>(s->dims[s->rank - 1]);
  d.spatial = numel_of(s) / std::max(1.0, d.n * d.c_in);
  return d;
}

// Which code path ops/conv2d.cc takes (its conv_path()): the class must follow the kernel.
enum class ConvPath { kDepthwise, kPointwise, kGemm };
ConvPath conv_path(int64_t c, int64_t out_c, const ConvAttrs& a) {
  if (a.groups == c && out_c == c) return ConvPath::kDepthwise;
  if (a.kernel_h == 1 && a.kernel_w == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_h == 0 && a.pad_w == 0)
    return ConvPath::kPointwise;
  return ConvPath::kGemm;
}

OpClass conv_class(const Graph& g, const Node& n, Dims* d) {
  // x and y (NHWC) of each direction: fwd {x, w, b} -> {y}; bwd_data {dy, w} -> {dx};
  // bwd_weight {dy, x} -> {dw, db}.
  const Shape *x = nullptr, *y = nullptr;
  int direction = 0;  // 0 fwd, 1 bwd data, 2 bwd weight
  if (n.op == OpKind::kConv2d) {
    x = shape_of(g, n.inputs, 0), y = shape_of(g, n.outputs, 0);
  } else if (n.op == OpKind::kConv2dBackwardData) {
    direction = 1, y = shape_of(g, n.inputs, 0), x = shape_of(g, n.outputs, 0);
  } else {
    direction = 2, y = shape_of(g, n.inputs, 0), x = shape_of(g, n.inputs, 1);
  }
  if (x == nullptr || y == nullptr || x->rank != 4 || y->rank != 4) return OpClass::kCount;
  const ConvAttrs& a = n.attrs.conv;
  const double groups = a.groups > 0 ? a.groups : 1;
  const double taps = double{1} * a.kernel_h * a.kernel_w;
  const double cpg = static_cast<double>(x->c()) / groups, opg = static_cast<double>(y->c()) / groups;
  const ConvPath path = conv_path(x->c(), y->c(), a);
  d->n = static_cast<double>(x->n());
  d->spatial = static_cast<double>(y->h() * y->w());
  d->c_in = path == ConvPath::kDepthwise ? static_cast<double>(x->c()) : cpg;
  d->c_out = path == ConvPath::kDepthwise ? static_cast<double>(y->c()) : opg;
  d->taps = taps;
  d->stride = a.stride_h;
  // ops/conv2d.cc: pointwise runs one GEMM per group over all N*H*W rows; im2col one per image
  // and group with K = taps * Cin/g.
  if (path == ConvPath::kPointwise) d->gemm_macs = d->n * d->spatial * opg * cpg;
  else if (path == ConvPath::kGemm) d->gemm_macs = d->spatial * opg * taps * cpg;
  if (direction == 2 && shape_of(g, n.outputs, 0) == nullptr) return OpClass::kConvBackwardBias;
  static constexpr OpClass kByPath[3][3] = {
      {OpClass::kConvDepthwise, OpClass::kConvDepthwiseBackwardData, OpClass::kConvDepthwiseBackwardWeight},
      {OpClass::kConvPointwise, OpClass::kConvPointwiseBackwardData, OpClass::kConvPointwiseBackwardWeight},
      {OpClass::kConvGemm, OpClass::kConvGemmBackwardData, OpClass::kConvGemmBackwardWeight}};
  return kByPath[static_cast<int>(path)][direction];
}

OpClass linear_class(const Graph& g, const Node& n, Dims* d) {
  // fwd {x[N,I], w[O,I], b} -> {y[N,O]}; bwd_data {dy, w} -> {dx}; bwd_weight {dy, x} -> {dw, db}.
  const Shape *x = nullptr, *y = nullptr;
  if (n.op == OpKind::kLinear) x = shape_of(g, n.inputs, 0), y = shape_of(g, n.outputs, 0);
  else if (n.op == OpKind::kLinearBackwardData) y = shape_of(g, n.inputs, 0), x = shape_of(g, n.outputs, 0);
  else y = shape_of(g, n.inputs, 0), x = shape_of(g, n.inputs, 1);
  if (x == nullptr || y == nullptr || x->rank == 0) return OpClass::kCount;
  const double rows = static_cast<double>(x->dims[0]);
  d->n = rows;
  d->c_in = numel_of(x) / rows;
  d->c_out = numel_of(y) / rows;
  d->gemm_macs = rows * d->c_in * d->c_out;
  if (n.op == OpKind::kLinear) return OpClass::kLinear;
  if (n.op == OpKind::kLinearBackwardData) return OpClass::kLinearBackwardData;
  return shape_of(g, n.outputs, 0) == nullptr ? OpClass::kLinearBackwardBias : OpClass::kLinearBackwardWeight;
}

OpClass pool_class(const Graph& g, const Node& n, Dims* d) {
  // fwd {x} -> {y}; backward {dy, ...} -> {dx}: the window runs over y's positions either way.
  const bool forward = n.op == OpKind::kMaxPool || n.op == OpKind::kAvgPool;
  *d = tensor_dims(forward ? shape_of(g, n.outputs, 0) : shape_of(g, n.inputs, 0));
  d->taps = double{1} * n.attrs.pool.kernel * n.attrs.pool.kernel;
  d->stride = n.attrs.pool.stride;
  switch (n.op) {
    case OpKind::kMaxPool: return OpClass::kMaxPool;
    case OpKind::kMaxPoolBackward: return OpClass::kMaxPoolBackward;
    case OpKind::kAvgPool: return OpClass::kAvgPool;
    default: return OpClass::kAvgPoolBackward;
  }
}

// The class of a node; fills the shape dims its speed depends on.
OpClass classify(const Graph& g, const Node& n, Dims* d) {
  const Shape* in0 = shape_of(g, n.inputs, 0);
  const Shape* out0 = shape_of(g, n.outputs, 0);
  *d = tensor_dims(in0);
  switch (n.op) {
    case OpKind::kConv2d:
    case OpKind::kConv2dBackwardData:
    case OpKind::kConv2dBackwardWeight:
      return conv_class(g, n, d);
    case OpKind::kLinear:
    case OpKind::kLinearBackwardData:
    case OpKind::kLinearBackwardWeight:
      return linear_class(g, n, d);
    case OpKind::kMaxPool:
    case OpKind::kMaxPoolBackward:
    case OpKind::kAvgPool:
    case OpKind::kAvgPoolBackward:
      return pool_class(g, n, d);
    case OpKind::kBatchNorm: return n.attrs.norm.training ? OpClass::kBatchNormTrain : OpClass::kBatchNormEval;
    case OpKind::kBatchNormBackward:
      return n.attrs.norm.training ? OpClass::kBatchNormBackwardTrain : OpClass::kBatchNormBackwardEval;
    case OpKind::kRelu: return OpClass::kRelu;
    case OpKind::kReluBackward: return OpClass::kReluBackward;
    case OpKind::kRelu6: return OpClass::kRelu6;
    case OpKind::kRelu6Backward: return OpClass::kRelu6Backward;
    case OpKind::kAdd: return OpClass::kAdd;
    case OpKind::kGradCopy: return OpClass::kGradCopy;
    case OpKind::kFlatten: return OpClass::kFlatten;
    case OpKind::kGlobalAvgPool: return OpClass::kGlobalAvgPool;
    case OpKind::kGlobalAvgPoolBackward:
      *d = tensor_dims(out0);  // the [N,H,W,C] side
      return OpClass::kGlobalAvgPoolBackward;
    case OpKind::kSoftmaxCrossEntropy: return OpClass::kSoftmaxCrossEntropy;
    case OpKind::kSoftmaxCrossEntropyBackward: return OpClass::kSoftmaxCrossEntropyBackward;
    case OpKind::kSgdUpdate:
    case OpKind::kAdamWUpdate:
      *d = Dims{1, numel_of(in0), 1, 1, 1, 1, 0};
      if (n.op == OpKind::kAdamWUpdate) return OpClass::kAdamWUpdate;
      return shape_of(g, n.inputs, 2) != nullptr ? OpClass::kSgdMomentumUpdate : OpClass::kSgdUpdate;
    case OpKind::kPackSparse: return OpClass::kPackSparse;
    case OpKind::kUnpackSparse:
      *d = tensor_dims(out0);  // the dense side
      return OpClass::kUnpackSparse;
    case OpKind::kPackMask: return OpClass::kPackMask;
    case OpKind::kReluBackwardMask: return OpClass::kReluBackwardMask;
    case OpKind::kDropout: return OpClass::kDropout;
    case OpKind::kDropoutBackward: return OpClass::kDropoutBackward;
    case OpKind::kSgdMomentumDecay:
      *d = Dims{1, numel_of(in0), 1, 1, 1, 1, 0};
      return OpClass::kSgdMomentumDecay;
    case OpKind::kSgdApplyMomentum:
      *d = Dims{1, numel_of(in0), 1, 1, 1, 1, 0};
      return OpClass::kSgdApplyMomentum;
    default: return OpClass::kCount;  // an op added after this file
  }
}

}  // namespace

const char* op_class_name(OpClass c) {
  const int i = static_cast<int>(c);
  return i >= 0 && i < kOpClassCount ? kClassNames[i] : "unknown";
}

bool parse_op_class(const std::string& name, OpClass* out) {
  for (int i = 0; i < kOpClassCount; ++i)
    if (name == kClassNames[i]) {
      *out = static_cast<OpClass>(i);
      return true;
    }
  return false;
}

NodeFeatures node_features(const Graph& g, const Node& n) {
  NodeFeatures f;
  Dims d;
  f.op_class = classify(g, n, &d);
  const NodeWork work = node_work(g, n);
  f.row.flops = static_cast<double>(work.flops);
  f.row.bytes = static_cast<double>(work.bytes);
  auto lg = [](double v) { return std::log(v > 1 ? v : 1.0); };
  f.row.z = {lg(f.row.flops + 1), lg(f.row.bytes + 1), lg(d.n),      lg(d.spatial),     lg(d.c_in),
             lg(d.c_out),          lg(d.taps),           d.stride,     lg(d.gemm_macs + 1)};
  return f;
}

}  // namespace edgetrain
