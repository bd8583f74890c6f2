// Gradient checkpointing as a graph rewrite. The forward pass is cut into segments at cut
// points (values where the model is a chain: exactly one activation crosses). For every segment
// but the last, the backward nodes stop reading the segment's forward values; instead a
// recompute copy of the segment's forward nodes runs right before the segment's backward and
// they read its outputs. The forward values inside the segment then die right after their last
// forward use (liveness does the rest). Recomputation runs the same kernels on the same inputs,
// so gradients are bit-identical; recomputed batch norms do not update running statistics.
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"
#include "memory/liveness.h"

namespace edgetrain {

struct CutPoint {
  ValueId value = kNoValue;   // the single activation crossing this point
  int forward_position = 0;   // index among forward nodes of the node that produces it
  size_t saved_bytes = 0;     // bytes backward reads from forward values produced up to here
};

// The cut points of a training graph (after autodiff), in forward order.
std::vector<CutPoint> checkpoint_cut_points(const Graph& g);

// Rewrites g with segments starting after each listed cut point (indices into
// checkpoint_cut_points(g), strictly increasing). Empty boundaries returns g unchanged.
Result<Graph> apply_checkpointing(const Graph& g, const std::vector<int>& boundaries);

// About `segments` segments of equal saved-activation bytes (segments <= 0: round(sqrt(cuts))).
// Splitting by bytes, not by layer count: early layers of a CNN hold most activation bytes.
std::vector<int> byte_balanced_boundaries(const std::vector<CutPoint>& cuts, size_t total_saved_bytes,
                                          int segments);

// Bytes backward reads from forward values (the saved activations without checkpointing).
size_t saved_activation_bytes(const Graph& g);

// Bytes the recompute nodes of a rewritten graph write (the cost of checkpointing).
size_t recomputed_bytes(const Graph& g);

// ---- Choosing boundaries for a memory budget ------------------------------------------------
//
// The memory model of a checkpointed chain (Chen et al. 2016, "Training deep nets with sublinear
// memory cost"; Checkmate restricted to chains). Segment (a, b] runs from just after cut a
// (a = -1: the first forward node) to cut b (b = n, the number of cuts: to the last forward
// node; that last segment is kept whole, never recomputed). The backward runs the segments last
// to first; while segment s runs its recompute and backward the arena holds
//     kept bytes of the segments before s  +  segment_live(s)
// segment_kept(a, b): the value crossing cut a when something after the forward reads it (the
// backward, or the recompute of (a, b]): it then stays live through the backward of every later
// segment. segment_live(a, b): the most bytes live during the segment's backward besides the
// kept values of earlier segments: what backward needs of the values the segment produces (only
// the boundary value at b until its recompute runs), the value crossing cut a while live, and
// what the schedule holds besides activations (gradients, workspaces, the batch). The modelled
// peak of a boundary set is the largest of these sums over its segments. It leaves out arena
// fragmentation and the values a recompute holds only briefly, so it guides; layouts decide.
struct CheckpointChain {
  int cuts = 0;              // n
  std::vector<size_t> kept;  // per segment, index segment(a, b)
  std::vector<size_t> live;  // per segment
  std::vector<double> cost;  // per segment: its recompute cost (0 when b == n)

  size_t segment(int a, int b) const { return static_cast<size_t>(a + 1) * static_cast<size_t>(cuts + 1) + static_cast<size_t>(b); }
  size_t segment_kept(int a, int b) const { return kept[segment(a, b)]; }
  size_t segment_live(int a, int b) const { return live[segment(a, b)]; }
  double segment_cost(int a, int b) const { return cost[segment(a, b)]; }
};

// The cost of recomputing one forward node. Default: the bytes it writes, so a segmentation's
// modelled cost equals recomputed_bytes() of the rewritten graph exactly.
using RecomputeCostFn = std::function<double(const Graph& g, const Node& forward_node)>;

// The chain model of a training graph (after autodiff, before checkpointing), read off the
// plain schedule: `plain` is the finalized schedule without checkpointing (compression and
// micro-batching applied) and `plain_layout` its layout. A segment's live bytes are the plain
// schedule's during that segment's backward, less the activations produced before it; its cost
// sums `cost` over the forward nodes its recompute clones (the nodes apply_checkpointing clones).
CheckpointChain checkpoint_chain(const Graph& training, const Graph& plain, const ArenaLayout& plain_layout,
                                 const RecomputeCostFn& cost = {});
// With compression, recomputed values are dense (only the forward's values are packed): `dense`
// is the same plain schedule without compression, for the segments that are recomputed.
CheckpointChain checkpoint_chain(const Graph& training, const Graph& plain, const ArenaLayout& plain_layout,
                                 const Graph& dense, const ArenaLayout& dense_layout, const RecomputeCostFn& cost = {});

// The modelled peak and cost of a boundary set (strictly increasing cut indices).
size_t modelled_peak(const CheckpointChain& chain, const std::vector<int>& boundaries);
double modelled_cost(const CheckpointChain& chain, const std::vector<int>& boundaries);

// The boundary set of least modelled cost whose modelled peak is at most `limit` bytes; nullopt
// when none is. Dynamic programming over the cut points in forward order: the bytes kept by the
// boundaries so far are all a later segment needs to know of the past, so per cut it keeps the
// cheapest set for each amount of kept bytes, rounded to limit / 512 (exact when kept amounts
// differ by more than that). O(n^2 x 512) at most; about a millisecond for 70 cuts.
std::optional<std::vector<int>> cheapest_boundaries(const CheckpointChain& chain, size_t limit);

// The `count` cheapest such sets that cost less than `below_cost`, cheapest first (fewer when
// fewer fit): the same program keeping the `count` cheapest sets per cut and amount of kept bytes.
std::vector<std::vector<int>> cheapest_boundary_sets(const CheckpointChain& chain, size_t limit, int count,
                                                     double below_cost = INFINITY);

}  // namespace edgetrain
