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

}  // namespace
}  // namespace edgetrain
