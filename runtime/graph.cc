#include "runtime/graph.h"

namespace edgetrain {

const char* value_role_name(ValueRole role) {
  switch (role) {
    case ValueRole::kInput: return "input";
    case ValueRole::kLabel: return "label";
    case ValueRole::kParam: return "param";
    case ValueRole::kBuffer: return "buffer";
    case ValueRole::kOptimizerState: return "optimizer_state";
    case ValueRole::kActivation: return "activation";
    case ValueRole::kGradient: return "gradient";
    case ValueRole::kWorkspace: return "workspace";
    case ValueRole::kOutput: return "output";
  }
  return "?";
}

bool value_role_is_persistent(ValueRole role) {
  switch (role) {
    case ValueRole::kActivation:
    case ValueRole::kGradient:
    case ValueRole::kWorkspace:
      return false;
    default:
      return true;
  }
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kPrepare: return "prepare";
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kRecompute: return "recompute";
    case Phase::kUpdate: return "update";
  }
  return "?";
}

bool param_kind_is_trainable(ParamKind kind) {
  return kind != ParamKind::kRunningMean && kind != ParamKind::kRunningVar;
}

int Graph::find_param(const std::string& name) const {
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].name == name) return static_cast<int>(i);
  return -1;
}

int64_t Graph::trainable_param_count() const {
  int64_t n = 0;
  for (const ParamSpec& p : params)
    if (param_kind_is_trainable(p.kind)) n += p.shape.numel();
  return n;
}

std::string Graph::to_string() const {
  std::string s;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    s += std::to_string(i) + " " + phase_name(n.phase) + " " + op_name(n.op) + " [" + n.layer + "] (";
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (k) s += ", ";
      s += n.inputs[k] == kNoValue ? "-" : values[static_cast<size_t>(n.inputs[k])].name;
    }
    s += ") -> (";
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      if (k) s += ", ";
      s += n.outputs[k] == kNoValue ? "-" : values[static_cast<size_t>(n.outputs[k])].name +
                                               values[static_cast<size_t>(n.outputs[k])].shape.to_string();
    }
    s += ")\n";
  }
  return s;
}

std::vector<int> node_repeats(const Graph& g) {
  std::vector<int> r(g.nodes.size(), 1);
  if (g.micro_batches <= 1) return r;
  for (size_t i = 0; i < g.nodes.size() && g.nodes[i].phase != Phase::kUpdate; ++i)
    if (g.nodes[i].phase != Phase::kPrepare) r[i] = g.micro_batches;
  return r;
}

}  // namespace edgetrain
