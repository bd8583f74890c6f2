#include "memory/micro_batching.h"

#include <vector>

namespace edgetrain {
namespace {

// Values every repetition shares: parameters, buffers, optimizer state, parameter gradients.
bool shared(const Graph& g, const Value& v) {
  switch (v.role) {
    case ValueRole::kParam:
    case ValueRole::kBuffer:
    case ValueRole::kOptimizerState:
      return true;
    case ValueRole::kGradient:
      return v.grad_of != kNoValue && (g.value(v.grad_of).role == ValueRole::kParam);
    default:
      return false;
  }
}

}  // namespace

Result<Graph> unroll_micro_batches(const Graph& g, int k) {
  if (k < 1) return invalid_argument("micro-batches must be >= 1, got " + std::to_string(k));
  if (k == 1) return g;
  if (g.input == kNoValue || g.labels == kNoValue || g.loss == kNoValue)
    return invalid_argument("micro-batching needs a training graph with input, labels and loss");
  Graph out;
  out.params = g.params;
  out.layer_count = g.layer_count;
  out.training = g.training;
  out.values = g.values;  // shared values keep their ids; per-repetition copies are appended

  // The whole batch: one persistent input and label block; each repetition reads a view.
  const Value& in = g.value(g.input);
  const Value& lab = g.value(g.labels);
  Value big_in = in;
  big_in.shape[0] = in.shape[0] * k;
  big_in.name = "input";
  out.input = out.add_value(big_in);
  Value big_lab = lab;
  big_lab.shape[0] = lab.shape[0] * k;
  big_lab.name = "labels";
  out.labels = out.add_value(big_lab);

  float loss_scale = 1.0f / static_cast<float>(in.shape[0] * k);
  std::vector<Node> updates;
  for (const Node& n : g.nodes)
    if (n.phase == Phase::kUpdate) updates.push_back(n);

  for (int r = 0; r < k; ++r) {
    // map[v]: the value repetition r uses for original value v.
    std::vector<ValueId> map(g.values.size(), kNoValue);
    for (size_t v = 0; v < g.values.size(); ++v) {
      const Value& val = g.values[v];
      if (shared(g, val)) {
        map[v] = static_cast<ValueId>(v);
        continue;
      }
      Value copy = val;
      copy.name = val.name + ".mb" + std::to_string(r);
      if (static_cast<ValueId>(v) == g.input || static_cast<ValueId>(v) == g.labels) {
        copy.alias_of = static_cast<ValueId>(v) == g.input ? out.input : out.labels;
        copy.alias_offset = static_cast<size_t>(r) * val.bytes();
      }
      if (val.grad_of != kNoValue) copy.grad_of = kNoValue;  // fixed below once map is complete
      map[v] = out.add_value(copy);
    }
    for (size_t v = 0; v < g.values.size(); ++v) {
      ValueId gv = g.values[v].grad_of;
      if (gv != kNoValue && !shared(g, g.values[v])) out.value(map[v]).grad_of = map[static_cast<size_t>(gv)];
    }
    out.losses.push_back(map[static_cast<size_t>(g.loss)]);
    if (r == 0) out.logits = map[static_cast<size_t>(g.logits)];
    for (const Node& n : g.nodes) {
      if (n.phase == Phase::kUpdate) continue;
      Node c = n;
      for (ValueId& v : c.inputs)
        if (v != kNoValue) v = map[static_cast<size_t>(v)];
      for (size_t o = 0; o < c.outputs.size(); ++o) {
        ValueId& v = c.outputs[o];
        if (v == kNoValue) continue;
        // Repetitions after the first add their parameter gradients to the earlier ones.
        if (r > 0 && shared(g, g.value(v)) && g.value(v).role == ValueRole::kGradient)
          c.attrs.accumulate_mask |= 1u << o;
        v = map[static_cast<size_t>(v)];
      }
      if (c.op == OpKind::kSoftmaxCrossEntropy || c.op == OpKind::kSoftmaxCrossEntropyBackward)
        c.attrs.loss.scale = loss_scale;
      out.nodes.push_back(std::move(c));
    }
  }
  out.loss = out.losses.front();
  for (Node& u : updates) out.nodes.push_back(std::move(u));
  return out;
}

}  // namespace edgetrain
