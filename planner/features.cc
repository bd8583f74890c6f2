#include "planner/features.h"

#include <cmath>
#include <cstring>
#include <string>

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
    "pack_mask",              "relu.bwd_mask",
};
static_assert(sizeof(kClassNames) / sizeof(kClassNames[0]) == kOpClassCount,
              "every OpClass needs a name");

// The dimensions a kernel's cost depends on, in the units of FeatureRow::z (before the log).
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
double batch_of(const Shape* s) { return s && s->rank > 0 ? static_cast<double>(s->dims[0]) : 1.0; }
double channels_of(const Shape* s) { return s && s->rank > 0 ? static_cast<double>(s->dims[s->rank - 1]) : 1.0; }

// Elementwise-like dims of a tensor: n, per-image pixels, channels.
Dims tensor_dims(const Shape* s) {
  Dims d;
  if (s == nullptr) return d;
  d.n = batch_of(s);
  d.c_in = d.c_out = channels_of(s);
  d.spatial = numel_of(s) / (d.n * d.c_in);
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

void features_of_conv(const Graph& g, const Node& n, NodeFeatures* f, Dims* d) {
  // x and y (NHWC) for each direction: fwd {x, w, b} -> {y}; bwd_data {dy, w} -> {dx};
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
  if (x == nullptr || y == nullptr || x->rank != 4 || y->rank != 4) return;
  const ConvAttrs& a = n.attrs.conv;
  const double groups = a.groups > 0 ? a.groups : 1;
  const double taps = double{1} * a.kernel_h * a.kernel_w;
  const double cpg = x->c() / groups, opg = y->c() / groups;
  const double out_pixels = static_cast<double>(y->n() * y->h() * y->w());
  const double macs = out_pixels * y->c() * taps * cpg;
  const double weights = y->c() * taps * cpg;
  const double xb = numel_of(x) * 4, yb = numel_of(y) * 4, wb = weights * 4;
  const ConvPath path = conv_path(x->c(), y->c(), a);
  // im2col writes and re-reads one column matrix per image and group.
  const double cols = path == ConvPath::kGemm ? out_pixels * taps * x->c() * 4 * 2 : 0;
  d->n = static_cast<double>(x->n());
  d->spatial = static_cast<double>(y->h() * y->w());
  d->c_in = path == ConvPath::kDepthwise ? x->c() : cpg;
  d->c_out = path == ConvPath::kDepthwise ? y->c() : opg;
  d->taps = taps;
  d->stride = a.stride_h;
  // ops/conv2d.cc: pointwise runs one GEMM per group over all N*H*W rows; im2col one per image
  // and group with K = taps * Cin/g.
  if (path == ConvPath::kPointwise) d->gemm_macs = out_pixels * opg * cpg;
  else if (path == ConvPath::kGemm) d->gemm_macs = static_cast<double>(y->h() * y->w()) * opg * taps * cpg;
  static constexpr OpClass kByPath[3][3] = {
      {OpClass::kConvDepthwise, OpClass::kConvDepthwiseBackwardData, OpClass::kConvDepthwiseBackwardWeight},
      {OpClass::kConvPointwise, OpClass::kConvPointwiseBackwardData, OpClass::kConvPointwiseBackwardWeight},
      {OpClass::kConvGemm, OpClass::kConvGemmBackwardData, OpClass::kConvGemmBackwardWeight}};
  f->op_class = kByPath[static_cast<int>(path)][direction];
  const bool has_bias = direction == 0 ? shape_of(g, n.inputs, 2) != nullptr
                                       : direction == 2 && shape_of(g, n.outputs, 1) != nullptr;
  const double bias_flops = has_bias ? out_pixels * y->c() : 0;
  switch (direction) {
    case 0:
      f->row.flops = 2 * macs + bias_flops;
      f->row.bytes = xb + wb + yb + cols;
      break;
    case 1:
      f->row.flops = 2 * macs;
      f->row.bytes = yb + wb + xb + cols;
      break;
    default:
      if (shape_of(g, n.outputs, 0) == nullptr) {  // only the bias gradient
        f->op_class = OpClass::kConvBackwardBias;
        f->row.flops = bias_flops;
        f->row.bytes = yb + y->c() * 4;
      } else {
        f->row.flops = 2 * macs + bias_flops;
        f->row.bytes = yb + xb + wb + cols;
      }
  }
}

void features_of_linear(const Graph& g, const Node& n, NodeFeatures* f, Dims* d) {
  // fwd {x[N,I], w[O,I], b} -> {y[N,O]}; bwd_data {dy, w} -> {dx}; bwd_weight {dy, x} -> {dw, db}.
  const Shape *x = nullptr, *y = nullptr;
  if (n.op == OpKind::kLinear) x = shape_of(g, n.inputs, 0), y = shape_of(g, n.outputs, 0);
  else if (n.op == OpKind::kLinearBackwardData) y = shape_of(g, n.inputs, 0), x = shape_of(g, n.outputs, 0);
  else y = shape_of(g, n.inputs, 0), x = shape_of(g, n.inputs, 1);
  if (x == nullptr || y == nullptr) return;
  const double rows = batch_of(x), in = numel_of(x) / rows, out = numel_of(y) / rows;
  d->n = rows, d->c_in = in, d->c_out = out;
  const double macs = rows * in * out;
  d->gemm_macs = macs;
  const double bytes = (numel_of(x) + numel_of(y) + in * out) * 4;
  if (n.op == OpKind::kLinear) {
    f->op_class = OpClass::kLinear;
    f->row.flops = 2 * macs + rows * out;
    f->row.bytes = bytes;
  } else if (n.op == OpKind::kLinearBackwardData) {
    f->op_class = OpClass::kLinearBackwardData;
    f->row.flops = 2 * macs;
    f->row.bytes = bytes;
  } else if (shape_of(g, n.outputs, 0) == nullptr) {
    f->op_class = OpClass::kLinearBackwardBias;
    f->row.flops = rows * out;
    f->row.bytes = (numel_of(y) + out) * 4;
  } else {
    f->op_class = OpClass::kLinearBackwardWeight;
    f->row.flops = 2 * macs + rows * out;
    f->row.bytes = bytes;
  }
}

void features_of_pool(const Graph& g, const Node& n, NodeFeatures* f, Dims* d) {
  // fwd {x} -> {y}; max bwd {dy, x} -> {dx}; avg bwd {dy} -> {dx}.
  const bool forward = n.op == OpKind::kMaxPool || n.op == OpKind::kAvgPool;
  const Shape* x = forward ? shape_of(g, n.inputs, 0) : shape_of(g, n.outputs, 0);
  const Shape* y = forward ? shape_of(g, n.outputs, 0) : shape_of(g, n.inputs, 0);
  if (x == nullptr || y == nullptr || y->rank != 4) return;
  const double taps = double{1} * n.attrs.pool.kernel * n.attrs.pool.kernel;
  *d = tensor_dims(y);
  d->taps = taps;
  d->stride = n.attrs.pool.stride;
  f->row.flops = numel_of(y) * taps;
  f->row.bytes = (numel_of(x) + numel_of(y)) * 4;
  if (n.op == OpKind::kMaxPoolBackward) f->row.bytes += numel_of(x) * 4;  // x re-read for argmax
  switch (n.op) {
    case OpKind::kMaxPool: f->op_class = OpClass::kMaxPool; break;
    case OpKind::kMaxPoolBackward: f->op_class = OpClass::kMaxPoolBackward; break;
    case OpKind::kAvgPool: f->op_class = OpClass::kAvgPool; break;
    default: f->op_class = OpClass::kAvgPoolBackward; break;
  }
}

// Streaming ops: `reads` and `writes` tensors of the size of the main one, `flops` per element.
void streaming(const Shape* main, double reads, double writes, double flops, OpClass c, NodeFeatures* f,
               Dims* d) {
  *d = tensor_dims(main);
  f->op_class = c;
  f->row.flops = numel_of(main) * flops;
  f->row.bytes = numel_of(main) * 4 * (reads + writes);
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
  const Shape* in0 = shape_of(g, n.inputs, 0);
  const Shape* out0 = shape_of(g, n.outputs, 0);
  const bool accumulate = n.attrs.accumulate_mask != 0;
  switch (n.op) {
    case OpKind::kConv2d:
    case OpKind::kConv2dBackwardData:
    case OpKind::kConv2dBackwardWeight:
      features_of_conv(g, n, &f, &d);
      break;
    case OpKind::kLinear:
    case OpKind::kLinearBackwardData:
    case OpKind::kLinearBackwardWeight:
      features_of_linear(g, n, &f, &d);
      break;
    case OpKind::kMaxPool:
    case OpKind::kMaxPoolBackward:
    case OpKind::kAvgPool:
    case OpKind::kAvgPoolBackward:
      features_of_pool(g, n, &f, &d);
      break;
    case OpKind::kBatchNorm:
      // Training: a statistics pass and a normalising pass over x; eval: one pass.
      if (n.attrs.norm.training) streaming(in0, 2, 1, 6, OpClass::kBatchNormTrain, &f, &d);
      else streaming(in0, 1, 1, 2, OpClass::kBatchNormEval, &f, &d);
      break;
    case OpKind::kBatchNormBackward: {
      const bool dx = shape_of(g, n.outputs, 0) != nullptr;
      if (n.attrs.norm.training) streaming(in0, dx ? 4 : 2, dx ? 1 : 0, dx ? 8 : 4, OpClass::kBatchNormBackwardTrain, &f, &d);
      else streaming(in0, dx ? 4 : 2, dx ? 1 : 0, dx ? 4 : 3, OpClass::kBatchNormBackwardEval, &f, &d);
      break;
    }
    case OpKind::kRelu: streaming(in0, 1, 1, 1, OpClass::kRelu, &f, &d); break;
    case OpKind::kRelu6: streaming(in0, 1, 1, 2, OpClass::kRelu6, &f, &d); break;
    case OpKind::kReluBackward: streaming(in0, accumulate ? 3 : 2, 1, 1, OpClass::kReluBackward, &f, &d); break;
    case OpKind::kRelu6Backward: streaming(in0, accumulate ? 3 : 2, 1, 2, OpClass::kRelu6Backward, &f, &d); break;
    case OpKind::kAdd: streaming(in0, 2, 1, 1, OpClass::kAdd, &f, &d); break;
    case OpKind::kGradCopy: streaming(in0, accumulate ? 2 : 1, 1, accumulate ? 1 : 0, OpClass::kGradCopy, &f, &d); break;
    case OpKind::kFlatten: streaming(in0, 1, 1, 0, OpClass::kFlatten, &f, &d); break;
    case OpKind::kGlobalAvgPool: streaming(in0, 1, 0, 1, OpClass::kGlobalAvgPool, &f, &d); break;
    case OpKind::kGlobalAvgPoolBackward:
      streaming(out0, accumulate ? 1 : 0, 1, 1, OpClass::kGlobalAvgPoolBackward, &f, &d);
      break;
    case OpKind::kSoftmaxCrossEntropy: streaming(in0, 1, 1, 6, OpClass::kSoftmaxCrossEntropy, &f, &d); break;
    case OpKind::kSoftmaxCrossEntropyBackward:
      streaming(in0, 1, 1, 2, OpClass::kSoftmaxCrossEntropyBackward, &f, &d);
      break;
    case OpKind::kSgdUpdate: {
      const bool momentum = shape_of(g, n.inputs, 2) != nullptr;
      // param and grad read, param written; momentum read and written.
      streaming(in0, momentum ? 3 : 2, momentum ? 2 : 1, momentum ? 5 : 3,
                momentum ? OpClass::kSgdMomentumUpdate : OpClass::kSgdUpdate, &f, &d);
      d = Dims{1, numel_of(in0), 1, 1, 1, 1};
      break;
    }
    case OpKind::kAdamWUpdate:
      streaming(in0, 4, 3, 16, OpClass::kAdamWUpdate, &f, &d);
      d = Dims{1, numel_of(in0), 1, 1, 1, 1};
      break;
    case OpKind::kPackSparse: {
      // Reads x, writes the bitmap and (about) the nonzeros the slot has room for.
      streaming(in0, 1, 1.0 / 32, 2, OpClass::kPackSparse, &f, &d);
      f.row.bytes += 4.0 * static_cast<double>(n.attrs.sparse.capacity);
      break;
    }
    case OpKind::kUnpackSparse:
      streaming(out0, 1.0 / 32, 1, 1, OpClass::kUnpackSparse, &f, &d);
      f.row.bytes += numel_of(in0) * 8;  // the packed slot (u64 words), read
      break;
    case OpKind::kPackMask: streaming(in0, 1, 1.0 / 32, 1, OpClass::kPackMask, &f, &d); break;
    case OpKind::kReluBackwardMask:
      streaming(in0, accumulate ? 2 + 1.0 / 32 : 1 + 1.0 / 32, 1, 1, OpClass::kReluBackwardMask, &f, &d);
      break;
    default: {
      // An op this file does not know yet: treat it as one pass over its inputs and outputs.
      double elems = 0;
      for (size_t i = 0; i < n.inputs.size(); ++i) elems += numel_of(shape_of(g, n.inputs, i));
      for (size_t i = 0; i < n.outputs.size(); ++i) elems += numel_of(shape_of(g, n.outputs, i));
      f.row.flops = elems;
      f.row.bytes = elems * 4;
      d = tensor_dims(in0);
      break;
    }
  }
  auto lg = [](double v) { return std::log(v > 1 ? v : 1.0); };
  f.row.z = {lg(f.row.flops + 1), lg(f.row.bytes + 1), lg(d.n),      lg(d.spatial),     lg(d.c_in),
             lg(d.c_out),          lg(d.taps),           d.stride,     lg(d.gemm_macs + 1)};
  return f;
}

}  // namespace edgetrain
