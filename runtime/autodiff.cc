#include "runtime/autodiff.h"

#include <algorithm>

#include "runtime/gradients.h"

namespace edgetrain {
namespace {

class Autodiff final : public GradContext {
 public:
  Autodiff(Graph& g, std::vector<bool> needs) : g_(g), needs_(std::move(needs)), grads_(g.values.size(), kNoValue) {}

  Graph& graph() override { return g_; }
  bool needs_grad(ValueId v) const override { return v != kNoValue && needs_[static_cast<size_t>(v)]; }
  ValueId grad(ValueId v) const override {
    return v == kNoValue || static_cast<size_t>(v) >= grads_.size() ? kNoValue : grads_[static_cast<size_t>(v)];
  }
  ValueId grad_output(ValueId v, bool* accumulate) override {
    *accumulate = false;
    if (!needs_grad(v)) return kNoValue;
    ValueId& slot = grads_[static_cast<size_t>(v)];
    if (slot != kNoValue) {
      *accumulate = true;
      return slot;
    }
    const Value& fv = g_.value(v);
    Value gv;
    gv.name = fv.name + ".grad";
    gv.shape = fv.shape;
    gv.role = ValueRole::kGradient;
    gv.grad_of = v;
    ValueId id = g_.add_value(gv);
    grads_[static_cast<size_t>(v)] = id;  // `slot` may dangle after add_value: index again
    return id;
  }
  void emit(OpKind op, const Attrs& attrs, std::vector<ValueId> inputs, std::vector<ValueId> outputs,
            const Node& forward) override {
    Node n;
    n.op = op;
    n.attrs = attrs;
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    n.phase = Phase::kBackward;
    n.layer = forward.layer;
    n.layer_index = forward.layer_index;
    backward_.push_back(std::move(n));
  }
  std::vector<Node> take_backward() { return std::move(backward_); }

 private:
  Graph& g_;
  std::vector<bool> needs_;
  std::vector<ValueId> grads_;
  std::vector<Node> backward_;
};

// Frozen batch norms (every norm with `all`) run on running statistics: no saved statistics, no
// running-stat updates; the eval-mode backward still gives dgamma/dbeta where they train.
void freeze_norms(Graph& g, const std::vector<bool>& trainable, bool all) {
  for (Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm || !n.attrs.norm.training) continue;
    int gamma = g.value(n.inputs[1]).param_index, beta = g.value(n.inputs[2]).param_index;
    if (!all && (trainable[static_cast<size_t>(gamma)] || trainable[static_cast<size_t>(beta)])) continue;
    n.attrs.norm.training = false;
    n.attrs.norm.update_running_stats = false;
    n.outputs.resize(1);
  }
}

}  // namespace

Result<Graph> build_training_graph(const Graph& forward, const std::vector<bool>& trainable,
                                   const TrainConfig& config) {
  if (trainable.size() != forward.params.size())
    return invalid_argument("trainable mask has " + std::to_string(trainable.size()) + " entries for " +
                            std::to_string(forward.params.size()) + " parameters");
  if (forward.loss == kNoValue) return invalid_argument("the forward graph has no loss");
  if (!forward.training) return invalid_argument("a training graph needs a forward graph built in training mode");
  Graph g = forward;
  bool all_running = config.norm_statistics == NormStatistics::kRunning;
  if (config.freeze.frozen_norm_in_eval_mode || all_running) freeze_norms(g, trainable, all_running);

  // Which values lead to a trainable parameter: walk forward from the parameters.
  std::vector<bool> needs(g.values.size(), false);
  bool any = false;
  for (size_t i = 0; i < g.params.size(); ++i) {
    if (trainable[i] && param_kind_is_trainable(g.params[i].kind)) {
      needs[static_cast<size_t>(g.params[i].value)] = true;
      any = true;
    }
  }
  if (!any) return invalid_argument("no parameter is trainable: the configuration freezes the whole model");
  for (const Node& n : g.nodes) {
    bool in_needs = false;
    for (ValueId v : n.inputs)
      if (v != kNoValue && needs[static_cast<size_t>(v)]) in_needs = true;
    // Only the main output carries gradient (batch-norm statistics and probabilities do not).
    if (in_needs && !n.outputs.empty() && n.outputs[0] != kNoValue) needs[static_cast<size_t>(n.outputs[0])] = true;
  }

  Autodiff ad(g, needs);
  for (size_t k = forward.nodes.size(); k-- > 0;) {
    const Node& n = g.nodes[k];  // backward nodes go to a separate list: this stays valid
    bool in_needs = false;
    for (ValueId v : n.inputs)
      if (ad.needs_grad(v)) in_needs = true;
    if (!in_needs) continue;
    GradRule rule = grad_rule(n.op);
    if (rule == nullptr) return internal_error(std::string("no gradient rule for op ") + op_name(n.op));
    rule(ad, n);
  }
  std::vector<Node> backward = ad.take_backward();
  // A max pool's argmax is for its backward: where none was emitted (everything before it is
  // frozen), the forward does not write it and it takes no memory.
  std::vector<bool> read_backward(g.values.size(), false);
  for (const Node& b : backward)
    for (ValueId v : b.inputs)
      if (v != kNoValue) read_backward[static_cast<size_t>(v)] = true;
  for (Node& n : g.nodes)
    if (n.op == OpKind::kMaxPool && n.outputs.size() > 1 && n.outputs[1] != kNoValue &&
        !read_backward[static_cast<size_t>(n.outputs[1])])
      n.outputs[1] = kNoValue;

  // One update node per trainable parameter that received a gradient.
  std::vector<Node> updates;
  for (size_t i = 0; i < g.params.size(); ++i) {
    const ParamSpec& p = g.params[i];
    ValueId gv = ad.grad(p.value);
    if (!trainable[i] || gv == kNoValue) continue;
    if (config.retain_parameter_gradients) g.value(gv).keep = true;
    auto state = [&](const char* suffix) {
      Value s;
      s.name = p.name + "." + suffix;
      s.shape = p.shape;
      s.role = ValueRole::kOptimizerState;
      s.param_index = static_cast<int>(i);
      return g.add_value(s);
    };
    Node u;
    u.phase = Phase::kUpdate;
    u.layer = p.layer;
    u.layer_index = p.layer_index;
    u.attrs.optim = config.optimizer.attrs;
    if (config.optimizer.kind == OptimizerKind::kSgd) {
      u.op = OpKind::kSgdUpdate;
      ValueId mom = config.optimizer.attrs.momentum != 0.0f ? state("momentum_buffer") : kNoValue;
      u.inputs = {p.value, gv, mom};
    } else {
      u.op = OpKind::kAdamWUpdate;
      ValueId m = state("exp_avg");
      ValueId v = state("exp_avg_sq");
      u.inputs = {p.value, gv, m, v};
    }
    updates.push_back(std::move(u));
  }
  for (Node& n : backward) g.nodes.push_back(std::move(n));
  for (Node& n : updates) g.nodes.push_back(std::move(n));
  return g;
}

}  // namespace edgetrain
