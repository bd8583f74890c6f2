#include "memory/compression.h"

#include <cmath>
#include <limits>
#include <vector>

#include "memory/node_splice.h"
#include "memory/norm_recompute.h"
#include "ops/bitmap_storage.h"

namespace edgetrain {
namespace {

// Whether a node's main output is a ReLU or ReLU6 output (a ReLU node, or a batch norm or add
// with the activation fused in: runtime/fusion.h), and the activation's upper bound.
bool makes_post_relu(const Node& n, float* hi) {
  const FusedActivation act = n.op == OpKind::kRelu    ? FusedActivation::kRelu
                              : n.op == OpKind::kRelu6 ? FusedActivation::kRelu6
                                                       : n.attrs.activation;
  *hi = fused_activation_high(act);
  return act != FusedActivation::kNone;
}

}  // namespace

Result<Graph> apply_compression(const Graph& g_in, const CompressionConfig& config) {
  // Norm outputs first: a recomputed one needs no storage at all, so only the saved post-ReLU
  // tensors left (after residual adds, where no norm precedes) are packed or masked below.
  Graph recomputed;
  if (config.recompute_norm_outputs) {
    ET_ASSIGN_OR_RETURN(recomputed, recompute_norm_outputs(g_in));
  }
  const Graph& g = config.recompute_norm_outputs ? recomputed : g_in;
  if (!config.sparse_activations && !config.relu_masks) return g;
  if (config.sparse_activations && !(config.capacity > 0.0f && config.capacity <= 1.0f))
    return invalid_argument("compression capacity must be in (0, 1], got " + std::to_string(config.capacity));
  Graph out = g;
  size_t nv = g.values.size();
  // Where each value is produced and last used by the forward pass; its first later reader.
  std::vector<int> producer(nv, -1), last_forward(nv, -1), first_later(nv, -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    bool fwd = n.phase == Phase::kForward;
    for (ValueId v : n.inputs) {
      if (v == kNoValue) continue;
      if (fwd) last_forward[static_cast<size_t>(v)] = static_cast<int>(i);
      else if (first_later[static_cast<size_t>(v)] < 0) first_later[static_cast<size_t>(v)] = static_cast<int>(i);
    }
    if (fwd)
      for (ValueId v : n.outputs)
        if (v != kNoValue) producer[static_cast<size_t>(v)] = static_cast<int>(i);
  }
  // Nodes to insert: before[i] run before node i, after[i] right after it.
  std::vector<std::vector<Node>> before(g.nodes.size()), after(g.nodes.size());
  std::vector<Node> nodes = g.nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& f = g.nodes[i];
    float hi = 0;
    if (f.phase != Phase::kForward || !makes_post_relu(f, &hi)) continue;
    ValueId y = f.outputs[0];
    size_t yi = static_cast<size_t>(y);
    if (first_later[yi] < 0) continue;  // backward does not need it
    const Value& yv = g.value(y);
    int64_t n = yv.shape.numel();
    if (config.relu_masks) {
      ValueId bits = kNoValue;
      for (size_t j = i + 1; j < g.nodes.size(); ++j) {
        Node& b = nodes[j];
        if (b.phase == Phase::kForward) continue;
        bool relu_bwd = (b.op == OpKind::kReluBackward || b.op == OpKind::kRelu6Backward) && b.inputs.size() == 2 &&
                        b.inputs[1] == y;
        if (!relu_bwd) continue;
        if (bits == kNoValue) {
          Value m;
          m.name = yv.name + ".mask";
          m.shape = mask_shape(n);
          m.dtype = DType::kU64;
          m.role = ValueRole::kActivation;
          bits = out.add_value(m);
          Node pack;
          pack.op = OpKind::kPackMask;
          pack.phase = Phase::kForward;
          pack.layer = f.layer;
          pack.layer_index = f.layer_index;
          pack.attrs.sparse.lo = 0.0f;
          pack.attrs.sparse.hi = hi;
          pack.inputs = {y};
          pack.outputs = {bits};
          after[i].push_back(pack);
        }
        b.op = OpKind::kReluBackwardMask;
        b.inputs[1] = bits;
      }
    }
    // Pack after the last forward use, unpack before the first reader that remains.
    const int first_reader = first_backward_reader(nodes, i + 1, y);
    if (!config.sparse_activations || first_reader < 0) continue;
    int64_t capacity = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(config.capacity * static_cast<double>(n))));
    Value pv;
    pv.name = yv.name + ".packed";
    pv.shape = packed_shape(n, capacity);
    pv.dtype = DType::kU64;
    pv.role = ValueRole::kActivation;
    ValueId packed = out.add_value(pv);
    Value uv = yv;
    uv.name = yv.name + ".unpacked";
    ValueId unpacked = out.add_value(uv);
    Node pack;
    pack.op = OpKind::kPackSparse;
    pack.phase = Phase::kForward;
    pack.layer = f.layer;
    pack.layer_index = f.layer_index;
    pack.attrs.sparse.capacity = capacity;
    pack.inputs = {y};
    pack.outputs = {packed};
    int last = std::max(last_forward[yi], static_cast<int>(i));
    after[static_cast<size_t>(last)].push_back(pack);
    Node unpack;
    unpack.op = OpKind::kUnpackSparse;
    unpack.phase = nodes[static_cast<size_t>(first_reader)].phase;
    unpack.layer = f.layer;
    unpack.layer_index = f.layer_index;
    unpack.inputs = {packed};
    unpack.outputs = {unpacked};
    before[static_cast<size_t>(first_reader)].push_back(unpack);
    redirect_backward_reads(nodes, static_cast<size_t>(first_reader), y, unpacked);
  }
  splice_nodes(out, nodes, before, &after);
  return out;
}

}  // namespace edgetrain
