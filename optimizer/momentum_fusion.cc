#include "optimizer/momentum_fusion.h"

#include <string>
#include <vector>

namespace edgetrain {

bool momentum_fusion_applies(const TrainConfig& config) {
  const OptimAttrs& a = config.optimizer.attrs;
  return config.fuse_momentum && config.optimizer.kind == OptimizerKind::kSgd && a.momentum != 0.0f &&
         a.dampening == 0.0f && !a.nesterov && !config.retain_parameter_gradients &&
         !config.compression.sparse_activations;
}

namespace {

// Ops whose parameter-gradient outputs honour the accumulate bit (micro-batching relies on it).
bool accumulates_parameter_gradients(OpKind op) {
  return op == OpKind::kConv2dBackwardWeight || op == OpKind::kLinearBackwardWeight ||
         op == OpKind::kBatchNormBackward;
}

}  // namespace

Status fuse_gradients_into_momentum(Graph& g) {
  // Producers and readers of every value.
  const size_t nv = g.values.size();
  std::vector<int> producers(nv, 0), readers(nv, 0);
  std::vector<std::pair<int, int>> producer_slot(nv, {-1, -1});  // node, output index
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    for (ValueId v : n.inputs)
      if (v != kNoValue) ++readers[static_cast<size_t>(v)];
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      ValueId v = n.outputs[k];
      if (v == kNoValue) continue;
      ++producers[static_cast<size_t>(v)];
      producer_slot[static_cast<size_t>(v)] = {static_cast<int>(i), static_cast<int>(k)};
    }
  }
  std::vector<Node> decays;
  for (Node& u : g.nodes) {
    if (u.op != OpKind::kSgdUpdate || u.inputs.size() < 3 || u.inputs[2] == kNoValue) continue;
    const ValueId param = u.inputs[0], grad = u.inputs[1], buffer = u.inputs[2];
    const size_t gi = static_cast<size_t>(grad);
    if (grad == kNoValue || producers[gi] != 1 || readers[gi] != 1 || g.value(grad).alias_of != kNoValue) continue;
    auto [node, slot] = producer_slot[gi];
    Node& p = g.nodes[static_cast<size_t>(node)];
    if (p.phase != Phase::kBackward || !accumulates_parameter_gradients(p.op) || p.attrs.accumulates(slot)) continue;
    if (g.value(buffer).shape.numel() != g.value(grad).shape.numel())
      return internal_error("momentum buffer '" + g.value(buffer).name + "' does not match its gradient's size");
    p.outputs[static_cast<size_t>(slot)] = buffer;
    p.attrs.accumulate_mask |= 1u << slot;
    g.value(grad).keep = false;  // no longer produced or read: it gets no memory

    Node decay;
    decay.op = OpKind::kSgdMomentumDecay;
    decay.phase = Phase::kPrepare;
    decay.attrs.optim = u.attrs.optim;
    decay.inputs = {param, buffer};
    decay.layer = u.layer;
    decay.layer_index = u.layer_index;
    decays.push_back(std::move(decay));

    u.op = OpKind::kSgdApplyMomentum;
    u.inputs = {param, buffer};
  }
  if (decays.empty()) return Status::ok();
  for (Node& n : g.nodes) decays.push_back(std::move(n));
  g.nodes = std::move(decays);
  return Status::ok();
}

}  // namespace edgetrain
