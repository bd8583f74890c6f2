#include "memory/liveness.h"

#include <algorithm>

#include "memory/arena.h"

namespace edgetrain {

const char* memory_category_name(MemoryCategory c) {
  switch (c) {
    case MemoryCategory::kParameters: return "parameters";
    case MemoryCategory::kOptimizerState: return "optimizer_state";
    case MemoryCategory::kInputs: return "inputs";
    case MemoryCategory::kActivations: return "activations";
    case MemoryCategory::kPackedActivations: return "packed_activations";
    case MemoryCategory::kGradients: return "gradients";
    case MemoryCategory::kWorkspace: return "workspace";
    case MemoryCategory::kCount: break;
  }
  return "?";
}

MemoryCategory memory_category(const Value& v) {
  if (v.role == ValueRole::kActivation && v.dtype == DType::kU64) return MemoryCategory::kPackedActivations;
  switch (v.role) {
    case ValueRole::kParam:
    case ValueRole::kBuffer: return MemoryCategory::kParameters;
    case ValueRole::kOptimizerState: return MemoryCategory::kOptimizerState;
    case ValueRole::kInput:
    case ValueRole::kLabel:
    case ValueRole::kOutput: return MemoryCategory::kInputs;
    case ValueRole::kActivation: return MemoryCategory::kActivations;
    case ValueRole::kGradient: return MemoryCategory::kGradients;
    case ValueRole::kWorkspace: return MemoryCategory::kWorkspace;
  }
  return MemoryCategory::kActivations;
}

bool value_in_arena(const Value& v) {
  return v.role != ValueRole::kParam && v.role != ValueRole::kBuffer && v.role != ValueRole::kOptimizerState;
}

Result<ArenaLayout> layout_arena(const Graph& g) {
  ArenaLayout layout;
  size_t nv = g.values.size();
  layout.offsets.assign(nv, -1);
  layout.first.assign(nv, -1);
  layout.last.assign(nv, -1);
  auto touch = [&](ValueId v, int step) {
    if (v == kNoValue) return;
    size_t i = static_cast<size_t>(v);
    if (layout.first[i] < 0) layout.first[i] = step;
    layout.last[i] = std::max(layout.last[i], step);
  };
  int steps = static_cast<int>(g.nodes.size());
  std::vector<bool> written(nv, false);
  for (int s = 0; s < steps; ++s) {
    const Node& n = g.nodes[static_cast<size_t>(s)];
    for (ValueId v : n.inputs) touch(v, s);
    for (ValueId v : n.outputs) {
      touch(v, s);
      if (v != kNoValue) written[static_cast<size_t>(v)] = true;
    }
    touch(n.workspace, s);
    if (n.workspace != kNoValue) written[static_cast<size_t>(n.workspace)] = true;
  }
  // A value gets memory when a node uses it, or when the caller reads or writes it (the batch),
  // or when a used view points into it. Transforms leave unused originals behind: they cost nothing.
  std::vector<bool> used(nv, false);
  for (size_t i = 0; i < nv; ++i) {
    if (layout.first[i] < 0) continue;
    used[i] = true;
    if (g.values[i].alias_of != kNoValue) used[static_cast<size_t>(g.values[i].alias_of)] = true;
  }
  for (ValueId v : {g.input, g.labels, g.loss, g.logits})
    if (v != kNoValue) used[static_cast<size_t>(v)] = true;
  std::vector<UsageRecord> records;
  std::vector<ValueId> record_value;
  for (size_t i = 0; i < nv; ++i) {
    const Value& v = g.values[i];
    if (!value_in_arena(v) || v.alias_of != kNoValue || !used[i]) continue;  // views: their base's bytes
    if (value_role_is_persistent(v.role) || v.keep) {
      layout.first[i] = 0;
      layout.last[i] = std::max(0, steps - 1);
    } else if (!written[i]) {
      return internal_error("value '" + v.name + "' is read but no node writes it");
    }
    if (static_cast<ValueId>(i) == g.input || static_cast<ValueId>(i) == g.labels) continue;  // fixed, below
    records.push_back({layout.first[i], layout.last[i], v.bytes()});
    record_value.push_back(static_cast<ValueId>(i));
  }
  // The batch (images, labels) sits at the bottom of the arena at fixed offsets, so every
  // schedule of the same batch size (a fallback schedule sharing the arena) finds it in place.
  size_t fixed = 0;
  for (ValueId v : {g.input, g.labels}) {
    if (v == kNoValue) continue;
    layout.offsets[static_cast<size_t>(v)] = static_cast<int64_t>(fixed);
    layout.first[static_cast<size_t>(v)] = 0;
    layout.last[static_cast<size_t>(v)] = std::max(0, steps - 1);
    layout.high_water_bytes = std::max(layout.high_water_bytes, fixed + g.value(v).bytes());
    fixed += (g.value(v).bytes() + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  }
  ArenaPlan plan = plan_arena(records);
  for (size_t r = 0; r < records.size(); ++r) {
    layout.offsets[static_cast<size_t>(record_value[r])] = static_cast<int64_t>(fixed + plan.offsets[r]);
    layout.high_water_bytes = std::max(layout.high_water_bytes, fixed + plan.offsets[r] + records[r].bytes);
  }
  layout.arena_bytes = fixed + plan.size;
  for (size_t i = 0; i < nv; ++i) {
    const Value& v = g.values[i];
    if (v.alias_of == kNoValue) continue;
    const Value& base = g.value(v.alias_of);
    size_t b = static_cast<size_t>(v.alias_of);
    if (base.alias_of != kNoValue || layout.offsets[b] < 0 || v.alias_offset + v.bytes() > base.bytes())
      return internal_error("view '" + v.name + "' does not fit inside '" + base.name + "'");
    layout.offsets[i] = layout.offsets[b] + static_cast<int64_t>(v.alias_offset);
    layout.first[i] = layout.first[b];
    layout.last[i] = layout.last[b];
  }
  return layout;
}

MemoryTimeline simulate_memory(const Graph& g, const ArenaLayout& layout) {
  MemoryTimeline t;
  int steps = static_cast<int>(g.nodes.size());
  t.live.assign(static_cast<size_t>(std::max(steps, 1)), {});
  t.arena_bytes = layout.arena_bytes;
  std::array<size_t, kMemoryCategoryCount> outside{};
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Value& v = g.values[i];
    if (value_in_arena(v)) continue;
    // Unused optimizer-state copies left by transforms hold no memory.
    if (v.role == ValueRole::kOptimizerState && layout.first[i] < 0) continue;
    t.parameter_bytes += v.bytes();
    outside[static_cast<size_t>(memory_category(v))] += v.bytes();
  }
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Value& v = g.values[i];
    if (!value_in_arena(v) || layout.first[i] < 0 || v.alias_of != kNoValue) continue;
    int c = static_cast<int>(memory_category(v));
    for (int s = layout.first[i]; s <= layout.last[i]; ++s) t.live[static_cast<size_t>(s)][static_cast<size_t>(c)] += v.bytes();
  }
  t.total.resize(t.live.size());
  for (size_t s = 0; s < t.live.size(); ++s) {
    t.live[s][static_cast<size_t>(MemoryCategory::kParameters)] = outside[static_cast<size_t>(MemoryCategory::kParameters)];
    t.live[s][static_cast<size_t>(MemoryCategory::kOptimizerState)] = outside[static_cast<size_t>(MemoryCategory::kOptimizerState)];
    size_t sum = 0;
    for (size_t b : t.live[s]) sum += b;
    t.total[s] = sum;
    if (sum > t.peak_bytes) {
      t.peak_bytes = sum;
      t.peak_step = static_cast<int>(s);
      t.at_peak = t.live[s];
    }
  }
  return t;
}

}  // namespace edgetrain
