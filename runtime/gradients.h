// The gradient rules: for every forward OpKind, which backward nodes reverse-mode autodiff emits.
// Rules see the training graph through GradContext and emit nodes only for inputs that need a
// gradient, so freezing is simply "not marked" and costs no backward work.
#pragma once

#include <vector>

#include "runtime/graph.h"

namespace edgetrain {

class GradContext {
 public:
  virtual ~GradContext() = default;
  virtual Graph& graph() = 0;
  // True when the gradient of forward value v is wanted (it leads to a trainable parameter).
  virtual bool needs_grad(ValueId v) const = 0;
  // The gradient of forward value v accumulated so far, or kNoValue when nothing flowed into it.
  virtual ValueId grad(ValueId v) const = 0;
  // The value a backward node writes the gradient of v into, or kNoValue when v needs none.
  // *accumulate is set when an earlier node already wrote part of that gradient.
  virtual ValueId grad_output(ValueId v, bool* accumulate) = 0;
  // Appends a backward node implementing part of the gradient of `forward`.
  virtual void emit(OpKind op, const Attrs& attrs, std::vector<ValueId> inputs,
                    std::vector<ValueId> outputs, const Node& forward) = 0;
};

using GradRule = void (*)(GradContext& ctx, const Node& forward);

// The rule for a forward op; null for ops that are not forward ops.
GradRule grad_rule(OpKind kind);

}  // namespace edgetrain
