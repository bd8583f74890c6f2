#include "memory/norm_recompute.h"

#include <vector>

#include "memory/node_splice.h"

namespace edgetrain {

namespace {

// A norm of the forward pass: training mode with its statistics saved (the apply node's
// inputs), or eval mode (running statistics, which nothing changes within a step: the same node
// again gives the same output).
bool recomputable_norm(const Node& n) {
  if (n.phase != Phase::kForward || n.op != OpKind::kBatchNorm || n.attrs.norm.apply_saved || n.inputs.size() != 5 ||
      n.outputs.empty() || n.outputs[0] == kNoValue)
    return false;
  if (!n.attrs.norm.training) return true;
  return n.outputs.size() == 3 && n.outputs[1] != kNoValue && n.outputs[2] != kNoValue;
}

}  // namespace

Result<Graph> recompute_norm_outputs(const Graph& g) {
  Graph out = g;
  std::vector<Node> nodes = g.nodes;
  std::vector<std::vector<Node>> before(nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& f = g.nodes[i];
    if (!recomputable_norm(f)) continue;
    const ValueId x = f.inputs[0], y = f.outputs[0];
    const Value& yv = g.value(y);
    if (yv.keep || yv.alias_of != kNoValue || value_role_is_persistent(yv.role) || y == g.logits || y == g.loss)
      continue;
    // The first node after the forward that reads y; and whether one reads x (then x is kept
    // for backward anyway, and recomputing y costs no memory).
    const int first_reader = first_backward_reader(nodes, i + 1, y);
    if (first_reader < 0 || first_backward_reader(nodes, i + 1, x) < 0) continue;

    Value recomputed = yv;
    recomputed.name = yv.name + ".recomputed";
    const ValueId y2 = out.add_value(recomputed);
    Node apply;
    apply.op = OpKind::kBatchNorm;
    apply.phase = nodes[static_cast<size_t>(first_reader)].phase;
    apply.attrs = f.attrs;
    apply.attrs.accumulate_mask = 0;
    apply.outputs = {y2};
    if (f.attrs.norm.training) {
      apply.attrs.norm.apply_saved = true;
      apply.attrs.norm.update_running_stats = false;
      apply.inputs = {x, f.inputs[1], f.inputs[2], f.outputs[1], f.outputs[2]};
    } else {
      apply.inputs = f.inputs;  // eval mode: the forward node itself, on the running statistics
    }
    apply.layer = f.layer;
    apply.layer_index = f.layer_index;
    before[static_cast<size_t>(first_reader)].push_back(std::move(apply));
    redirect_backward_reads(nodes, static_cast<size_t>(first_reader), y, y2);
  }
  splice_nodes(out, nodes, before);
  return out;
}

int count_norm_recomputes(const Graph& g) {
  int n = 0;
  for (const Node& node : g.nodes)
    n += node.op == OpKind::kBatchNorm && node.phase != Phase::kForward && node.phase != Phase::kRecompute ? 1 : 0;
  return n;
}

}  // namespace edgetrain
