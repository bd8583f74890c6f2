// Liveness, layout and the memory timeline on a hand-built schedule with known lifetimes.
#include <gtest/gtest.h>

#include "memory/liveness.h"

namespace edgetrain {
namespace {

ValueId add(Graph& g, const char* name, int64_t floats, ValueRole role) {
  Value v;
  v.name = name;
  v.shape = Shape{floats};
  v.role = role;
  return g.add_value(v);
}

Node node(OpKind op, std::vector<ValueId> in, std::vector<ValueId> out) {
  Node n;
  n.op = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// input(16 floats) -> a(16) -> b(32) -> loss(1); a dies at step 1, b at step 2.
Graph chain() {
  Graph g;
  g.input = add(g, "input", 16, ValueRole::kInput);
  ValueId a = add(g, "a", 16, ValueRole::kActivation);
  ValueId b = add(g, "b", 32, ValueRole::kActivation);
  g.loss = add(g, "loss", 1, ValueRole::kOutput);
  g.nodes.push_back(node(OpKind::kRelu, {g.input}, {a}));
  g.nodes.push_back(node(OpKind::kRelu, {a}, {b}));
  g.nodes.push_back(node(OpKind::kRelu, {b}, {g.loss}));
  return g;
}

TEST(Liveness, LifetimesFollowTheFirstAndLastUse) {
  Graph g = chain();
  Result<ArenaLayout> l = layout_arena(g);
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  EXPECT_EQ(l->first[1], 0);
  EXPECT_EQ(l->last[1], 1);
  EXPECT_EQ(l->first[2], 1);
  EXPECT_EQ(l->last[2], 2);
  // The batch sits at offset 0; a and b overlap in time, so not in bytes.
  EXPECT_EQ(l->offsets[static_cast<size_t>(g.input)], 0);
  int64_t a = l->offsets[1], b = l->offsets[2];
  EXPECT_TRUE(a + 64 <= b || b + 128 <= a);
}

TEST(Liveness, TimelineCountsExactlyTheLiveBytesPerStep) {
  Graph g = chain();
  Result<ArenaLayout> l = layout_arena(g);
  ASSERT_TRUE(l.is_ok());
  MemoryTimeline t = simulate_memory(g, *l);
  ASSERT_EQ(t.total.size(), 3u);
  // input 64 + loss 4 are live throughout; a (64) at steps 0-1; b (128) at steps 1-2.
  EXPECT_EQ(t.total[0], 64u + 4u + 64u);
  EXPECT_EQ(t.total[1], 64u + 4u + 64u + 128u);
  EXPECT_EQ(t.total[2], 64u + 4u + 128u);
  EXPECT_EQ(t.peak_step, 1);
  EXPECT_EQ(t.peak_bytes, 260u);
  EXPECT_EQ(t.at_peak[static_cast<size_t>(MemoryCategory::kActivations)], 192u);
  EXPECT_EQ(t.at_peak[static_cast<size_t>(MemoryCategory::kInputs)], 68u);
  EXPECT_GE(l->arena_bytes, 260u);
}

TEST(Liveness, AValueReadButNeverWrittenIsAnInternalError) {
  Graph g = chain();
  ValueId orphan = add(g, "orphan", 4, ValueRole::kActivation);
  g.nodes[2].inputs.push_back(orphan);
  Result<ArenaLayout> l = layout_arena(g);
  ASSERT_FALSE(l.is_ok());
  EXPECT_EQ(l.status().code(), StatusCode::kInternal);
  EXPECT_NE(l.status().message().find("orphan"), std::string::npos);
}

}  // namespace
}  // namespace edgetrain
