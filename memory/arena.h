// The arena planner: a pure function from usage records {first step, last step, bytes} to byte
// offsets in one block and the block's size. Two records whose step ranges overlap never share
// bytes. Greedy by size, largest first, each at the lowest offset that fits (as XNNPACK's
// memory planner does); deterministic for the same input.
#pragma once

#include <cstddef>
#include <vector>

namespace edgetrain {

struct UsageRecord {
  int first = 0;     // first schedule step the bytes are live (inclusive)
  int last = 0;      // last schedule step they are live (inclusive)
  size_t bytes = 0;
};

struct ArenaPlan {
  std::vector<size_t> offsets;  // one per record, multiples of the alignment
  size_t size = 0;              // bytes the arena needs (the highest end of any record)
};

constexpr size_t kArenaAlignment = 64;

ArenaPlan plan_arena(const std::vector<UsageRecord>& records, size_t alignment = kArenaAlignment);

}  // namespace edgetrain
