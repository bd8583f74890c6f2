#include "memory/arena.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace edgetrain {

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

ArenaPlan plan_arena(const std::vector<UsageRecord>& records, size_t alignment) {
  ArenaPlan plan;
  plan.offsets.assign(records.size(), 0);
  std::vector<size_t> order(records.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by earlier start, then by index, so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (records[a].bytes != records[b].bytes) return records[a].bytes > records[b].bytes;
    return records[a].first < records[b].first;
  });
  struct Placed {
    size_t begin, end;
  };
  // Placed records indexed by time: bucket b lists those live during some step of
  // [b * width, (b + 1) * width). A record then meets only the placed records of the buckets its
  // own steps cover (most values live a few steps), not all of them: the same conflicts, found
  // in far less than the quadratic scan's time on schedules of thousands of values (micro-batches
  // unrolled). The conflicts' order does not change the offset found (see below), so the plan is
  // the one the scan gave.
  int min_step = 0, max_step = 0;
  for (const UsageRecord& r : records) {
    min_step = std::min(min_step, r.first);
    max_step = std::max(max_step, r.last);
  }
  constexpr int kBucketSteps = 16;
  auto bucket_of = [&](int step) { return static_cast<size_t>((step - min_step) / kBucketSteps); };
  std::vector<std::vector<size_t>> buckets(bucket_of(max_step) + 1);
  std::vector<size_t> seen(records.size(), SIZE_MAX);  // the query that last met each record
  std::vector<Placed> conflicts;
  for (size_t idx : order) {
    const UsageRecord& r = records[idx];
    size_t bytes = round_up(std::max<size_t>(r.bytes, 1), alignment);
    conflicts.clear();
    if (r.first <= r.last) {
      for (size_t b = bucket_of(r.first); b <= bucket_of(r.last); ++b)
        for (size_t p : buckets[b]) {
          if (seen[p] == idx) continue;
          seen[p] = idx;
          const UsageRecord& q = records[p];
          if (q.first <= r.last && r.first <= q.last)
            conflicts.push_back({plan.offsets[p], plan.offsets[p] + round_up(std::max<size_t>(q.bytes, 1), alignment)});
        }
    }
    // Lowest offset below, between or above the conflicts: sorted by start, the offset only moves
    // past a conflict's end, so conflicts with equal starts give the same answer in any order.
    std::sort(conflicts.begin(), conflicts.end(), [](const Placed& a, const Placed& b) { return a.begin < b.begin; });
    size_t offset = 0;
    for (const Placed& c : conflicts) {
      if (offset + bytes <= c.begin) break;  // fits in the gap before c
      offset = std::max(offset, c.end);
    }
    plan.offsets[idx] = offset;
    plan.size = std::max(plan.size, offset + bytes);
    if (r.first <= r.last)
      for (size_t b = bucket_of(r.first); b <= bucket_of(r.last); ++b) buckets[b].push_back(idx);
  }
  return plan;
}

}  // namespace edgetrain
