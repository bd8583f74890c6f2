#include "memory/checkpointing.h"

#include <algorithm>
#include <cmath>

namespace edgetrain {
namespace {

bool is_activation(const Graph& g, ValueId v) {
  return v != kNoValue && g.value(v).role == ValueRole::kActivation;
}

struct ForwardInfo {
  std::vector<int> forward;          // node indices of forward nodes, in order
  std::vector<int> producer;         // per value: forward position producing it (-1: none)
  std::vector<int> last_forward_use; // per value: last forward position reading it (-1: none)
  std::vector<bool> read_by_backward;
};

ForwardInfo analyse(const Graph& g) {
  ForwardInfo f;
  size_t nv = g.values.size();
  f.producer.assign(nv, -1);
  f.last_forward_use.assign(nv, -1);
  f.read_by_backward.assign(nv, false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.phase == Phase::kForward) {
      int pos = static_cast<int>(f.forward.size());
      f.forward.push_back(static_cast<int>(i));
      for (ValueId v : n.inputs)
        if (v != kNoValue) f.last_forward_use[static_cast<size_t>(v)] = pos;
      for (ValueId v : n.outputs)
        if (v != kNoValue) f.producer[static_cast<size_t>(v)] = pos;
    } else {
      for (ValueId v : n.inputs)
        if (v != kNoValue) f.read_by_backward[static_cast<size_t>(v)] = true;
    }
  }
  return f;
}

}  // namespace

size_t saved_activation_bytes(const Graph& g) {
  ForwardInfo f = analyse(g);
  size_t total = 0;
  for (size_t v = 0; v < g.values.size(); ++v)
    if (f.read_by_backward[v] && f.producer[v] >= 0 && is_activation(g, static_cast<ValueId>(v))) total += g.values[v].bytes();
  return total;
}

size_t recomputed_bytes(const Graph& g) {
  size_t total = 0;
  for (const Node& n : g.nodes)
    if (n.phase == Phase::kRecompute)
      for (ValueId v : n.outputs)
        if (v != kNoValue) total += g.value(v).bytes();
  return total;
}

std::vector<CutPoint> checkpoint_cut_points(const Graph& g) {
  ForwardInfo f = analyse(g);
  std::vector<CutPoint> cuts;
  // Sweep the forward nodes keeping the number of activations produced so far and still read by
  // a later forward node. Where it is one, and it is the current node's main output, the model is
  // a chain: a cut point.
  int crossing = 0;
  size_t saved = 0;
  std::vector<std::vector<ValueId>> dies_at(f.forward.size());
  for (size_t v = 0; v < g.values.size(); ++v)
    if (f.producer[v] >= 0 && f.last_forward_use[v] > f.producer[v] && is_activation(g, static_cast<ValueId>(v)))
      dies_at[static_cast<size_t>(f.last_forward_use[v])].push_back(static_cast<ValueId>(v));
  for (size_t pos = 0; pos < f.forward.size(); ++pos) {
    const Node& n = g.nodes[static_cast<size_t>(f.forward[pos])];
    crossing -= static_cast<int>(dies_at[pos].size());
    for (ValueId v : n.outputs) {
      if (v == kNoValue) continue;
      if (f.read_by_backward[static_cast<size_t>(v)] && is_activation(g, v)) saved += g.value(v).bytes();
      if (f.last_forward_use[static_cast<size_t>(v)] > static_cast<int>(pos) && is_activation(g, v)) ++crossing;
    }
    ValueId main = n.outputs.empty() ? kNoValue : n.outputs[0];
    if (crossing == 1 && is_activation(g, main) && f.last_forward_use[static_cast<size_t>(main)] > static_cast<int>(pos))
      cuts.push_back({main, static_cast<int>(pos), saved});
  }
  return cuts;
}

std::vector<int> byte_balanced_boundaries(const std::vector<CutPoint>& cuts, size_t total_saved_bytes, int segments) {
  if (cuts.empty()) return {};
  if (segments <= 0) segments = std::max(1, static_cast<int>(std::lround(std::sqrt(static_cast<double>(cuts.size())))));
  segments = std::min<int>(segments, static_cast<int>(cuts.size()) + 1);
  std::vector<int> b;
  for (int s = 1; s < segments; ++s) {
    size_t target = total_saved_bytes * static_cast<size_t>(s) / static_cast<size_t>(segments);
    // The first cut point at or past the target, after the previous boundary.
    int start = b.empty() ? 0 : b.back() + 1;
    for (int c = start; c < static_cast<int>(cuts.size()); ++c) {
      if (cuts[static_cast<size_t>(c)].saved_bytes >= target) {
        b.push_back(c);
        break;
      }
    }
  }
  return b;
}

Result<Graph> apply_checkpointing(const Graph& g, const std::vector<int>& boundaries) {
  if (boundaries.empty()) return g;
  std::vector<CutPoint> cuts = checkpoint_cut_points(g);
  for (size_t i = 0; i < boundaries.size(); ++i) {
    if (boundaries[i] < 0 || boundaries[i] >= static_cast<int>(cuts.size()))
      return invalid_argument("checkpoint boundary " + std::to_string(boundaries[i]) + " is not a cut point (the model has " +
                              std::to_string(cuts.size()) + ", numbered from 0)");
    if (i > 0 && boundaries[i] <= boundaries[i - 1])
      return invalid_argument("checkpoint boundaries must be strictly increasing");
  }
  ForwardInfo f = analyse(g);
  Graph out = g;
  out.nodes.clear();
  // Segment s covers forward positions [begin[s], end[s]]; the last segment is not recomputed.
  std::vector<int> begin, end;
  int start = 0;
  for (int b : boundaries) {
    begin.push_back(start);
    end.push_back(cuts[static_cast<size_t>(b)].forward_position);
    start = end.back() + 1;
  }
  size_t nseg = begin.size();
  // rc[v]: the recomputed copy of forward value v (its segment recomputes it), else kNoValue.
  std::vector<ValueId> rc(g.values.size(), kNoValue);
  std::vector<int> seg_of_value(g.values.size(), -1);
  for (size_t s = 0; s < nseg; ++s) {
    for (int pos = begin[s]; pos <= end[s]; ++pos) {
      const Node& n = g.nodes[static_cast<size_t>(f.forward[static_cast<size_t>(pos)])];
      for (ValueId v : n.outputs) {
        if (v == kNoValue || !is_activation(g, v)) continue;
        if (v == cuts[static_cast<size_t>(boundaries[s])].value) continue;  // the kept boundary
        seg_of_value[static_cast<size_t>(v)] = static_cast<int>(s);
      }
    }
  }
  auto rc_value = [&](ValueId v) {
    if (rc[static_cast<size_t>(v)] == kNoValue) {
      Value c = g.value(v);
      c.name += ".rc";
      rc[static_cast<size_t>(v)] = out.add_value(c);
    }
    return rc[static_cast<size_t>(v)];
  };
  // Which recomputed values backward needs, per segment; then which clones produce them.
  std::vector<std::vector<bool>> clone_needed(nseg);
  for (size_t s = 0; s < nseg; ++s) clone_needed[s].assign(static_cast<size_t>(end[s] - begin[s] + 1), false);
  std::vector<bool> needed(g.values.size(), false);
  for (const Node& n : g.nodes)
    if (n.phase != Phase::kForward)
      for (ValueId v : n.inputs)
        if (v != kNoValue && seg_of_value[static_cast<size_t>(v)] >= 0) needed[static_cast<size_t>(v)] = true;
  for (size_t s = nseg; s-- > 0;) {
    for (int pos = end[s]; pos >= begin[s]; --pos) {
      const Node& n = g.nodes[static_cast<size_t>(f.forward[static_cast<size_t>(pos)])];
      bool need = false;
      for (ValueId v : n.outputs) need |= v != kNoValue && needed[static_cast<size_t>(v)];
      if (!need) continue;
      clone_needed[s][static_cast<size_t>(pos - begin[s])] = true;
      for (ValueId v : n.inputs)
        if (v != kNoValue && seg_of_value[static_cast<size_t>(v)] == static_cast<int>(s)) needed[static_cast<size_t>(v)] = true;
    }
  }
  std::vector<bool> emitted(nseg, false);
  auto emit_recompute = [&](size_t s) {
    emitted[s] = true;
    for (int pos = begin[s]; pos <= end[s]; ++pos) {
      if (!clone_needed[s][static_cast<size_t>(pos - begin[s])]) continue;
      Node c = g.nodes[static_cast<size_t>(f.forward[static_cast<size_t>(pos)])];
      c.phase = Phase::kRecompute;
      if (c.op == OpKind::kBatchNorm) c.attrs.norm.update_running_stats = false;  // already updated
      for (ValueId& v : c.inputs)
        if (v != kNoValue && seg_of_value[static_cast<size_t>(v)] == static_cast<int>(s)) v = rc_value(v);
      for (ValueId& v : c.outputs)
        if (v != kNoValue && is_activation(g, v)) v = rc_value(v);
      out.nodes.push_back(std::move(c));
    }
  };
  for (const Node& n : g.nodes) {
    if (n.phase == Phase::kForward || n.phase == Phase::kUpdate) {
      out.nodes.push_back(n);
      continue;
    }
    Node c = n;
    for (ValueId& v : c.inputs) {
      if (v == kNoValue) continue;
      int s = seg_of_value[static_cast<size_t>(v)];
      if (s < 0) continue;
      if (!emitted[static_cast<size_t>(s)]) emit_recompute(static_cast<size_t>(s));
      v = rc_value(v);
    }
    out.nodes.push_back(std::move(c));
  }
  return out;
}

}  // namespace edgetrain
