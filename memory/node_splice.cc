#include "memory/node_splice.h"

namespace edgetrain {
namespace {

bool reads(const Node& n, ValueId v) {
  for (ValueId in : n.inputs)
    if (in == v) return true;
  return false;
}

}  // namespace

int first_backward_reader(const std::vector<Node>& nodes, size_t from, ValueId v) {
  for (size_t j = from; j < nodes.size(); ++j)
    if (nodes[j].phase != Phase::kForward && reads(nodes[j], v)) return static_cast<int>(j);
  return -1;
}

void redirect_backward_reads(std::vector<Node>& nodes, size_t from, ValueId v, ValueId replacement) {
  for (size_t j = from; j < nodes.size(); ++j)
    if (nodes[j].phase != Phase::kForward)
      for (ValueId& in : nodes[j].inputs)
        if (in == v) in = replacement;
}

void splice_nodes(Graph& out, std::vector<Node>& nodes, std::vector<std::vector<Node>>& before,
                  std::vector<std::vector<Node>>* after) {
  out.nodes.clear();
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (Node& b : before[i]) out.nodes.push_back(std::move(b));
    out.nodes.push_back(std::move(nodes[i]));
    if (after)
      for (Node& a : (*after)[i]) out.nodes.push_back(std::move(a));
  }
}

}  // namespace edgetrain
