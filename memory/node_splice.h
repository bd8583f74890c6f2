// What the activation rewrites (memory/compression.h, memory/norm_recompute.h) share: finding the
// backward readers of a forward value, pointing them at a replacement (an unpacked or recomputed
// copy), and splicing the new nodes into the schedule.
#pragma once

#include <cstddef>
#include <vector>

#include "runtime/graph.h"

namespace edgetrain {

// Index of the first node at or after `from` outside the forward pass that reads v; -1 if none.
int first_backward_reader(const std::vector<Node>& nodes, size_t from, ValueId v);

// Every node at or after `from` outside the forward pass reads replacement where it read v.
void redirect_backward_reads(std::vector<Node>& nodes, size_t from, ValueId v, ValueId replacement);

// out.nodes = for each i: before[i], nodes[i], after[i] (after may be null: nothing after).
void splice_nodes(Graph& out, std::vector<Node>& nodes, std::vector<std::vector<Node>>& before,
                  std::vector<std::vector<Node>>* after = nullptr);

}  // namespace edgetrain
