#include "memory/micro_batching.h"

namespace edgetrain {

Result<Graph> loop_micro_batches(const Graph& g, int k) {
  if (k < 1) return invalid_argument("micro-batches must be >= 1, got " + std::to_string(k));
  if (k == 1) return g;
  if (g.input == kNoValue || g.labels == kNoValue || g.loss == kNoValue)
    return invalid_argument("micro-batching needs a training graph with input, labels and loss");
  Graph out = g;
  out.micro_batches = k;
  // The whole batch: persistent blocks the caller fills; the body reads slices through views.
  for (ValueId* slot : {&out.input, &out.labels}) {
    ValueId view = *slot;
    Value base = out.value(view);
    base.shape[0] *= k;
    ValueId id = out.add_value(base);
    out.value(view).alias_of = id;
    out.value(view).alias_offset = 0;
    out.value(view).name += ".micro";
    (slot == &out.input ? out.micro_input : out.micro_labels) = view;
    *slot = id;
  }
  // Parameter gradients accumulate over the repetitions: they live until the updates.
  for (Value& v : out.values)
    if (v.role == ValueRole::kGradient && v.grad_of != kNoValue && out.value(v.grad_of).role == ValueRole::kParam)
      v.keep = true;
  float scale = 1.0f / static_cast<float>(g.value(g.input).shape[0] * k);
  for (Node& n : out.nodes)
    if (n.op == OpKind::kSoftmaxCrossEntropy || n.op == OpKind::kSoftmaxCrossEntropyBackward) n.attrs.loss.scale = scale;
  return out;
}

}  // namespace edgetrain
