#include "memory/checkpointing.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

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

// Calls visit(position) for each forward node, last to first, that the recompute of the segment
// of forward positions [first, last] clones: those writing a value of the segment that backward
// reads or that a cloned node reads. `kept` is the boundary value that ends the segment: it is
// not recomputed. `needed` is scratch, one flag per value, all false on entry and on return.
template <typename Visit>
void for_each_cloned_node(const Graph& g, const ForwardInfo& f, int first, int last, ValueId kept,
                          std::vector<char>& needed, Visit visit) {
  auto in_segment = [&](ValueId v) {
    if (v == kNoValue || v == kept || !is_activation(g, v)) return false;
    int p = f.producer[static_cast<size_t>(v)];
    return p >= first && p <= last;
  };
  std::vector<ValueId> marked;
  for (int pos = last; pos >= first; --pos) {
    const Node& n = g.nodes[static_cast<size_t>(f.forward[static_cast<size_t>(pos)])];
    bool need = false;
    for (ValueId v : n.outputs)
      need |= in_segment(v) && (f.read_by_backward[static_cast<size_t>(v)] || needed[static_cast<size_t>(v)]);
    if (!need) continue;
    visit(pos);
    for (ValueId v : n.inputs)
      if (in_segment(v) && !needed[static_cast<size_t>(v)]) {
        needed[static_cast<size_t>(v)] = 1;
        marked.push_back(v);
      }
  }
  for (ValueId v : marked) needed[static_cast<size_t>(v)] = 0;
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
  // Which forward nodes each segment's recompute clones.
  std::vector<std::vector<bool>> clone_needed(nseg);
  std::vector<char> scratch(g.values.size(), 0);
  for (size_t s = 0; s < nseg; ++s) {
    clone_needed[s].assign(static_cast<size_t>(end[s] - begin[s] + 1), false);
    for_each_cloned_node(g, f, begin[s], end[s], cuts[static_cast<size_t>(boundaries[s])].value, scratch,
                         [&](int pos) { clone_needed[s][static_cast<size_t>(pos - begin[s])] = true; });
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


namespace {

// The plain schedule seen per forward position. Every node of `plain` belongs to the forward
// position of the training graph's forward node with the same layer name (backward, pack and
// update nodes carry their forward node's layer); a node with no such layer to the position of
// the node before it.
struct PlainSteps {
  std::vector<int> position;     // per plain node
  std::vector<size_t> other;     // per plain node: live bytes besides activations (batch, gradients, workspaces)
  std::vector<int> producer;     // per plain value: position of its first writer (-1: none)
};

PlainSteps plain_steps(const Graph& training, const ForwardInfo& f, const Graph& plain, const ArenaLayout& layout) {
  PlainSteps p;
  std::unordered_map<std::string, int> position_of_layer;
  for (size_t pos = 0; pos < f.forward.size(); ++pos)
    position_of_layer[training.nodes[static_cast<size_t>(f.forward[pos])].layer] = static_cast<int>(pos);
  p.position.resize(plain.nodes.size());
  p.producer.assign(plain.values.size(), -1);
  int current = 0;
  for (size_t s = 0; s < plain.nodes.size(); ++s) {
    const Node& n = plain.nodes[s];
    auto it = position_of_layer.find(n.layer);
    if (it != position_of_layer.end()) current = it->second;
    p.position[s] = current;
    for (ValueId v : n.outputs)
      if (v != kNoValue && p.producer[static_cast<size_t>(v)] < 0) p.producer[static_cast<size_t>(v)] = current;
  }
  MemoryTimeline t = simulate_memory(plain, layout);
  p.other.resize(plain.nodes.size());
  for (size_t s = 0; s < plain.nodes.size(); ++s) {
    const auto& live = t.live[s];
    p.other[s] = live[static_cast<size_t>(MemoryCategory::kInputs)] + live[static_cast<size_t>(MemoryCategory::kGradients)] +
                 live[static_cast<size_t>(MemoryCategory::kWorkspace)];
  }
  return p;
}

// A boundary set ending at some cut (a path of the dynamic program), or a complete one.
struct Label {
  size_t kept = 0;   // bytes its boundaries keep through the segments after them
  double cost = 0;   // recompute cost of its segments
  size_t peak = 0;   // modelled peak of its segments so far
  int from = -1;     // the previous boundary (-1: none)
  int from_bucket = 0, from_rank = 0;  // that boundary's label
};

bool cheaper(const Label& a, const Label& b) {
  if (a.cost != b.cost) return a.cost < b.cost;
  if (a.peak != b.peak) return a.peak < b.peak;
  return a.kept < b.kept;
}

// Keeps the `count` cheapest labels of a list, sorted.
void insert_ranked(std::vector<Label>& list, const Label& l, size_t count) {
  if (list.size() == count && !cheaper(l, list.back())) return;
  list.insert(std::upper_bound(list.begin(), list.end(), l, cheaper), l);
  if (list.size() > count) list.pop_back();
}

// The forward position of cut b (b = -1: before the first node; b = n: the last node).
int cut_position_of(const std::vector<CutPoint>& cuts, const ForwardInfo& f, int b) {
  int n = static_cast<int>(cuts.size());
  return b < 0 ? -1 : b < n ? cuts[static_cast<size_t>(b)].forward_position : static_cast<int>(f.forward.size()) - 1;
}

// Fills segment_live from a plain schedule (last_only: only the kept last segments), read off
// the plain schedule's backward steps of each segment's positions.
// At such a step the backward still needs only values produced at or before the position; of
// these, the ones produced after cut a are what segment (a, b] recomputes (boundaries before
// cut a are kept, counted apart). But the recompute runs only right before the first backward
// step that reads one of its values: before that, only the boundary value at b (not
// recomputed) is there. So at step t of segment (a, b]:
//   t before the recompute: other(t) + after(b, t) + [value of cut b if live at t]
//                           + [value of cut a if kept]
//   t at or after it:       other(t) + after(a, t) + [value of cut a if live at t]
// where after(c, t) is the activation bytes live at t produced after cut c, other(t) the batch,
// gradients and workspaces, and "live at t" as in the plain schedule (backward reads it later).
// segment_live(a, b) is the most over the segment's steps.
void fill_live(CheckpointChain& c, const Graph& training, const ForwardInfo& f, const std::vector<CutPoint>& cuts,
               const Graph& plain, const ArenaLayout& plain_layout, bool last_only) {
  int n = c.cuts;
  int positions = static_cast<int>(f.forward.size());
  auto cut_position = [&](int b) { return cut_position_of(cuts, f, b); };
  PlainSteps steps = plain_steps(training, f, plain, plain_layout);
  size_t nsteps = plain.nodes.size();
  std::vector<std::vector<ValueId>> produced_at(static_cast<size_t>(std::max(positions, 1)));
  std::vector<int> first_backward_read(plain.values.size(), -1);
  std::vector<std::vector<int>> backward_steps_at(static_cast<size_t>(std::max(positions, 1)));
  for (size_t t = 0; t < nsteps; ++t) {
    const Node& node = plain.nodes[t];
    if (node.phase == Phase::kForward) continue;
    backward_steps_at[static_cast<size_t>(steps.position[t])].push_back(static_cast<int>(t));
    for (ValueId v : node.inputs)
      if (v != kNoValue && first_backward_read[static_cast<size_t>(v)] < 0) first_backward_read[static_cast<size_t>(v)] = static_cast<int>(t);
  }
  // after[c + 1][t] for c = -1 .. n-1; after(n, t) is 0.
  std::vector<std::vector<size_t>> after(static_cast<size_t>(n + 1));
  after[0].assign(nsteps, 0);
  for (size_t v = 0; v < plain.values.size(); ++v) {
    const Value& value = plain.values[v];
    MemoryCategory cat = memory_category(value);
    if ((cat != MemoryCategory::kActivations && cat != MemoryCategory::kPackedActivations) || !value_in_arena(value) ||
        value.alias_of != kNoValue || plain_layout.first[v] < 0 || steps.producer[v] < 0)
      continue;
    produced_at[static_cast<size_t>(steps.producer[v])].push_back(static_cast<ValueId>(v));
    for (int t = plain_layout.first[v]; t <= plain_layout.last[v]; ++t) after[0][static_cast<size_t>(t)] += value.bytes();
  }
  for (int a = 0; a < n; ++a) {
    after[static_cast<size_t>(a + 1)] = after[static_cast<size_t>(a)];
    for (int q = cut_position(a - 1) + 1; q <= cut_position(a); ++q)
      for (ValueId v : produced_at[static_cast<size_t>(q)])
        for (int t = plain_layout.first[static_cast<size_t>(v)]; t <= plain_layout.last[static_cast<size_t>(v)]; ++t)
          after[static_cast<size_t>(a + 1)][static_cast<size_t>(t)] -= plain.value(v).bytes();
  }
  auto live_at = [&](ValueId v, int t) {
    return v != kNoValue && plain_layout.first[static_cast<size_t>(v)] <= t && t <= plain_layout.last[static_cast<size_t>(v)];
  };
  for (int a = -1; a < n; ++a) {
    const std::vector<size_t>& after_a = after[static_cast<size_t>(a + 1)];
    ValueId before = a < 0 ? kNoValue : cuts[static_cast<size_t>(a)].value;
    size_t before_bytes = a < 0 ? 0 : plain.value(before).bytes();
    int earlier_reads = INT32_MAX;  // first backward read of values produced in (a, previous b]
    for (int b = a + 1; b <= n; ++b) {
      ValueId kept = b < n ? cuts[static_cast<size_t>(b)].value : kNoValue;
      int recompute = earlier_reads;  // the first backward step reading a value the segment recomputes
      for (int q = cut_position(b - 1) + 1; q <= cut_position(b); ++q)
        for (ValueId v : produced_at[static_cast<size_t>(q)]) {
          int r = first_backward_read[static_cast<size_t>(v)];
          if (r < 0) continue;
          earlier_reads = std::min(earlier_reads, r);
          if (v != kept) recompute = std::min(recompute, r);
        }
      if (last_only && b < n) continue;
      if (b == n) recompute = -1;  // never recomputed: its values are there from the forward on
      size_t live = 0;
      for (int q = cut_position(a) + 1; q <= cut_position(b); ++q)
        for (int t : backward_steps_at[static_cast<size_t>(q)]) {
          size_t bytes = steps.other[static_cast<size_t>(t)];
          if (t >= recompute)
            bytes += after_a[static_cast<size_t>(t)] + (live_at(before, t) ? before_bytes : 0);
          else
            bytes += after[static_cast<size_t>(b + 1)][static_cast<size_t>(t)] + (live_at(kept, t) ? plain.value(kept).bytes() : 0) +
                     c.segment_kept(a, b);
          live = std::max(live, bytes);
        }
      c.live[c.segment(a, b)] = live;
    }
  }
}

}  // namespace

CheckpointChain checkpoint_chain(const Graph& training, const Graph& plain, const ArenaLayout& plain_layout,
                                 const RecomputeCostFn& cost) {
  return checkpoint_chain(training, plain, plain_layout, plain, plain_layout, cost);
}

CheckpointChain checkpoint_chain(const Graph& training, const Graph& plain, const ArenaLayout& plain_layout,
                                 const Graph& dense, const ArenaLayout& dense_layout, const RecomputeCostFn& cost) {
  ForwardInfo f = analyse(training);
  std::vector<CutPoint> cuts = checkpoint_cut_points(training);
  CheckpointChain c;
  c.cuts = static_cast<int>(cuts.size());
  int n = c.cuts;
  size_t segments = static_cast<size_t>(n + 1) * static_cast<size_t>(n + 1);
  c.kept.assign(segments, 0);
  c.live.assign(segments, 0);
  c.cost.assign(segments, 0.0);
  auto cut_position = [&](int b) { return cut_position_of(cuts, f, b); };

  // Per recomputed segment: its cost, the nodes its recompute clones; whether that recompute
  // reads the boundary value before it (then that value is kept until this segment's backward).
  auto node_cost = [&](const Node& node) {
    if (cost) return cost(training, node);
    double bytes = 0;
    for (ValueId v : node.outputs)
      if (v != kNoValue) bytes += static_cast<double>(training.value(v).bytes());
    return bytes;
  };
  std::vector<char> needed(training.values.size(), 0);
  for (int a = -1; a < n; ++a) {
    ValueId before = a < 0 ? kNoValue : cuts[static_cast<size_t>(a)].value;
    size_t before_bytes = a < 0 ? 0 : training.value(before).bytes();
    bool read_by_backward = a >= 0 && f.read_by_backward[static_cast<size_t>(before)];
    for (int b = a + 1; b <= n; ++b) {
      bool read_by_recompute = false;
      if (b < n) {
        double sum = 0;
        for_each_cloned_node(training, f, cut_position(a) + 1, cut_position(b), cuts[static_cast<size_t>(b)].value, needed,
                             [&](int pos) {
                               const Node& node = training.nodes[static_cast<size_t>(f.forward[static_cast<size_t>(pos)])];
                               sum += node_cost(node);
                               for (ValueId v : node.inputs) read_by_recompute |= v == before && v != kNoValue;
                             });
        c.cost[c.segment(a, b)] = sum;
      }
      c.kept[c.segment(a, b)] = read_by_backward || read_by_recompute ? before_bytes : 0;
    }
  }
  // Recomputed values are never packed (compression packs only the forward's), so recomputed
  // segments are read off the schedule without compression, the kept last segment off the real one.
  fill_live(c, training, f, cuts, dense, dense_layout, /*last_only=*/false);
  if (&dense != &plain) fill_live(c, training, f, cuts, plain, plain_layout, /*last_only=*/true);

  return c;
}

size_t modelled_peak(const CheckpointChain& chain, const std::vector<int>& boundaries) {
  size_t kept = 0, peak = 0;
  int a = -1;
  for (size_t i = 0; i <= boundaries.size(); ++i) {
    int b = i < boundaries.size() ? boundaries[i] : chain.cuts;
    peak = std::max(peak, kept + chain.segment_live(a, b));
    kept += chain.segment_kept(a, b);
    a = b;
  }
  return peak;
}

double modelled_cost(const CheckpointChain& chain, const std::vector<int>& boundaries) {
  double cost = 0;
  int a = -1;
  for (int b : boundaries) {
    cost += chain.segment_cost(a, b);
    a = b;
  }
  return cost;
}

std::vector<std::vector<int>> cheapest_boundary_sets(const CheckpointChain& chain, size_t limit, int count,
                                                     double below_cost) {
  if (count < 1) return {};
  size_t k = static_cast<size_t>(count);
  // labels[b + 1][bucket]: the k cheapest boundary sets ending at cut b whose kept bytes fall in
  // the bucket (labels[0]: the empty set). Buckets are limit / kBuckets wide.
  constexpr size_t kBuckets = 512;
  int n = chain.cuts;
  size_t grain = std::max<size_t>(1, (limit + kBuckets - 1) / kBuckets);
  std::vector<std::vector<std::vector<Label>>> labels(static_cast<size_t>(n + 1),
                                                      std::vector<std::vector<Label>>(kBuckets + 1));
  labels[0][0].push_back(Label{});
  std::vector<Label> complete;  // the k cheapest complete sets
  struct Ref {
    int bucket, rank;
  };
  std::vector<Ref> front;
  std::vector<double> best_costs;  // the k lowest costs among the front so far
  for (int a = -1; a < n; ++a) {
    const std::vector<std::vector<Label>>& from = labels[static_cast<size_t>(a + 1)];
    // Only labels fewer than k others beat on both kept bytes and cost go on: k sets that keep
    // no more and cost no more complete every way this one does, and better.
    // Nor do labels costing more than the k-th cheapest complete set so far: costs only grow.
    double bound = complete.size() == k ? std::min(below_cost, complete.back().cost) : below_cost;
    front.clear();
    best_costs.clear();
    for (size_t bucket = 0; bucket < from.size(); ++bucket)
      for (size_t rank = 0; rank < from[bucket].size(); ++rank) {
        double c = from[bucket][rank].cost;
        if (c > bound || (c == bound && bound == below_cost)) continue;
        if (best_costs.size() == k && best_costs.back() <= c) continue;
        best_costs.insert(std::upper_bound(best_costs.begin(), best_costs.end(), c), c);
        if (best_costs.size() > k) best_costs.pop_back();
        front.push_back({static_cast<int>(bucket), static_cast<int>(rank)});
      }
    for (int b = a + 1; b <= n; ++b) {
      size_t kept = chain.segment_kept(a, b), live = chain.segment_live(a, b);
      double cost = chain.segment_cost(a, b);
      for (const Ref& r : front) {
        const Label& l = from[static_cast<size_t>(r.bucket)][static_cast<size_t>(r.rank)];
        if (l.kept + live > limit) continue;
        Label next{l.kept + kept, l.cost + cost, std::max(l.peak, l.kept + live), a, r.bucket, r.rank};
        if (next.cost >= below_cost) continue;
        if (b == n) {
          insert_ranked(complete, next, k);
        } else if (next.kept <= limit) {  // else the next segment cannot fit
          insert_ranked(labels[static_cast<size_t>(b + 1)][next.kept / grain], next, k);
        }
      }
    }
  }
  std::vector<std::vector<int>> sets;
  for (const Label& last : complete) {
    std::vector<int> boundaries;
    for (int b = last.from, bucket = last.from_bucket, rank = last.from_rank; b >= 0;) {
      boundaries.push_back(b);
      const Label& l = labels[static_cast<size_t>(b + 1)][static_cast<size_t>(bucket)][static_cast<size_t>(rank)];
      b = l.from;
      bucket = l.from_bucket;
      rank = l.from_rank;
    }
    std::reverse(boundaries.begin(), boundaries.end());
    sets.push_back(std::move(boundaries));
  }
  return sets;
}

std::optional<std::vector<int>> cheapest_boundaries(const CheckpointChain& chain, size_t limit) {
  std::vector<std::vector<int>> sets = cheapest_boundary_sets(chain, limit, 1, INFINITY);
  if (sets.empty()) return std::nullopt;
  return sets.front();
}

}  // namespace edgetrain
