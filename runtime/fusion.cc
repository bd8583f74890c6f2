#include "runtime/fusion.h"

#include <vector>

namespace edgetrain {

int fuse_activations(Graph& g) {
  const size_t nv = g.values.size();
  std::vector<int> readers(nv, 0), reader_node(nv, -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (ValueId v : g.nodes[i].inputs)
      if (v != kNoValue) {
        ++readers[static_cast<size_t>(v)];
        reader_node[static_cast<size_t>(v)] = static_cast<int>(i);
      }
  // Values that other values view (alias_of): such a view would see the activation's values.
  std::vector<bool> viewed(nv, false);
  for (const Value& v : g.values)
    if (v.alias_of != kNoValue) viewed[static_cast<size_t>(v.alias_of)] = true;
  std::vector<bool> drop(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& producer = g.nodes[i];  // the producer: a batch norm or an add
    if (producer.op != OpKind::kBatchNorm && producer.op != OpKind::kAdd) continue;
    if (producer.attrs.activation != FusedActivation::kNone || producer.attrs.accumulate_mask != 0) continue;
    if (producer.outputs.empty() || producer.outputs[0] == kNoValue) continue;
    const ValueId y = producer.outputs[0];
    const Value& yv = g.value(y);
    const size_t yi = static_cast<size_t>(y);
    if (readers[yi] != 1 || viewed[yi] || yv.keep || yv.alias_of != kNoValue) continue;
    if (y == g.logits || y == g.loss) continue;
    const int r = reader_node[yi];
    Node& act = g.nodes[static_cast<size_t>(r)];
    if (act.op != OpKind::kRelu && act.op != OpKind::kRelu6) continue;
    if (act.phase != producer.phase || act.outputs.empty() || act.outputs[0] == kNoValue) continue;
    producer.attrs.activation = act.op == OpKind::kRelu ? FusedActivation::kRelu : FusedActivation::kRelu6;
    producer.outputs[0] = act.outputs[0];
    drop[static_cast<size_t>(r)] = true;
    ++fused;
  }
  if (fused == 0) return 0;
  std::vector<Node> kept;
  kept.reserve(g.nodes.size() - static_cast<size_t>(fused));
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  return fused;
}

}  // namespace edgetrain
