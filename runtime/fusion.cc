#include "runtime/fusion.h"

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

namespace edgetrain {

namespace {

// Who reads each value: how many node inputs, and the last node that does.
struct Readers {
  std::vector<int> count, last_node;
  std::vector<bool> viewed;  // other values view it (alias_of): they would see the fused result
};

Readers readers_of(const Graph& g) {
  const size_t nv = g.values.size();
  Readers r{std::vector<int>(nv, 0), std::vector<int>(nv, -1), std::vector<bool>(nv, false)};
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (ValueId v : g.nodes[i].inputs)
      if (v != kNoValue) {
        ++r.count[static_cast<size_t>(v)];
        r.last_node[static_cast<size_t>(v)] = static_cast<int>(i);
      }
  for (const Value& v : g.values)
    if (v.alias_of != kNoValue) r.viewed[static_cast<size_t>(v.alias_of)] = true;
  return r;
}

// The node that alone reads `producer`'s main output, which may be replaced by a fused node's
// output; null when there is none.
Node* sole_reader(Graph& g, const Readers& r, const Node& producer) {
  if (producer.outputs.empty() || producer.outputs[0] == kNoValue) return nullptr;
  const ValueId y = producer.outputs[0];
  const Value& yv = g.value(y);
  const size_t yi = static_cast<size_t>(y);
  if (r.count[yi] != 1 || r.viewed[yi] || yv.keep || yv.alias_of != kNoValue) return nullptr;
  if (y == g.logits || y == g.loss) return nullptr;
  Node* reader = &g.nodes[static_cast<size_t>(r.last_node[yi])];
  if (reader->phase != producer.phase || reader->outputs.empty() || reader->outputs[0] == kNoValue) return nullptr;
  return reader;
}

int drop_nodes(Graph& g, const std::vector<bool>& drop, int dropped) {
  if (dropped == 0) return 0;
  std::vector<Node> kept;
  kept.reserve(g.nodes.size() - static_cast<size_t>(dropped));
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  return dropped;
}

// A fusion's switch: on unless the environment variable says "off" (A/B timings).
bool on_unless_off(const char* variable) {
  const char* v = std::getenv(variable);
  return !(v && std::string(v) == "off");
}

std::atomic<bool> g_conv_norm_fusion{on_unless_off("EDGETRAIN_CONV_NORM_FUSION")};

}  // namespace

int fuse_activations(Graph& g) {
  const Readers readers = readers_of(g);
  std::vector<bool> drop(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& producer = g.nodes[i];  // the producer: a batch norm or an add
    if (producer.op != OpKind::kBatchNorm && producer.op != OpKind::kAdd) continue;
    if (producer.attrs.activation != FusedActivation::kNone || producer.attrs.accumulate_mask != 0) continue;
    Node* act = sole_reader(g, readers, producer);
    if (act == nullptr || (act->op != OpKind::kRelu && act->op != OpKind::kRelu6)) continue;
    producer.attrs.activation = act->op == OpKind::kRelu ? FusedActivation::kRelu : FusedActivation::kRelu6;
    producer.outputs[0] = act->outputs[0];
    drop[static_cast<size_t>(act - g.nodes.data())] = true;
    ++fused;
  }
  return drop_nodes(g, drop, fused);
}

std::atomic<bool> g_activation_backward_fusion{on_unless_off("EDGETRAIN_ACTIVATION_BACKWARD_FUSION")};

void set_activation_backward_fusion(bool enabled) {
  g_activation_backward_fusion.store(enabled, std::memory_order_relaxed);
}

int fuse_activation_backwards(Graph& g) {
  if (!g_activation_backward_fusion.load(std::memory_order_relaxed)) return 0;
  const Readers readers = readers_of(g);
  std::vector<int> producer(g.values.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (ValueId v : g.nodes[i].outputs)
      if (v != kNoValue) producer[static_cast<size_t>(v)] = static_cast<int>(i);
  std::vector<bool> drop(g.nodes.size(), false);
  int fused = 0;
  for (Node& act : g.nodes) {
    if (act.op != OpKind::kReluBackward && act.op != OpKind::kRelu6Backward) continue;
    if (act.attrs.accumulate_mask != 0 || act.inputs.size() != 2 || act.inputs[0] == kNoValue) continue;
    const FusedActivation kind = act.op == OpKind::kReluBackward ? FusedActivation::kRelu : FusedActivation::kRelu6;
    // The activation's output must come straight from a norm with this activation fused in ...
    const ValueId y = act.inputs[1];
    if (y == kNoValue || producer[static_cast<size_t>(y)] < 0) continue;
    const Node& norm_fwd = g.nodes[static_cast<size_t>(producer[static_cast<size_t>(y)])];
    if (norm_fwd.op != OpKind::kBatchNorm || norm_fwd.attrs.activation != kind || norm_fwd.inputs.size() != 5) continue;
    // ... whose backward alone reads the gradient, on the same input and gamma (the backward may
    // need no dx: sole_reader's test for a main output does not apply).
    const ValueId dy = act.outputs.empty() ? kNoValue : act.outputs[0];
    if (dy == kNoValue) continue;
    const size_t di = static_cast<size_t>(dy);
    if (readers.count[di] != 1 || readers.viewed[di] || g.value(dy).keep || g.value(dy).alias_of != kNoValue) continue;
    Node* norm = &g.nodes[static_cast<size_t>(readers.last_node[di])];
    if (norm->phase != act.phase || norm->op != OpKind::kBatchNormBackward || norm->inputs.size() != 5) continue;
    if (norm->inputs[0] != act.outputs[0] || norm->attrs.activation != FusedActivation::kNone) continue;
    if (norm->inputs[1] != norm_fwd.inputs[0] || norm->inputs[2] != norm_fwd.inputs[1]) continue;
    if (norm->attrs.norm.training != norm_fwd.attrs.norm.training) continue;
    norm->inputs[0] = act.inputs[0];
    norm->inputs.push_back(norm_fwd.inputs[2]);  // beta
    norm->attrs.activation = kind;
    drop[static_cast<size_t>(&act - g.nodes.data())] = true;
    ++fused;
  }
  return drop_nodes(g, drop, fused);
}

void set_conv_norm_fusion(bool enabled) { g_conv_norm_fusion.store(enabled, std::memory_order_relaxed); }

int fuse_conv_norms(Graph& g) {
  if (!g_conv_norm_fusion.load(std::memory_order_relaxed)) return 0;
  const Readers readers = readers_of(g);
  std::vector<bool> drop(g.nodes.size(), false);
  int fused = 0;
  for (Node& conv : g.nodes) {
    if (conv.op != OpKind::kConv2d || conv.attrs.conv_norm || conv.attrs.accumulate_mask != 0) continue;
    if (conv.attrs.activation != FusedActivation::kNone || conv.inputs.size() < 2 || conv.inputs.size() > 3) continue;
    Node* norm = sole_reader(g, readers, conv);
    if (norm == nullptr || norm->op != OpKind::kBatchNorm || norm->attrs.norm.training) continue;
    if (norm->attrs.accumulate_mask != 0 || norm->inputs.size() != 5 || norm->inputs[0] != conv.outputs[0]) continue;
    // Eval mode has no statistics outputs; should one exist and be read, the norm stays.
    bool other_outputs_read = false;
    for (size_t o = 1; o < norm->outputs.size(); ++o)
      other_outputs_read |= norm->outputs[o] != kNoValue && readers.count[static_cast<size_t>(norm->outputs[o])] > 0;
    if (other_outputs_read) continue;
    conv.inputs.resize(3, kNoValue);  // {x, w, b?}
    conv.inputs.insert(conv.inputs.end(), norm->inputs.begin() + 1, norm->inputs.end());
    conv.attrs.conv_norm = true;
    conv.attrs.norm = norm->attrs.norm;
    conv.attrs.activation = norm->attrs.activation;
    conv.outputs = {norm->outputs[0]};
    drop[static_cast<size_t>(norm - g.nodes.data())] = true;
    ++fused;
  }
  return drop_nodes(g, drop, fused);
}

int fuse_ops(Graph& g) { return fuse_activations(g) + fuse_conv_norms(g) + fuse_activation_backwards(g); }

}  // namespace edgetrain
