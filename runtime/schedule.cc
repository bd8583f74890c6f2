#include "runtime/schedule.h"

#include <vector>

namespace edgetrain {
namespace {

bool is_update(const Node& n) { return n.phase == Phase::kUpdate; }

// A momentum-fused SGD apply (p -= lr * buf, then the decay) reads and writes only the parameter
// and its momentum buffer, both persistent, so where it runs does not change the arena; it runs
// at the end of the step. Right after the layer's backward it ran while the backward-data GEMM's
// two threads still held the weight's lines (each thread its own columns or all of them), and
// every write had to take its line from the other core first: in ops alone, a 1280x320 apply ran
// 133 us after the layer's two backward GEMMs against 59 us with its data evicted to memory and
// 24 us hot. Whole steps, two binaries interleaved (2 threads, 2026-12-07): MobileNetV2 32x32 b32
// 0.928x, ResNet-18 32x32 b32 0.952x, MobileNetV2 224x224 b8 0.981x, the demo's width 0.5 28x28
// 0.994x, but ResNet-18 224x224 b8 1.020x (6 rounds; its per-node profile shows no difference:
// the loss is outside the updates). Only tensors up to 64K floats at the end kept 0.989x /
// 0.984x / 1.003x (MobileNetV2 32, ResNet-18 32 and 224), up to 512K floats 0.935x / - / 1.013x.
bool runs_at_end(const Node& n) { return n.op == OpKind::kSgdApplyMomentum; }

void place_updates(Graph& g) {
  std::vector<Node> main_nodes, updates;
  for (Node& n : g.nodes) (is_update(n) ? updates : main_nodes).push_back(std::move(n));
  // last_touch[v] = index of the last main node reading or writing value v.
  std::vector<int> last_touch(g.values.size(), -1);
  for (size_t i = 0; i < main_nodes.size(); ++i) {
    for (ValueId v : main_nodes[i].inputs)
      if (v != kNoValue) last_touch[static_cast<size_t>(v)] = static_cast<int>(i);
    for (ValueId v : main_nodes[i].outputs)
      if (v != kNoValue) last_touch[static_cast<size_t>(v)] = static_cast<int>(i);
  }
  std::vector<std::vector<Node>> after(main_nodes.size() + 1);
  for (Node& u : updates) {
    if (runs_at_end(u)) {
      after[main_nodes.size()].push_back(std::move(u));
      continue;
    }
    int last = -1;
    for (ValueId v : u.inputs)
      if (v != kNoValue) last = std::max(last, last_touch[static_cast<size_t>(v)]);
    after[static_cast<size_t>(last + 1)].push_back(std::move(u));
  }
  g.nodes.clear();
  for (Node& u : after[0]) g.nodes.push_back(std::move(u));
  for (size_t i = 0; i < main_nodes.size(); ++i) {
    g.nodes.push_back(std::move(main_nodes[i]));
    for (Node& u : after[i + 1]) g.nodes.push_back(std::move(u));
  }
}

Status add_workspaces(Graph& g) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    const OpInfo& info = op_info(n.op);
    n.workspace = kNoValue;
    if (info.workspace == nullptr) continue;
    std::vector<Shape> in, out;
    for (ValueId v : n.inputs) in.push_back(v == kNoValue ? Shape{} : g.value(v).shape);
    for (ValueId v : n.outputs) out.push_back(v == kNoValue ? Shape{} : g.value(v).shape);
    size_t bytes = info.workspace(n.attrs, in.data(), static_cast<int>(in.size()), out.data(),
                                  static_cast<int>(out.size()));
    if (bytes == 0) continue;
    Value w;
    w.name = n.layer + "." + info.name + ".workspace";
    w.shape = Shape{static_cast<int64_t>((bytes + 3) / 4)};
    w.role = ValueRole::kWorkspace;
    n.workspace = g.add_value(w);
  }
  return Status::ok();
}

}  // namespace

Status finalize_schedule(Graph& g) {
  // A micro-batched body repeats before any update: all updates go to the end, in order.
  if (g.micro_batches > 1) {
    std::vector<Node> main_nodes, updates;
    for (Node& n : g.nodes) (is_update(n) ? updates : main_nodes).push_back(std::move(n));
    g.nodes = std::move(main_nodes);
    for (Node& u : updates) g.nodes.push_back(std::move(u));
  } else {
    place_updates(g);
  }
  return add_workspaces(g);
}

}  // namespace edgetrain
