// What the cost model knows about one node of a training graph: its op class (kernel identity
// plus the coarse class that decides which code path runs, e.g. depthwise conv forward vs 1x1
// conv weight gradient) and a fixed row of numeric features that the regressors use.
//
// Classes are finer than OpKind because one op runs very different code for different shapes
// (ops/conv2d.cc picks depthwise loops, one GEMM, Winograd, the direct stem kernel or im2col +
// GEMM), and a model per code path is far more accurate than one model that must learn the
// switch. The conv classes follow the kernels' own decision (ops/conv2d.h conv2d_kernel_path),
// and a conv's FLOPs are those of the path it takes: Winograd's products and transforms, the
// taps an im2col plan keeps, the valid taps of the direct and depthwise loops.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "planner/regressors.h"
#include "runtime/graph.h"

namespace edgetrain {

enum class OpClass : uint8_t {
  kConvDepthwise,            // groups == C == Cout: direct loops over channels
  kConvDepthwiseBackwardData,
  kConvDepthwiseBackwardWeight,
  kConvPointwise,            // 1x1, stride 1, no padding: one GEMM over N*H*W rows
  kConvPointwiseBackwardData,
  kConvPointwiseBackwardWeight,
  kConvGemm,                 // other dense convs on the im2col path (any tap-pruning plan)
  kConvGemmBackwardData,
  kConvGemmBackwardWeight,
  kConvWinograd,             // dense 3x3 stride 1 where ops/conv2d_winograd.h says it pays
  kConvWinogradBackwardData,
  kConvWinogradBackwardWeight,
  kConvDirectForward,        // dense convs with <= 4 input channels (stems): ops/conv2d_direct.h
  kConvDirectBackwardWeight,
  kConvBackwardBias,         // weight gradient not needed (frozen weight), only the bias sum
  kBatchNormTrain,
  kBatchNormEval,
  kBatchNormBackwardTrain,
  kBatchNormBackwardEval,
  kRelu,
  kReluBackward,
  kRelu6,
  kRelu6Backward,
  kAdd,
  kGradCopy,
  kFlatten,
  kMaxPool,
  kMaxPoolBackward,
  kAvgPool,
  kAvgPoolBackward,
  kGlobalAvgPool,
  kGlobalAvgPoolBackward,
  kLinear,
  kLinearBackwardData,
  kLinearBackwardWeight,
  kLinearBackwardBias,
  kSoftmaxCrossEntropy,
  kSoftmaxCrossEntropyBackward,
  kSgdUpdate,                // no momentum buffer
  kSgdMomentumUpdate,
  kAdamWUpdate,
  kPackSparse,               // BitTrain storage: bitmap + packed nonzeros of a saved activation
  kUnpackSparse,
  kPackMask,                 // 1-bit ReLU mask
  kReluBackwardMask,         // ReLU/ReLU6 backward from the mask
  kDropout,
  kDropoutBackward,
  kSgdMomentumDecay,         // fused SGD momentum (optimizer/momentum_fusion.h): buf = wd * p, first step only
  kSgdApplyMomentum,         // p -= lr * buf, then buf = m * buf + wd * p
  kCount,
};
constexpr int kOpClassCount = static_cast<int>(OpClass::kCount);

// "conv.depthwise.fwd", "batch_norm.train", ... (stable: stored in profiles).
const char* op_class_name(OpClass c);
// The class of a stored name; false when unknown (a profile from a newer edgetrain).
bool parse_op_class(const std::string& name, OpClass* out);

// The definition of node_features' classes and rows, stored with every profile. Bump it whenever
// this file's code gives any node another class or row (a new feature, other FLOPs): a profile's
// kernel samples carry rows computed when they were measured, and a model fitted on stale rows is
// queried with new ones (session 10's GEMM-kernel variant left the machine's cached profile with
// variant 0 on every 1x1-conv sample while queries carried 0-5). planner/refeaturize.h rebuilds
// the rows of a profile that stored where its samples came from.
//   1: 2026-12-07, the GEMM kernel of a 1x1 conv as its variant (ops/gemm.h gemm_path)
//   2: 2026-12-07, gemm_path's wide GEMMs and short GEMMs from 2 rows (1x1 convs at small batches)
//   3: 2026-12-07, Winograd's forward and backward data only with enough pixels per output
//      channel (ops/conv2d_winograd.h winograd_tile): small batches' 3x3 convs are conv.gemm.*
//   4: 2026-12-07, gemm_path's dot-product GEMMs (1x1 convs' forward on 1x1 maps at batch 1-4)
//   5: 2026-12-07, short GEMMs under 16 rows only with B transposed (1x1 convs' backward data)
//   6: 2026-12-07, a conv's fused eval-mode norm no longer adds FLOPs (its epilogue runs in cache)
//   7: 2026-12-08, a depthwise conv's loop as its variant (ops/conv2d_depthwise.h depthwise_loop)
//   8: 2026-12-08, the Winograd weight gradient's repeated transforms (FLOPs) and its sums'
//      loads and stores per chunk of tiles (bytes)
//   9: 2026-12-08, small GEMMs as dot products (GemmPath::kSmallDots: few rows, or K over 1024,
//      against B^T) and a linear layer's GEMM kernel as its variant (gemm_path, as the 1x1 convs')
//  10: 2026-12-08, a GEMM-path conv's fused eval-mode norm counts its pass over the output (bytes)
constexpr int kFeatureVersion = 10;
// The index in FeatureRow::z of the kernel variant within the class (planner/regressors.h).
constexpr int kKernelVariantFeature = 9;
// The features version since which class c's variant names the kernel that ran (1; depthwise
// convs 7, linear layers 9): a stored sample of that version or later whose node now gets another variant timed
// code that no longer runs for it (planner/refeaturize.h drops it); before, the variant was 0
// whatever ran, and a new one is only a new feature.
int kernel_variant_version(OpClass c);
// Whether the kernel that class c's variant names is newer than features version `version`: a
// stored sample of an older version whose node now takes it timed other code (dropped; the small
// GEMMs' dot products, version 9, replaced transposes and plain loops that ran 2-3x slower).
bool kernel_newer_than(OpClass c, double variant, int version);

struct NodeFeatures {
  OpClass op_class = OpClass::kCount;
  FeatureRow row;
};

// The class and features of one node. FLOPs and bytes are planner/op_flops.h's node_work (one
// definition for every report); the other features are the shapes that decide a kernel's speed.
// Nodes with an op this file does not know (an OpKind added after it) get OpClass::kCount and
// still carry FLOPs and bytes (the cost model's fallback uses them).
NodeFeatures node_features(const Graph& g, const Node& n);
// Every node's, in schedule order (element i is g.nodes[i]'s).
std::vector<NodeFeatures> node_features(const Graph& g);

}  // namespace edgetrain
