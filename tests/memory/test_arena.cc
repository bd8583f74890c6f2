// The arena planner on hand-built timelines with exact expected offsets.
#include <gtest/gtest.h>

#include <random>

#include "memory/arena.h"

namespace edgetrain {
namespace {

TEST(ArenaPlan, DisjointLifetimesShareOffsetZero) {
  ArenaPlan p = plan_arena({{0, 1, 128}, {2, 3, 128}, {4, 5, 64}});
  EXPECT_EQ(p.offsets, (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ(p.size, 128u);
}

TEST(ArenaPlan, OverlappingLifetimesAreStackedLargestFirst) {
  // b (256) is placed first at 0, a (128) above it, c (64) overlaps only a: goes at 0 under... b?
  // c overlaps b in time too (steps 1..2), so it goes above both.
  ArenaPlan p = plan_arena({{0, 2, 128}, {1, 3, 256}, {2, 2, 64}});
  EXPECT_EQ(p.offsets[1], 0u);
  EXPECT_EQ(p.offsets[0], 256u);
  EXPECT_EQ(p.offsets[2], 384u);
  EXPECT_EQ(p.size, 448u);
}

TEST(ArenaPlan, FillsAGapBetweenPlacedRecords) {
  // x [0,0] 128 at 0; y [0,9] 128 at 128; z [1,9] 64 fits at 0 (x is dead by then).
  ArenaPlan p = plan_arena({{0, 0, 128}, {0, 9, 128}, {1, 9, 64}});
  EXPECT_EQ(p.offsets[0], 0u);
  EXPECT_EQ(p.offsets[1], 128u);
  EXPECT_EQ(p.offsets[2], 0u);
  EXPECT_EQ(p.size, 256u);
}

TEST(ArenaPlan, RoundsSizesToTheAlignment) {
  ArenaPlan p = plan_arena({{0, 1, 4}, {0, 1, 100}});
  EXPECT_EQ(p.offsets[1], 0u);   // 100 -> 128 bytes, placed first
  EXPECT_EQ(p.offsets[0], 128u); // 4 -> 64 bytes
  EXPECT_EQ(p.size, 192u);
}

// Property check on random timelines: no two records that overlap in time overlap in bytes,
// and the arena is never smaller than the largest set of simultaneously live bytes.
TEST(ArenaPlan, RandomTimelinesNeverOverlap) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<UsageRecord> r;
    int steps = 20;
    for (int i = 0; i < 40; ++i) {
      int a = static_cast<int>(rng() % steps), b = static_cast<int>(rng() % steps);
      if (a > b) std::swap(a, b);
      r.push_back({a, b, static_cast<size_t>(1 + rng() % 5000)});
    }
    ArenaPlan p = plan_arena(r);
    size_t peak = 0;
    for (int s = 0; s < steps; ++s) {
      size_t live = 0;
      for (const UsageRecord& x : r)
        if (x.first <= s && s <= x.last) live += (x.bytes + 63) / 64 * 64;
      peak = std::max(peak, live);
    }
    EXPECT_GE(p.size, peak);
    for (size_t i = 0; i < r.size(); ++i) {
      EXPECT_EQ(p.offsets[i] % 64, 0u);
      EXPECT_LE(p.offsets[i] + r[i].bytes, p.size);
      for (size_t j = i + 1; j < r.size(); ++j) {
        bool time = r[i].first <= r[j].last && r[j].first <= r[i].last;
        bool bytes = p.offsets[i] < p.offsets[j] + r[j].bytes && p.offsets[j] < p.offsets[i] + r[i].bytes;
        EXPECT_FALSE(time && bytes) << "records " << i << " and " << j << " collide";
      }
    }
  }
}

// The planner finds conflicts through time buckets; the plain quadratic scan it replaced must give
// the same offsets on any timeline (short and long lives, equal sizes, equal starts).
ArenaPlan quadratic_plan(const std::vector<UsageRecord>& records, size_t alignment) {
  auto round_up = [](size_t v, size_t a) { return (v + a - 1) / a * a; };
  ArenaPlan plan;
  plan.offsets.assign(records.size(), 0);
  std::vector<size_t> order(records.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (records[a].bytes != records[b].bytes) return records[a].bytes > records[b].bytes;
    return records[a].first < records[b].first;
  });
  std::vector<size_t> placed;
  for (size_t idx : order) {
    const UsageRecord& r = records[idx];
    size_t bytes = round_up(std::max<size_t>(r.bytes, 1), alignment);
    std::vector<std::pair<size_t, size_t>> conflicts;
    for (size_t p : placed) {
      const UsageRecord& q = records[p];
      if (q.first <= r.last && r.first <= q.last)
        conflicts.push_back({plan.offsets[p], plan.offsets[p] + round_up(std::max<size_t>(q.bytes, 1), alignment)});
    }
    std::sort(conflicts.begin(), conflicts.end());
    size_t offset = 0;
    for (const auto& c : conflicts) {
      if (offset + bytes <= c.first) break;
      offset = std::max(offset, c.second);
    }
    plan.offsets[idx] = offset;
    plan.size = std::max(plan.size, offset + bytes);
    placed.push_back(idx);
  }
  return plan;
}

TEST(ArenaPlan, BucketedConflictsGiveTheQuadraticScansPlan) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<UsageRecord> r;
    int steps = 50 + static_cast<int>(rng() % 2000);
    int n = 20 + static_cast<int>(rng() % 600);
    for (int i = 0; i < n; ++i) {
      int a = static_cast<int>(rng() % steps);
      int len = rng() % 8 == 0 ? static_cast<int>(rng() % steps) : static_cast<int>(rng() % 6);
      int b = std::min(steps - 1, a + len);
      size_t bytes = rng() % 4 == 0 ? 256 : static_cast<size_t>(1 + rng() % 5000);  // many equal sizes
      r.push_back({a, b, bytes});
    }
    ArenaPlan fast = plan_arena(r), slow = quadratic_plan(r, kArenaAlignment);
    ASSERT_EQ(fast.size, slow.size) << "trial " << trial;
    ASSERT_EQ(fast.offsets, slow.offsets) << "trial " << trial;
  }
}

}  // namespace
}  // namespace edgetrain
