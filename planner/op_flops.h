// The work one schedule node does, for reports that set achieved speed against the hardware's:
// floating-point operations, bytes of the tensors it reads and writes, and a coarse layer kind
// with the pass it belongs to, so that a per-node profile can be summed per kind
// ("conv_depthwise bwd_data: 12 ms, 3.1 GFLOP/s").
//
// Counting rules (one definition for every report):
//   * conv2d and linear: 2 FLOPs per multiply-add, in all three directions: forward, backward
//     data (dx = dy * W^T) and backward weight (dW = dy^T * x) each cost the forward's
//     multiply-adds; biases add one FLOP per output element (forward) or per dy element (db).
//   * everything else: a fixed, documented count of operations per element (op_flops.cc), so
//     memory-bound kinds get a GFLOP/s too; their bytes/s says more about them.
//   * bytes: every input and output the node has (absent optional ones count 0); an output it
//     accumulates into is read and written (counted twice); optimizer updates also write their
//     parameter and state tensors back in place.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/graph.h"

namespace edgetrain {

// What kind of layer a node computes for. Convolutions split by what limits them: a 1x1 conv is
// a plain GEMM, a kxk dense conv an im2col GEMM, a depthwise conv is memory-bound.
enum class LayerKind : uint8_t {
  kConv1x1,        // kernel 1x1, groups 1 (any stride)
  kConvDense,      // kernel > 1x1, groups 1
  kConvDepthwise,  // one input channel per group
  kConvGrouped,    // other grouped convs
  kBatchNorm,
  kActivation,     // relu, relu6
  kPooling,        // max, average, global average
  kLinear,
  kLoss,           // softmax cross-entropy
  kOptimizer,      // SGD, AdamW updates
  kOther,          // add, gradient copies, flatten
  kCount,
};
constexpr int kLayerKindCount = static_cast<int>(LayerKind::kCount);
const char* layer_kind_name(LayerKind kind);  // "conv1x1", "conv_dense", ...

// Which pass of the training step a node belongs to. Backward ops of one kernel that yield the
// input gradient (relu, batch norm, pooling, loss backward) count as backward data, even when
// they also produce parameter gradients (batch norm's dgamma, dbeta).
enum class PassKind : uint8_t {
  kForward,
  kRecompute,       // forward nodes re-run by gradient checkpointing
  kBackwardData,
  kBackwardWeight,  // conv / linear weight and bias gradients
  kUpdate,          // optimizer updates
  kCount,
};
constexpr int kPassKindCount = static_cast<int>(PassKind::kCount);
const char* pass_kind_name(PassKind pass);  // "fwd", "recompute", "bwd_data", "bwd_weight", "update"

struct NodeWork {
  LayerKind kind = LayerKind::kOther;
  PassKind pass = PassKind::kForward;
  int64_t flops = 0;
  int64_t bytes = 0;
};

// The work of `node`, a node of `g` (a forward graph or a training schedule).
NodeWork node_work(const Graph& g, const Node& node);

// "conv_depthwise bwd_data": a report row label.
std::string work_label(const NodeWork& w);

}  // namespace edgetrain
