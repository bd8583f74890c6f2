#include "planner/features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "ops/conv2d.h"
#include "ops/conv2d_depthwise.h"
#include "ops/conv2d_im2col.h"
#include "ops/conv2d_winograd.h"
#include "ops/gemm.h"
#include "planner/op_flops.h"

namespace edgetrain {
namespace {

constexpr const char* kClassNames[] = {
    "conv.depthwise.fwd",     "conv.depthwise.bwd_data", "conv.depthwise.bwd_weight",
    "conv.pointwise.fwd",     "conv.pointwise.bwd_data", "conv.pointwise.bwd_weight",
    "conv.gemm.fwd",          "conv.gemm.bwd_data",      "conv.gemm.bwd_weight",
    "conv.winograd.fwd",      "conv.winograd.bwd_data",  "conv.winograd.bwd_weight",
    "conv.direct.fwd",        "conv.direct.bwd_weight",
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
  double variant = 0;  // FeatureRow::z[9]
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

// Multiply-adds (over the batch) and other arithmetic of the path a conv direction takes.
struct ConvWork {
  ConvKernelPath path = ConvKernelPath::kIm2colPlain;
  double macs = 0;             // the path's multiply-adds: GEMMs or products of the taps it keeps
  double transform_flops = 0;  // Winograd's input, filter and output transforms (approximate)
  double gemm_macs = 0;        // one GEMM call (or one of Winograd's alpha^2 products)
  double variant = 0;          // FeatureRow::z[9]
  double workspace_bytes = 0;  // bytes moved through the workspace beyond inputs and outputs
};

// Output positions x taps along one axis whose tap lands inside the input: what the direct and
// depthwise loops visit (they skip the padding).
int64_t valid_axis_taps(int64_t outs, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
  int64_t sum = 0;
  for (int64_t o = 0; o < outs; ++o) {
    const int64_t start = o * stride - pad;
    const int64_t k0 = std::clamp<int64_t>(-start, 0, kernel), k1 = std::clamp<int64_t>(size - start, k0, kernel);
    sum += k1 - k0;
  }
  return sum;
}

// Additions and multiplies of one 2-D Winograd tile transform per channel, counted from the
// 1-D transforms in ops/winograd_tiles.h (rows then columns); rough, they only need to scale
// with the work.
struct WinogradCosts {
  double input, output, filter;  // per tile and input channel / tile and output channel / filter
};
WinogradCosts winograd_costs(int m) {
  // F(2,3): B^T 4 ops on 4 values, A^T 4 ops, G 5 ops. F(4,3): about 16, 14 and 14.
  const double alpha = m + 2;
  if (m == 2) return {2 * alpha * 4, (alpha + m) * 4, (3 + alpha) * 5};
  return {2 * alpha * 16, (alpha + m) * 14, (3 + alpha) * 14};
}

// has_epilogue: a forward with a fused eval-mode norm; accumulate: the direction adds into its
// output (a gradient summed over uses).
ConvWork conv_work(const ConvGeometry& g, ConvDirection dir, bool has_epilogue, bool accumulate) {
  ConvWork w;
  w.path = conv2d_kernel_path(g, dir);
  const double n = static_cast<double>(g.n), cpg = static_cast<double>(g.c_per_group()),
               opg = static_cast<double>(g.out_c_per_group()), groups = static_cast<double>(g.groups);
  const double pixels = static_cast<double>(g.out_h * g.out_w);
  const double valid_taps = static_cast<double>(valid_axis_taps(g.out_h, g.sh, g.ph, g.kh, g.h)) *
                            static_cast<double>(valid_axis_taps(g.out_w, g.sw, g.pw, g.kw, g.w));
  switch (w.path) {
    case ConvKernelPath::kDepthwise:
      w.macs = n * valid_taps * static_cast<double>(g.c);
      // The loop the kernel runs (ops/conv2d_depthwise.h): at the same FLOPs they differ in
      // speed, and a stride-2 backward data streaming dx to memory gains nothing from a second
      // thread (the 2026-12-08 profile's held-out dw144 s2 at batch 58: 641 us on one thread,
      // 624 on two, predicted 418).
      w.variant = static_cast<double>(depthwise_loop(g, dir, has_epilogue, accumulate));
      break;
    case ConvKernelPath::kDirect:
      w.macs = n * valid_taps * static_cast<double>(g.c) * static_cast<double>(g.out_c);
      break;
    case ConvKernelPath::kPointwise: {
      w.macs = n * pixels * cpg * opg * groups;
      w.gemm_macs = n * pixels * cpg * opg;
      // The GEMM kernel ops/gemm.cc picks for this direction's call (ops/conv2d.cc): streaming,
      // reductions, short products, small loops or OpenBLAS differ in speed at the same FLOPs.
      const int64_t rows = g.n * g.out_h * g.out_w, ci = g.c_per_group(), co = g.out_c_per_group();
      const GemmPath p = dir == ConvDirection::kForward        ? gemm_path(false, true, rows, co, ci)
                         : dir == ConvDirection::kBackwardData ? gemm_path(false, false, rows, ci, co)
                                                               : gemm_path(true, false, co, ci, rows);
      w.variant = static_cast<double>(p);
      break;
    }
    case ConvKernelPath::kIm2colPlain:
    case ConvKernelPath::kIm2colGlobal:
    case ConvKernelPath::kIm2colClasses:
      w.macs = static_cast<double>(im2col_multiply_adds(g));
      w.gemm_macs = w.macs / (n * groups);  // per image and group
      w.variant = w.path == ConvKernelPath::kIm2colPlain ? 0 : w.path == ConvKernelPath::kIm2colGlobal ? 1 : 2;
      break;
    case ConvKernelPath::kWinogradF2:
    case ConvKernelPath::kWinogradF4: {
      const int m = w.path == ConvKernelPath::kWinogradF2 ? 2 : 4;
      const double alpha2 = static_cast<double>((m + 2) * (m + 2));
      const WinogradCosts cost = winograd_costs(m);
      // Forward maps x to y; backward data dy to dx (channels swapped); backward weight
      // tiles dy and reduces over the tiles.
      const bool data = dir == ConvDirection::kBackwardData;
      const int64_t oh = data ? g.h : g.out_h, ow = data ? g.w : g.out_w;
      const double k = static_cast<double>(data ? g.out_c : g.c), o = static_cast<double>(data ? g.c : g.out_c);
      const double tiles = n * static_cast<double>((oh + m - 1) / m) * static_cast<double>((ow + m - 1) / m);
      w.macs = tiles * alpha2 * k * o;
      w.gemm_macs = tiles * k * o;
      w.transform_flops = dir == ConvDirection::kBackwardWeight
                              ? tiles * (k * cost.input + o * cost.filter) + k * o * cost.output
                              : tiles * (k * cost.input + o * cost.output) + k * o * cost.filter;
      w.variant = m;
      if (dir == ConvDirection::kBackwardWeight) {
        // Where the products' sums (alpha^2 per weight) must be split into blocks of output
        // channels and the tiles into chunks, every block transforms the tiles anew, and each
        // chunk loads and stores the sums (ops/conv2d_winograd_weight.cc). ResNet-18's
        // 512-channel layer at batch 25 on 6x6 maps (32 blocks, 2 chunks) ran 52 ms on one
        // thread in the 2026-12-08 profile, predicted 29 without them.
        const WinogradWeightSplit split = winograd_backward_weight_split(g, m);
        if (split.chunks > 1)
          w.transform_flops += (static_cast<double>(split.blocks) - 1) * tiles * (k * cost.input + o * cost.filter);
        w.workspace_bytes = 2.0 * static_cast<double>(split.chunks) * alpha2 * k * o * sizeof(float);
      }
      break;
    }
  }
  return w;
}

OpClass conv_class(const Graph& g, const Node& n, Dims* d, double* flops, double* bytes) {
  // x and y (NHWC) of each direction: fwd {x, w, b} -> {y}; bwd_data {dy, w} -> {dx};
  // bwd_weight {dy, x} -> {dw, db}.
  const Shape *x = nullptr, *y = nullptr;
  ConvDirection dir = ConvDirection::kForward;
  if (n.op == OpKind::kConv2d) {
    x = shape_of(g, n.inputs, 0), y = shape_of(g, n.outputs, 0);
  } else if (n.op == OpKind::kConv2dBackwardData) {
    dir = ConvDirection::kBackwardData, y = shape_of(g, n.inputs, 0), x = shape_of(g, n.outputs, 0);
  } else {
    dir = ConvDirection::kBackwardWeight, y = shape_of(g, n.inputs, 0), x = shape_of(g, n.inputs, 1);
  }
  if (x == nullptr || y == nullptr || x->rank != 4 || y->rank != 4) return OpClass::kCount;
  const ConvAttrs& a = n.attrs.conv;
  if (a.groups <= 0 || x->c() % a.groups != 0) return OpClass::kCount;
  const Shape weight{y->c(), a.kernel_h, a.kernel_w, x->c() / a.groups};
  Result<Shape> out = conv2d_output_shape(*x, weight, a);
  if (!out.is_ok() || *out != *y) return OpClass::kCount;  // not a conv the kernels would run
  const ConvGeometry geo = conv2d_geometry(*x, weight, a);
  const bool accumulate = dir != ConvDirection::kBackwardWeight && n.attrs.accumulates(0);
  const ConvWork work = conv_work(geo, dir, dir == ConvDirection::kForward && n.attrs.conv_norm, accumulate);
  const bool depthwise = work.path == ConvKernelPath::kDepthwise;
  d->n = static_cast<double>(x->n());
  d->spatial = static_cast<double>(y->h() * y->w());
  d->c_in = static_cast<double>(depthwise ? geo.c : geo.c_per_group());
  d->c_out = static_cast<double>(depthwise ? geo.out_c : geo.out_c_per_group());
  d->taps = double{1} * a.kernel_h * a.kernel_w;
  d->stride = a.stride_h;
  d->gemm_macs = work.gemm_macs;
  d->variant = work.variant;
  if (dir == ConvDirection::kBackwardWeight && shape_of(g, n.outputs, 0) == nullptr) {
    d->gemm_macs = d->variant = 0;
    return OpClass::kConvBackwardBias;  // the bias sum only: node_work's FLOPs are right
  }
  // Replace the dense multiply-adds node_work counts (every tap of every output) by the path's.
  const double dense_macs = d->n * d->spatial * static_cast<double>(geo.out_c) * d->taps *
                            static_cast<double>(geo.c_per_group());
  *flops = std::max(0.0, *flops - 2 * dense_macs) + 2 * work.macs + work.transform_flops;
  *bytes += work.workspace_bytes;
  // A conv with a fused eval-mode batch norm (runtime/fusion.h) normalises and clamps every
  // output in the kernel's epilogue. Its few FLOPs are not counted: in log space they were a small
  // offset off the fixed ratio of FLOPs to multiply-adds every plain conv has, which the
  // log-linear models weighed heavily (fitted to 39 fused samples among 351) and extrapolated 3.5x
  // over for fused convs with few input channels. The Winograd, direct and depthwise kernels apply
  // it while the output is in cache (the 2026-12-07 17:07 profile: a 16 -> 96 conv ran 163 us
  // fused, 162 us plain); the GEMM paths write the whole output first and normalise it in a pass
  // of its own, which reads and writes it again: those bytes count (features version 10; the
  // 2026-12-08 profile's MobileNetV2 w0.55 104px classifier-only steps, every conv fused, went
  // from 15-18% under their measured time to within 10%).
  const bool gemm_path_kernel = work.path == ConvKernelPath::kPointwise || work.path == ConvKernelPath::kIm2colPlain ||
                                work.path == ConvKernelPath::kIm2colGlobal || work.path == ConvKernelPath::kIm2colClasses;
  if (dir == ConvDirection::kForward && n.attrs.conv_norm && gemm_path_kernel)
    *bytes += 2.0 * static_cast<double>(y->numel()) * sizeof(float);  // ops/conv2d.cc normalise_all
  const int direction = static_cast<int>(dir);
  switch (work.path) {
    case ConvKernelPath::kDepthwise:
      return std::array{OpClass::kConvDepthwise, OpClass::kConvDepthwiseBackwardData,
                        OpClass::kConvDepthwiseBackwardWeight}[direction];
    case ConvKernelPath::kPointwise:
      return std::array{OpClass::kConvPointwise, OpClass::kConvPointwiseBackwardData,
                        OpClass::kConvPointwiseBackwardWeight}[direction];
    case ConvKernelPath::kDirect:
      return dir == ConvDirection::kForward ? OpClass::kConvDirectForward : OpClass::kConvDirectBackwardWeight;
    case ConvKernelPath::kWinogradF2:
    case ConvKernelPath::kWinogradF4:
      return std::array{OpClass::kConvWinograd, OpClass::kConvWinogradBackwardData,
                        OpClass::kConvWinogradBackwardWeight}[direction];
    default:
      return std::array{OpClass::kConvGemm, OpClass::kConvGemmBackwardData, OpClass::kConvGemmBackwardWeight}[direction];
  }
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
  // The GEMM kernel each direction's call takes (ops/linear.cc), as for the 1x1 convs.
  const int64_t m = x->dims[0], in = static_cast<int64_t>(d->c_in), out = static_cast<int64_t>(d->c_out);
  if (n.op == OpKind::kLinear) {
    d->variant = static_cast<double>(gemm_path(false, true, m, out, in));
    return OpClass::kLinear;
  }
  if (n.op == OpKind::kLinearBackwardData) {
    d->variant = static_cast<double>(gemm_path(false, false, m, in, out));
    return OpClass::kLinearBackwardData;
  }
  if (shape_of(g, n.outputs, 0) == nullptr) return OpClass::kLinearBackwardBias;
  d->variant = static_cast<double>(gemm_path(true, false, out, in, m));
  return OpClass::kLinearBackwardWeight;
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

// The class of a node; fills the shape dims its speed depends on and corrects *flops and *bytes
// (node_work's) where the kernel does other work than the op's definition.
OpClass classify(const Graph& g, const Node& n, Dims* d, double* flops, double* bytes) {
  const Shape* in0 = shape_of(g, n.inputs, 0);
  const Shape* out0 = shape_of(g, n.outputs, 0);
  *d = tensor_dims(in0);
  switch (n.op) {
    case OpKind::kConv2d:
    case OpKind::kConv2dBackwardData:
    case OpKind::kConv2dBackwardWeight:
      return conv_class(g, n, d, flops, bytes);
    case OpKind::kLinear:
    case OpKind::kLinearBackwardData:
    case OpKind::kLinearBackwardWeight:
      return linear_class(g, n, d);
    case OpKind::kMaxPool:
    case OpKind::kMaxPoolBackward:
    case OpKind::kAvgPool:
    case OpKind::kAvgPoolBackward:
      return pool_class(g, n, d);
    // A fused activation (runtime/fusion.h) is the variant: forward it clamps the output, backward
    // the norm recomputes the pre-activation and gates the incoming gradient itself.
    case OpKind::kBatchNorm:
      d->variant = n.attrs.activation != FusedActivation::kNone ? 1 : 0;
      // A norm applied from saved statistics (memory/norm_recompute.h) is one normalising pass,
      // the eval norm's work.
      return n.attrs.norm.training && !n.attrs.norm.apply_saved ? OpClass::kBatchNormTrain : OpClass::kBatchNormEval;
    case OpKind::kBatchNormBackward:
      d->variant = n.attrs.activation != FusedActivation::kNone ? 1 : 0;
      return n.attrs.norm.training ? OpClass::kBatchNormBackwardTrain : OpClass::kBatchNormBackwardEval;
    case OpKind::kRelu: return OpClass::kRelu;
    case OpKind::kReluBackward: return OpClass::kReluBackward;
    case OpKind::kRelu6: return OpClass::kRelu6;
    case OpKind::kRelu6Backward: return OpClass::kRelu6Backward;
    case OpKind::kAdd:
      d->variant = n.attrs.activation != FusedActivation::kNone ? 1 : 0;
      return OpClass::kAdd;
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
  const NodeWork work = node_work(g, n);
  f.row.flops = static_cast<double>(work.flops);
  f.row.bytes = static_cast<double>(work.bytes);
  f.op_class = classify(g, n, &d, &f.row.flops, &f.row.bytes);
  auto lg = [](double v) { return std::log(v > 1 ? v : 1.0); };
  f.row.z = {lg(f.row.flops + 1), lg(f.row.bytes + 1), lg(d.n),      lg(d.spatial),     lg(d.c_in),
             lg(d.c_out),          lg(d.taps),           d.stride,     lg(d.gemm_macs + 1),
             d.variant};
  return f;
}

std::vector<NodeFeatures> node_features(const Graph& g) {
  std::vector<NodeFeatures> features;
  features.reserve(g.nodes.size());
  for (const Node& n : g.nodes) features.push_back(node_features(g, n));
  return features;
}

int kernel_variant_version(OpClass c) {
  switch (c) {
    case OpClass::kConvDepthwise:
    case OpClass::kConvDepthwiseBackwardData:
    case OpClass::kConvDepthwiseBackwardWeight:
      return 7;
    case OpClass::kLinear:
    case OpClass::kLinearBackwardData:
    case OpClass::kLinearBackwardWeight:
      return 9;
    default:
      return 1;
  }
}

bool kernel_newer_than(OpClass c, double variant, int version) {
  switch (c) {
    case OpClass::kConvPointwise:
    case OpClass::kConvPointwiseBackwardData:
    case OpClass::kConvPointwiseBackwardWeight:
    case OpClass::kLinear:
    case OpClass::kLinearBackwardData:
    case OpClass::kLinearBackwardWeight:
      return variant == static_cast<double>(GemmPath::kSmallDots) && version < 9;
    default:
      return false;
  }
}

}  // namespace edgetrain
